"""The masks of the MIM objectives (SimMIM's block mask, MAE's random token masking), and the
patch <-> pixel reshapes their targets use."""
from __future__ import annotations

import math

import torch

from clvsmim.data.augment.pixels import size_pair
from clvsmim.data.augment.streams import MAE_MASK_STREAM, SIMMIM_MASK_STREAM
from clvsmim.rng import hash_uniform


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
    gh, gw = size_pair(grid) if grid is not None else (int(math.isqrt(n)),) * 2
    if gh * gw != n:
        raise ValueError(f"{n} tokens do not form a {gh}×{gw} grid")
    p = patch_size
    x = x.reshape(b, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gh * p, gw * p)
