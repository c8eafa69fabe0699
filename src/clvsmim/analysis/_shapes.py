"""Shape checks, patch-grid geometry and cached geometry tensors shared by the analyses.

Conventions used throughout :mod:`clvsmim.analysis`:

* ``B`` images, ``H`` heads, ``T = P + N`` tokens of which the first ``P``
  (``num_prefix_tokens``: CLS, register tokens) are dropped, leaving ``N = h·w`` patch
  tokens on a square ``h×w`` grid in row-major order, ``C`` channels.
* Attention maps are ``B×H×T×T`` softmax weights (rows = queries); token features are
  ``B×T×C``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

# Floating types the metrics compute in; lower precision inputs (fp16/bf16) are upcast.
_COMPUTE_DTYPES = (torch.float32, torch.float64)


def compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if float32/float64, else ``x`` upcast to float32 (for stable logs)."""
    return x if x.dtype in _COMPUTE_DTYPES else x.float()


def square_grid(num_tokens: int, num_prefix_tokens: int, what: str) -> tuple[int, int]:
    """The ``(h, w)`` patch grid of ``num_tokens`` tokens after dropping the prefix ones.

    Raises ``ValueError`` naming ``what`` if the prefix is invalid or ``N`` is not ``h·h``.
    """
    if num_prefix_tokens < 0:
        raise ValueError(f"{what}: num_prefix_tokens must be >= 0, found {num_prefix_tokens}")
    n = num_tokens - num_prefix_tokens
    side = math.isqrt(max(n, 0))
    if n <= 0 or side * side != n:
        raise ValueError(
            f"{what}: expected T = num_prefix_tokens + h·h tokens on a square grid, found "
            f"T={num_tokens} with num_prefix_tokens={num_prefix_tokens} -> N={n} patch tokens, "
            f"which is not a perfect square")
    return side, side


def check_attention(attn: torch.Tensor, num_prefix_tokens: int, what: str) -> tuple[int, int]:
    """Validate a ``B×H×T×T`` attention tensor and return its patch grid ``(h, w)``."""
    if not isinstance(attn, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor of shape B×H×T×T, found {type(attn).__name__}")
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"{what}: expected attention of shape B×H×T×T (4-D, square in the last two "
                         f"dims), found shape {tuple(attn.shape)}")
    return square_grid(attn.shape[-1], num_prefix_tokens, what)


def check_tokens(z: torch.Tensor, num_prefix_tokens: int, what: str) -> tuple[int, int]:
    """Validate a ``B×T×C`` token-feature tensor and return its patch grid ``(h, w)``."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor of shape B×T×C, found {type(z).__name__}")
    if z.ndim != 3:
        raise ValueError(f"{what}: expected token features of shape B×T×C (3-D), found shape {tuple(z.shape)}")
    return square_grid(z.shape[1], num_prefix_tokens, what)


@lru_cache(maxsize=32)
def grid_distances(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``N×N`` Euclidean distances ``‖g_i − g_j‖₂`` between patch positions, in patch units.

    Cached per geometry/device/dtype: treat the result as read-only.
    """
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)  # (N, 2)
    return torch.cdist(pos, pos).to(device=device, dtype=dtype)


@lru_cache(maxsize=32)
def antidiagonal_sums(side: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``side×N`` 0/1 matrix summing a row-major ``side×side`` map over its wrapped anti-diagonals.

    Row ``m`` selects the positions ``(r, c)`` with ``(r + c) mod side = m``: on a square grid
    the diagonal frequencies ``(u, u)`` of the 2-D DFT depend on ``x[r, c]`` only through
    these sums (``F(u,u) = Σ_m y_m·exp(−2πi·u·m/side)``), so ``N`` points shrink to ``side``.
    Cached: treat the result as read-only.
    """
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    sums = torch.zeros(side, side * side, dtype=dtype)
    sums[((rows + cols) % side).reshape(-1), torch.arange(side * side)] = 1
    return sums.to(device)


@lru_cache(maxsize=32)
def diagonal_dft_basis(side: int, device: torch.device) -> torch.Tensor:
    """``2K×side`` float64 matrix: the diagonal DFT frequencies from anti-diagonal sums.

    ``K = side − side//2``. For the anti-diagonal sums ``y`` of a real ``side×side`` map ``x``
    (:func:`antidiagonal_sums`), ``basis @ y`` gives ``[Re F(0,0) … Re F(K−1,K−1), Im F(0,0) …
    Im F(K−1,K−1)]`` with ``F(u,v) = Σ_{r,c} x[r,c]·exp(−2πi(u·r + v·c)/side)``. After
    ``fftshift`` these are exactly the entries on the diagonal from the centre
    ``(side//2, side//2)`` to the corner. Cached: treat the result as read-only.
    """
    k = side - side // 2
    phase = (2 * math.pi / side) * torch.arange(k, dtype=torch.float64).reshape(-1, 1) \
        * torch.arange(side, dtype=torch.float64).reshape(1, -1)  # (K, side)
    return torch.cat([phase.cos(), -phase.sin()], dim=0).to(device)
