"""Numerical precision: where bf16 autocast is native (and so worth using) and the context for it."""
from __future__ import annotations

import os
import warnings
from contextlib import nullcontext

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (CUDA with bf16; CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return True


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision actually used: ``bf16`` falls back to ``fp32`` (with a warning) on a device
    without native bf16, where autocast emulates it and is many times slower (measured ~15x on
    an AVX2 CPU); ``$CLVSMIM_FORCE_BF16=1`` keeps bf16 regardless."""
    if requested not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {requested!r}; expected 'fp32' or 'bf16'")
    if requested == "bf16" and not native_bf16(device) and os.environ.get("CLVSMIM_FORCE_BF16") != "1":
        warnings.warn(f"{device.type} has no native bf16 support: training in fp32 instead "
                      "(set CLVSMIM_FORCE_BF16=1 to autocast anyway)", stacklevel=3)
        return "fp32"
    return requested


def autocast_for(device: torch.device, precision: str):
    """``torch.autocast`` to bf16 on the device's type when ``precision == 'bf16'``."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; expected 'fp32' or 'bf16'")
