"""Colour operations with per-sample randomness: MoCo v3's colour jitter (brightness, contrast,
saturation, hue in a per-sample random order), grayscale, gaussian blur and solarize. Inputs
are float ``B×3×H×W`` in [0, 1]."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clvsmim.data.augment.pixels import true_indices
from clvsmim.rng import hash_uniform

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

# MoCo v3 recipe (main_moco.py of facebookresearch/moco-v3, augmentation1 / augmentation2).
JITTER_STRENGTH = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
JITTER_P = 0.8
GRAYSCALE_P = 0.2
BLUR_SIGMA = (0.1, 2.0)  # pixels at 224 px


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
        idx = true_indices(apply & (chosen == 3))  # hue: only on the samples that use it now
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
    idx = true_indices(u[:, 0] < p)
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
