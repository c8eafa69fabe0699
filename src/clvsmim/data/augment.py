"""Batched, on-device augmentation and masking, with per-sample randomness from seeds.

Every random number is drawn by :func:`clvsmim.rng.hash_uniform` from the sample's own
int64 seed and a *stream* number, so the view of sample ``i`` is a pure function of
``(image_i, seed_i)``: it does not depend on the batch it was drawn in, the device, the
number of processes or on resuming. Each operation of each view uses its own stream
(constants below), so e.g. the crop of view 1 and the crop of view 2 are independent.

Inputs are ``B×3×H×W`` uint8 (or float in [0, 1]); the view builders return normalised
float32 (ImageNet mean / std). Everything is vectorised over the batch: a crop is one
per-sample axis-aligned affine sampling grid + one ``grid_sample`` call, colour ops are
element-wise with per-sample factors, the blur is separable with one kernel per sample
(sums of shifted slices, which beat a grouped convolution on CPU for these tiny kernels).

Differences to the torchvision / PIL pipelines of the upstream repos (all deliberate):

* crop boxes are continuous (sub-pixel) rather than rounded to integers, and the crop is
  resampled bilinearly from the float image (no anti-aliasing when shrinking);
* the horizontal flip is folded into the crop's affine map (flip commutes with every
  colour op and with the symmetric blur, so the order of the upstream recipe is kept);
* hue is shifted in HSV space with the result of ``torchvision.transforms.ColorJitter``
  (a vectorised HSV hexcone rotation, not a YIQ rotation); the four jitter operations are
  applied in a per-sample random order, as torchvision does;
* the gaussian blur is a truncated kernel of radius ``ceil(3·sigma_max)`` with reflect
  padding (PIL uses a box-filter approximation); :func:`moco_views` rescales MoCo v3's
  sigma range (0.1–2.0 px, meant for 224-px crops) to the output size by default, so a
  32-px view is blurred as much relative to its content (0.014–0.29 px) — the literal
  pixel values would low-pass tiny images far harder than upstream does ImageNet.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from clvsmim.rng import hash_uniform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

# Stream numbers: one block of 16 per view, one offset per operation inside a view.
MOCO_VIEW_STREAMS = (16, 32)  # view 1, view 2
MOCO_BLUR_P = (1.0, 0.1)  # view 1, view 2 (MoCo v3's asymmetric augmentation)
MOCO_SOLARIZE_P = (0.0, 0.2)
SIMMIM_VIEW_STREAM = 48
MAE_VIEW_STREAM = 64
SIMMIM_MASK_STREAM = 80
MAE_MASK_STREAM = 96
_CROP, _JITTER, _GRAY, _BLUR, _SOLARIZE = 0, 1, 2, 3, 4

# MoCo v3 recipe (main_moco.py of facebookresearch/moco-v3, augmentation1 / augmentation2).
JITTER_STRENGTH = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
JITTER_P = 0.8
GRAYSCALE_P = 0.2
BLUR_SIGMA = (0.1, 2.0)  # pixels at 224 px
BLUR_REFERENCE_SIZE = 224


# --------------------------------------------------------------------------- basics
def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]; floating inputs are assumed in [0, 1] and cast to float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {images.dtype}")
    return images.float()


def _stat(values, ref: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=ref.device).view(1, 3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) or float in [0, 1] ``B×3×H×W`` -> ImageNet-normalised float32."""
    x = to_float(images)
    return (x - _stat(IMAGENET_MEAN, x)) / _stat(IMAGENET_STD, x)


def denormalize(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Inverse of :func:`normalize`: back to [0, 1] (clamped unless ``clamp=False``)."""
    x = x.float() * _stat(IMAGENET_STD, x) + _stat(IMAGENET_MEAN, x)
    return x.clamp(0.0, 1.0) if clamp else x


def eval_view(images: torch.Tensor) -> torch.Tensor:
    """The evaluation view: the datasets already centre-crop, so this only normalises."""
    return normalize(images)


def _check_batch(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images B×3×H×W, got shape {tuple(images.shape)}")
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=images.device).reshape(-1)
    if seeds.numel() != images.shape[0]:
        raise ValueError(f"got {seeds.numel()} seeds for a batch of {images.shape[0]} images")
    return seeds


def _size2(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _subset(flags: torch.Tensor) -> torch.Tensor | None:
    """Indices where ``flags`` is True, or None when there are none."""
    idx = flags.nonzero().squeeze(1)
    return idx if idx.numel() else None


# --------------------------------------------------------------------------- crop
class CropBoxes(NamedTuple):
    """Per-sample crop boxes in pixel-edge coordinates of the input (float, ``(B,)`` each)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor  # bool


def crop_params(seeds: torch.Tensor, height: int, width: int, scale=(0.08, 1.0),
                ratio=(3 / 4, 4 / 3), flip: bool = True, stream: int = 0,
                attempts: int = 10) -> CropBoxes:
    """Random-resized-crop boxes, vectorised version of torchvision's sampler.

    Up to ``attempts`` (area fraction ~ U(scale), log aspect ratio ~ U(log ratio)) pairs
    are drawn per sample; the first that fits is used, else the centred fallback box of
    torchvision (whole image, aspect ratio clamped to ``ratio``). The position is uniform
    over the valid range. ``flip`` enables a horizontal flip with probability 0.5.
    """
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"crop scale must satisfy 0 < min <= max, got {tuple(scale)}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    u = hash_uniform(seeds, 2 * attempts + 3, stream)
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, :attempts])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, attempts:2 * attempts])
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    ok = (w <= width) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt
    any_ok = ok.any(dim=1)
    w_pick = w.gather(1, first).squeeze(1)
    h_pick = h.gather(1, first).squeeze(1)
    in_ratio = width / height  # torchvision's fallback: a centred, ratio-clamped full crop
    if in_ratio < ratio[0]:
        w_fb, h_fb = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        w_fb, h_fb = height * ratio[1], float(height)
    else:
        w_fb, h_fb = float(width), float(height)
    w_box = torch.where(any_ok, w_pick, torch.full_like(w_pick, w_fb))
    h_box = torch.where(any_ok, h_pick, torch.full_like(h_pick, h_fb))
    top_rand = u[:, 2 * attempts] * (height - h_box)
    left_rand = u[:, 2 * attempts + 1] * (width - w_box)
    top = torch.where(any_ok, top_rand, (height - h_box) / 2)
    left = torch.where(any_ok, left_rand, (width - w_box) / 2)
    flipped = (u[:, 2 * attempts + 2] < 0.5) & flip
    return CropBoxes(top, left, h_box, w_box, flipped)


def crop_boxes_to_grid(boxes: CropBoxes, height: int, width: int, out_h: int, out_w: int) -> torch.Tensor:
    """``B×out_h×out_w×2`` sampling grid for ``grid_sample`` (``align_corners=False``).

    The map is axis-aligned (scale, translation, optional mirror), so the grid is built by
    broadcasting instead of ``affine_grid``'s batched matmul.
    """
    dev = boxes.width.device
    base_x = (torch.arange(out_w, device=dev, dtype=torch.float32) * 2 + 1) / out_w - 1  # pixel centres
    base_y = (torch.arange(out_h, device=dev, dtype=torch.float32) * 2 + 1) / out_h - 1
    sx = boxes.width / width
    sx = torch.where(boxes.flip, -sx, sx)
    sy = boxes.height / height
    cx = 2 * (boxes.left + boxes.width / 2) / width - 1
    cy = 2 * (boxes.top + boxes.height / 2) / height - 1
    gx = (cx.view(-1, 1) + sx.view(-1, 1) * base_x.view(1, -1)).view(-1, 1, out_w).expand(-1, out_h, -1)
    gy = (cy.view(-1, 1) + sy.view(-1, 1) * base_y.view(1, -1)).view(-1, out_h, 1).expand(-1, -1, out_w)
    return torch.stack([gx, gy], dim=-1)


def random_resized_crop(images: torch.Tensor, seeds: torch.Tensor, out_size, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), flip: bool = True, stream: int = 0) -> torch.Tensor:
    """Per-sample random resized crop (+ horizontal flip p=0.5) as one ``grid_sample``.

    images: ``B×3×H×W`` uint8 or float in [0, 1]; returns float32 ``B×3×out×out`` in [0, 1].
    With ``scale=(1, 1)`` and ``flip=False`` (and ``out_size`` = input size) it is the identity.
    """
    seeds = _check_batch(images, seeds)
    x = to_float(images)
    b, _, height, width = x.shape
    oh, ow = _size2(out_size)
    boxes = crop_params(seeds, height, width, scale, ratio, flip, stream)
    grid = crop_boxes_to_grid(boxes, height, width, oh, ow)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------- colour
def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _factor(x: torch.Tensor) -> torch.Tensor:
    return x.view(-1, 1, 1, 1)


# The in-place forms (trailing underscore) modify ``x`` and serve the batched jitter; the
# public forms return a new tensor. With factor 1 (hue shift 0 excepted) they are exact
# identities: ``x·1 + 0·y == x``.
def _brightness_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x.mul_(_factor(factor)).clamp_(0.0, 1.0)


def _contrast_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _factor(factor)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return x.mul_(f).add_((1 - f) * mean).clamp_(0.0, 1.0)


def _saturation_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _factor(factor)
    gray = _gray(x)
    return x.mul_(f).addcmul_(gray, 1 - f).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(f·x)`` per sample (torchvision semantics)."""
    return _brightness_(x.clone(), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean luma of each image: ``clamp(f·x + (1 − f)·mean)``."""
    return _contrast_(x.clone(), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luma: ``clamp(f·x + (1 − f)·gray)``."""
    return _saturation_(x.clone(), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (fraction of a turn, per sample) in HSV space.

    Same result as torchvision's RGB -> HSV -> shift -> RGB, computed without building the
    HSV image: with ``v = max``, ``chroma = max − min`` and hue ``h`` (in sixths of a turn),
    channel ``n ∈ {5, 3, 1}`` (R, G, B) is ``v − chroma·clamp(min(k, 4 − k), 0, 1)`` where
    ``k = (n + h + 6·shift) mod 6``. (Few temporaries: on CPU, allocation dominates.)
    """
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    chroma = x.amin(dim=1)
    torch.sub(maxc, chroma, out=chroma)
    r_max = maxc == r
    g_max = (maxc == g).logical_and_(~r_max)
    hue6 = torch.where(r_max, g - b, torch.where(g_max, b - r, r - g))
    hue6.div_(chroma.clamp_min(1e-12))  # grey pixels: chroma 0, hue irrelevant
    hue6.add_(torch.where(r_max, 0.0, torch.where(g_max, 2.0, 4.0)))
    hue6.add_(6.0 * shift.view(-1, 1, 1))
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = (hue6.unsqueeze(1) + n).remainder_(6.0)
    torch.minimum(k, 4.0 - k, out=k)
    return k.clamp_(0.0, 1.0).mul_(chroma.unsqueeze(1)).neg_().add_(maxc.unsqueeze(1)).clamp_(0.0, 1.0)


def color_jitter(x: torch.Tensor, seeds: torch.Tensor, p: float = JITTER_P, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
                 stream: int = 0) -> torch.Tensor:
    """``RandomApply(ColorJitter(brightness, contrast, saturation, hue), p)`` per sample.

    Factors: brightness / contrast / saturation ~ U(max(0, 1 − s), 1 + s), hue shift
    ~ U(−hue, hue); the four operations run in a per-sample random order (torchvision).
    x: float ``B×3×H×W`` in [0, 1]; returns a new tensor.
    """
    u = hash_uniform(seeds, 9, stream)
    apply = u[:, 0] < p
    strengths = (brightness, contrast, saturation)
    factors = [max(0.0, 1 - s) + (1 + s - max(0.0, 1 - s)) * u[:, 1 + i] for i, s in enumerate(strengths)]
    factors.append((2 * u[:, 4] - 1) * hue)
    order = u[:, 5:9].argsort(dim=1)  # per-sample permutation of the four operations
    ones = torch.ones_like(factors[0])
    out = x.clone()
    for slot in range(4):
        chosen = order[:, slot]
        # brightness / contrast / saturation are all blends ``f·x + (1 − f)·y`` with y = 0,
        # the image's mean luma or the pixel's luma: one pass per slot for the whole batch,
        # f = 1 (an exact identity) for samples that use hue now or skip the jitter
        f = ones
        for op_id in range(3):
            f = torch.where(apply & (chosen == op_id), factors[op_id], f)
        gray = _gray(out)
        is_con = (chosen == 1).to(out.dtype).view(-1, 1, 1, 1)
        is_sat = (chosen == 2).to(out.dtype).view(-1, 1, 1, 1)
        y = gray.mul(is_sat).add_(gray.mean(dim=(1, 2, 3), keepdim=True) * is_con)
        out.mul_(_factor(f)).addcmul_(y, _factor(1 - f)).clamp_(0.0, 1.0)
        idx = _subset(apply & (chosen == 3))  # hue: only on the samples that use it now
        if idx is not None:
            out[idx] = adjust_hue(out[idx], factors[3][idx])
    return out


def random_grayscale(x: torch.Tensor, seeds: torch.Tensor, p: float = GRAYSCALE_P,
                     stream: int = 0) -> torch.Tensor:
    """Replace the image by its luma (replicated on 3 channels) with probability ``p``."""
    flags = (hash_uniform(seeds, 1, stream)[:, 0] < p).view(-1, 1, 1, 1)
    return torch.where(flags, _gray(x).expand_as(x), x)


def _blur_1d(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-sample 1-D convolution along ``dim`` (3 = columns, 2 = rows) as a sum of shifted
    slices: ``kernel`` is ``n×K``, reflect padding."""
    radius = kernel.shape[1] // 2
    pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
    xp = F.pad(x, pad, mode="reflect")
    size = x.shape[dim]
    out = xp.narrow(dim, 0, size) * kernel[:, 0].view(-1, 1, 1, 1)
    for t in range(1, kernel.shape[1]):
        out.addcmul_(xp.narrow(dim, t, size), kernel[:, t].view(-1, 1, 1, 1))
    return out


def gaussian_blur(x: torch.Tensor, seeds: torch.Tensor, p: float = 1.0, sigma=BLUR_SIGMA,
                  stream: int = 0) -> torch.Tensor:
    """Gaussian blur with probability ``p``, sigma ~ U(sigma) pixels, one kernel per sample.

    Separable (rows then columns), truncated at radius ``ceil(3·sigma_max)`` (at most
    ``size − 1``), reflect padding; each pass is a sum of shifted slices weighted by the
    sample's kernel taps, so it is vectorised over the batch and exact per sample.
    """
    u = hash_uniform(seeds, 2, stream)
    idx = _subset(u[:, 0] < p)
    if idx is None or sigma[1] <= 0:
        return x
    sig = (sigma[0] + (sigma[1] - sigma[0]) * u[idx, 1]).clamp_min(1e-3)
    height, width = x.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma[1]), height - 1, width - 1))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps.view(1, -1) / sig.view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, 2r+1)
    sub = _blur_1d(_blur_1d(x[idx], kernel, 3), kernel, 2)
    out = x.clone()
    out[idx] = sub
    return out


def random_solarize(x: torch.Tensor, seeds: torch.Tensor, p: float, threshold: float = 0.5,
                    stream: int = 0) -> torch.Tensor:
    """With probability ``p`` invert every pixel value ``>= threshold`` (PIL's solarize at 128)."""
    if not isinstance(p, torch.Tensor) and p <= 0:
        return x
    flags = (hash_uniform(seeds, 1, stream)[:, 0] < p).view(-1, 1, 1, 1)
    return torch.where(flags & (x >= threshold), 1.0 - x, x)


# --------------------------------------------------------------------------- views
def blur_sigma_for(out_size: int) -> tuple[float, float]:
    """MoCo v3's blur sigma range (0.1–2.0 px at 224 px) rescaled to ``out_size`` pixels,
    so a 32-px view is blurred as much, relative to its content, as a 224-px one."""
    f = out_size / BLUR_REFERENCE_SIZE
    return BLUR_SIGMA[0] * f, BLUR_SIGMA[1] * f


def moco_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int, min_scale: float,
              blur_p: float | torch.Tensor, solarize_p: float | torch.Tensor, stream: int | torch.Tensor,
              blur_sigma=None) -> torch.Tensor:
    """One MoCo v3 view (normalised): crop+flip, jitter (p 0.8), grayscale (p 0.2), blur, solarize.

    ``blur_p``, ``solarize_p`` and ``stream`` may be ``(B,)`` tensors (a value per sample)."""
    seeds = _check_batch(images, seeds)
    x = random_resized_crop(images, seeds, out_size, scale=(min_scale, 1.0), stream=stream + _CROP)
    x = color_jitter(x, seeds, stream=stream + _JITTER, **JITTER_STRENGTH)
    x = random_grayscale(x, seeds, stream=stream + _GRAY)
    sigma = blur_sigma_for(_size2(out_size)[0]) if blur_sigma is None else tuple(blur_sigma)
    x = gaussian_blur(x, seeds, p=blur_p, sigma=sigma, stream=stream + _BLUR)
    x = random_solarize(x, seeds, p=solarize_p, stream=stream + _SOLARIZE)
    return normalize(x)


def moco_views(images: torch.Tensor, seeds: torch.Tensor, out_size: int, min_scale: float = 0.08,
               blur_sigma=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two asymmetric MoCo v3 views, normalised floats ``B×3×out×out``.

    View 1: blur p = 1.0, no solarize. View 2: blur p = 0.1, solarize p = 0.2. Both: crop
    scale ``(min_scale, 1)``, flip, colour jitter (0.4, 0.4, 0.2, 0.1) p = 0.8, grayscale
    p = 0.2. ``blur_sigma=None`` uses 0.1–2.0 px rescaled from 224 px to ``out_size``
    (:func:`blur_sigma_for`); pass ``(0.1, 2.0)`` for the literal upstream pixel values.
    Both views are made in ONE batched pass over ``2B`` samples (each with its view's stream
    and probabilities): half the kernel launches of two passes, the same numbers.
    """
    seeds = _check_batch(images, seeds)
    b = seeds.shape[0]

    def per_view(values, dtype):
        return torch.tensor(values, dtype=dtype, device=seeds.device).repeat_interleave(b)

    both = moco_view(images.repeat(2, 1, 1, 1), seeds.repeat(2), out_size, min_scale,
                     per_view(MOCO_BLUR_P, torch.float32), per_view(MOCO_SOLARIZE_P, torch.float32),
                     per_view(MOCO_VIEW_STREAMS, torch.int64), blur_sigma)
    return both[:b], both[b:]


def simmim_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int,
                min_scale: float = 0.67, stream: int = SIMMIM_VIEW_STREAM) -> torch.Tensor:
    """SimMIM's view: random resized crop (scale ``(min_scale, 1)``) + flip, normalised."""
    return normalize(random_resized_crop(images, seeds, out_size, scale=(min_scale, 1.0), stream=stream))


def mae_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int,
             min_scale: float = 0.2) -> torch.Tensor:
    """MAE's view: random resized crop (scale ``(min_scale, 1)``) + flip, normalised."""
    return simmim_view(images, seeds, out_size, min_scale, stream=MAE_VIEW_STREAM)


# --------------------------------------------------------------------------- masking
def _num_masked(count: int, ratio: float) -> int:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {ratio}")
    return int(round(count * ratio))


def simmim_mask(seeds: torch.Tensor, grid: int, model_patch_size: int, mask_patch_size: int,
                mask_ratio: float, stream: int = SIMMIM_MASK_STREAM) -> torch.Tensor:
    """SimMIM block masking: ``B×grid×grid`` bool, True = masked token.

    The image (``grid·model_patch_size`` px) is cut into mask patches of ``mask_patch_size``
    px; exactly ``round(mask_ratio·count)`` of them (Python ``round``) are masked per sample,
    chosen by the ranks of per-sample uniforms, and the mask is upsampled to the token grid.
    """
    img_size = grid * model_patch_size
    if mask_patch_size % model_patch_size:
        raise ValueError(f"mask_patch_size ({mask_patch_size} px) must be a multiple of the model "
                         f"patch size ({model_patch_size} px)")
    if img_size % mask_patch_size:
        raise ValueError(f"image size {img_size} px (grid {grid} × patch {model_patch_size}) is not "
                         f"divisible by mask_patch_size ({mask_patch_size} px)")
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    side = img_size // mask_patch_size
    count = side * side
    k = _num_masked(count, mask_ratio)
    rank = hash_uniform(seeds, count, stream).argsort(dim=1, stable=True).argsort(dim=1)
    mask = (rank < k).view(-1, side, side)
    scale = mask_patch_size // model_patch_size
    return mask.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def mae_masking(seeds: torch.Tensor, batch: int, num_tokens: int, mask_ratio: float,
                stream: int = MAE_MASK_STREAM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE random masking from per-sample noise.

    Returns ``ids_keep`` (``B×K``, K = N − round(N·ratio), the visible tokens in shuffled
    order), ``mask`` (``B×N`` float, 1 = masked, in the original token order) and
    ``ids_restore`` (``B×N``, the inverse permutation of the shuffle).
    """
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    if seeds.numel() != batch:
        raise ValueError(f"got {seeds.numel()} seeds for a batch of {batch}")
    keep = num_tokens - _num_masked(num_tokens, mask_ratio)
    if keep < 1:
        raise ValueError(f"mask_ratio {mask_ratio} leaves no visible token out of {num_tokens}")
    noise = hash_uniform(seeds, num_tokens, stream)
    ids_shuffle = noise.argsort(dim=1, stable=True)
    ids_restore = ids_shuffle.argsort(dim=1, stable=True)
    ids_keep = ids_shuffle[:, :keep]
    mask = (ids_restore >= keep).float()
    return ids_keep, mask, ids_restore


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``B×C×H×W`` -> ``B×N×(p·p·C)`` with row-major patches and (row, col, channel) inside."""
    b, c, h, w = x.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image {h}×{w} px is not divisible by patch size {p}")
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, patch_size: int, grid: tuple[int, int] | int | None = None,
               channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify` (square grid unless ``grid`` is given)."""
    b, n, _ = x.shape
    gh, gw = _size2(grid) if grid is not None else (int(math.isqrt(n)),) * 2
    if gh * gw != n:
        raise ValueError(f"{n} tokens do not form a {gh}×{gw} grid")
    p = patch_size
    x = x.reshape(b, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gh * p, gw * p)
