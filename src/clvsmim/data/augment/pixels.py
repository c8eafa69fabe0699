"""Pixel values and batch checks shared by the augmentations: uint8 -> float, ImageNet
normalisation and its inverse, the evaluation view, and the checks of a ``B×3×H×W`` batch."""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def check_batch(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """``seeds`` as an int64 ``(B,)`` tensor on the images' device, after checking that
    ``images`` is ``B×3×H×W`` and that there is one seed per image."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images B×3×H×W, got shape {tuple(images.shape)}")
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=images.device).reshape(-1)
    if seeds.numel() != images.shape[0]:
        raise ValueError(f"got {seeds.numel()} seeds for a batch of {images.shape[0]} images")
    return seeds


def size_pair(size) -> tuple[int, int]:
    """``(height, width)`` of an int (square) or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def true_indices(flags: torch.Tensor) -> torch.Tensor | None:
    """Indices where ``flags`` is True, or None when there are none."""
    idx = flags.nonzero().squeeze(1)
    return idx if idx.numel() else None
