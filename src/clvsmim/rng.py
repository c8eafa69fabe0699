"""Counter-based randomness: per-sample random numbers as a pure function of integer seeds.

Every random choice of the training pipeline (crops, jitter, masks) is drawn from
:func:`hash_uniform` of a *per-sample seed* ``seed = sample_seed(run_seed, step, index)``.
The numbers therefore do not depend on the batch split, the device, the number of
processes or on resuming: a DDP run sees exactly the augmentations of a single-process run
with the same global batch, and an interrupted run resumes bit-exactly.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def pcg_hash(x: torch.Tensor) -> torch.Tensor:
    """PCG-style 32-bit integer hash (Jarzynski & Olano, 2020), element-wise on int64.

    Inputs are taken modulo 2³²; every product stays below 2⁶² so int64 never overflows.
    """
    state = (x & _MASK32) * 747796405 + 2891336453
    state = state & _MASK32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _MASK32
    return ((word >> 22) ^ word) & _MASK32


def sample_seed(run_seed: int, step: int | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-sample seeds ``(B,)`` int64 from a run seed, a step and global sample indices."""
    index = torch.as_tensor(index, dtype=torch.int64)
    step = torch.as_tensor(step, dtype=torch.int64, device=index.device)
    return pcg_hash(pcg_hash(pcg_hash(torch.full_like(index, run_seed)) ^ step) ^ index)


def hash_uniform(seeds: torch.Tensor, n: int, stream: int | torch.Tensor = 0) -> torch.Tensor:
    """``(B, n)`` float32 uniforms in [0, 1), one independent row per seed.

    ``stream`` separates independent uses (e.g. crop vs. jitter vs. mask) of the same seed:
    an int, or a ``(B,)`` integer tensor giving each row its own stream (row ``i`` then equals
    ``hash_uniform(seeds[i:i+1], n, int(stream[i]))``: several uses in one batched call).
    """
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    if isinstance(stream, torch.Tensor):
        stream = stream.to(device=seeds.device, dtype=torch.int64).reshape(-1, 1)
    counters = torch.arange(n, dtype=torch.int64, device=seeds.device).reshape(1, n) + (stream & 0xFFFF) * 65536
    h = pcg_hash(pcg_hash(seeds.reshape(-1, 1)) ^ pcg_hash(counters + 0x9E3779B9))
    return (h >> 8).to(torch.float32) / float(1 << 24)


def hash_normal(seeds: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """``(B, n)`` standard normals (Box–Muller on two :func:`hash_uniform` streams)."""
    u1 = hash_uniform(seeds, n, 2 * stream + 1).clamp_min(1e-7)
    u2 = hash_uniform(seeds, n, 2 * stream + 2)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)
