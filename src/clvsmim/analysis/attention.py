"""Self-attention metrics: mean attention distance, NMI and single-query attention maps.

Every metric drops the prefix (CLS) rows and columns of the ``B×H×T×T`` attention and
renormalises each query row over the ``N = h·w`` patch keys (BRIEF.md). The
renormalisation is folded into the formulas (row sums ``s_q``) instead of materialising a
renormalised copy; the patch block is read as a strided view of the capture, and the two
``B×H×N×N`` elementwise terms (``a·D`` and ``a·log a``) are written into one reused workspace.
"""
from __future__ import annotations

import math

import torch

from clvsmim.analysis._shapes import check_attention, compute_dtype, grid_distances

def patch_attention(attn: torch.Tensor, num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-to-patch block ``S`` (``B×H×N×N``, a strided view, no copy) and its query row sums ``s`` (``B×H×N``).

    The renormalised attention is ``S / s[..., None]``. ``s`` is clamped away from zero so a
    row with no patch mass at all (only possible by underflow) yields zeros, not NaNs.
    """
    a = compute_dtype(attn)[..., num_prefix_tokens:, num_prefix_tokens:]
    s = a.sum(-1).clamp_min(torch.finfo(a.dtype).tiny)
    return a, s


def mean_distance(a: torch.Tensor, s: torch.Tensor, distances: torch.Tensor,
                  workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``B×H`` mean over queries of ``Σ_k Â_qk·D_qk`` for ``Â = a/s``; ``distances`` is ``N×N``.

    ``workspace``: optional ``a``-shaped buffer for the product ``a·D`` (overwritten).
    """
    product = torch.mul(a, distances, out=workspace) if workspace is not None else a * distances
    return (product.sum(-1) / s).mean(-1)


def _row_a_log_a(a: torch.Tensor, workspace: torch.Tensor | None) -> torch.Tensor:
    """``Σ_k a_qk log a_qk`` per row (``0·log 0 = 0``), through ``workspace`` if given.

    ``a`` is usually a strided view (prefix rows/columns dropped): it is copied into the
    contiguous workspace first and the log taken in place, because the vectorised log only
    runs on contiguous memory (3× faster than ``log`` of the view on the CPU, copy included).
    """
    def contiguous_logs() -> torch.Tensor:
        return workspace.copy_(a).log_() if workspace is not None else a.contiguous().log()

    logs = contiguous_logs()
    a_log_a = torch.mul(logs, a, out=logs).sum(-1)  # NaN where some a_qk = 0 (0·log 0)
    if not torch.isfinite(a_log_a).all():  # exact zeros (e.g. hard attention): 0·log 0 = 0
        logs = contiguous_logs().clamp_min_(torch.finfo(a.dtype).min)
        a_log_a = torch.mul(logs, a, out=logs).sum(-1)
    return a_log_a


def normalized_mutual_information(a: torch.Tensor, s: torch.Tensor,
                                  workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``B×H`` NMI between query and key for ``p(q) = 1/N`` and ``p(k|q) = Â_qk = a_qk/s_q``.

    ``I = H(k) − H(k|q)`` with ``H(k|q) = mean_q H(Â_q)``, ``H(Â_q) = log s_q − Σ_k a_qk log a_qk / s_q``
    and ``NMI = I / sqrt(H(q)·H(k))``, ``H(q) = log N``. ``0·log 0 = 0``; a head whose key
    marginal is a point mass (``H(k) = 0``, hence ``I = 0``) gets NMI 0. ``I`` is clamped at
    0 (it is non-negative; tiny negative values are round-off). ``workspace``: optional
    ``a``-shaped buffer for ``a·log a`` (overwritten).
    """
    n = a.shape[-1]
    row_entropy = s.log() - _row_a_log_a(a, workspace) / s  # (B, H, N)
    p_k = ((1.0 / (n * s)).unsqueeze(-2) @ a).squeeze(-2)  # key marginal (B, H, N)
    key_entropy = -torch.special.xlogy(p_k, p_k).sum(-1)  # (B, H)
    info = (key_entropy - row_entropy.mean(-1)).clamp_min(0)
    denom = (math.log(n) * key_entropy).sqrt() if n > 1 else torch.zeros_like(key_entropy)
    positive = denom > 0
    return torch.where(positive, info / torch.where(positive, denom, torch.ones_like(denom)), 0.0)


def attention_distance(attn: torch.Tensor, patch_size: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean attention distance in pixels, ``B×H``.

    ``d = mean_i Σ_j Â_ij · patch_size · ‖g_i − g_j‖₂`` with ``Â`` the attention
    ``attn`` (``B×H×T×T``) restricted to the ``N = h·w`` patch tokens and renormalised per row.
    """
    h, w = check_attention(attn, num_prefix_tokens, "attention_distance")
    a, s = patch_attention(attn, num_prefix_tokens)
    return mean_distance(a, s, grid_distances(h, w, a.device, a.dtype)) * patch_size


def attention_nmi(attn: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Normalised mutual information between queries and keys, ``B×H`` (see BRIEF.md).

    ``attn`` is ``B×H×T×T``; prefix rows/columns are dropped and rows renormalised. NMI 0
    means every query attends the same way (attention collapse), 1 means a bijection.
    """
    check_attention(attn, num_prefix_tokens, "attention_nmi")
    return normalized_mutual_information(*patch_attention(attn, num_prefix_tokens))


def attention_statistics(attn: torch.Tensor, patch_size: int,
                         num_prefix_tokens: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Both ``attention_distance`` and ``attention_nmi`` (each ``B×H``) from one slicing pass,
    with one ``B×H×N×N`` workspace for both elementwise terms (no copy of the patch block)."""
    h, w = check_attention(attn, num_prefix_tokens, "attention_statistics")
    a, s = patch_attention(attn, num_prefix_tokens)
    workspace = torch.empty_like(a, memory_format=torch.contiguous_format)
    distance = mean_distance(a, s, grid_distances(h, w, a.device, a.dtype), workspace) * patch_size
    return distance, normalized_mutual_information(a, s, workspace)


def query_attention_map(attn: torch.Tensor, query_index: int | tuple[int, int],
                        num_prefix_tokens: int = 1) -> torch.Tensor:
    """Attention of one query patch over the patch grid, ``B×H×h×w``, each map summing to 1.

    ``query_index`` is a patch index ``0 ≤ i < N`` (row-major, prefix tokens not counted) or a
    ``(row, col)`` grid position.
    """
    h, w = check_attention(attn, num_prefix_tokens, "query_attention_map")
    if isinstance(query_index, (tuple, list)):
        row, col = (int(v) for v in query_index)
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"query_attention_map: (row, col) must lie in the {h}×{w} grid, found {(row, col)}")
        query_index = row * w + col
    if not 0 <= int(query_index) < h * w:
        raise ValueError(f"query_attention_map: query_index must be in [0, {h * w}), found {query_index}")
    a, s = patch_attention(attn, num_prefix_tokens)
    row_weights = a[..., int(query_index), :] / s[..., int(query_index), None]  # (B, H, N)
    return row_weights.reshape(*attn.shape[:2], h, w)
