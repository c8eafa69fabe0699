"""The random resized crop (+ horizontal flip) of every view, vectorised: per-sample boxes
(torchvision's sampler), one axis-aligned sampling grid, one ``grid_sample`` call."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from clvsmim.data.augment.pixels import check_batch, size_pair, to_float
from clvsmim.rng import hash_uniform


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
    seeds = check_batch(images, seeds)
    x = to_float(images)
    b, _, height, width = x.shape
    oh, ow = size_pair(out_size)
    boxes = crop_params(seeds, height, width, scale, ratio, flip, stream)
    grid = crop_boxes_to_grid(boxes, height, width, oh, ow)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)
