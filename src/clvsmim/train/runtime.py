"""The run's environment: SIGTERM-safe stopping, CPU threads, the accelerate accelerator and its
checks."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import warnings
from typing import Any

import torch

from clvsmim.config import TrainConfig, to_dict


# --------------------------------------------------------------------------- runtime

# Config fields that do not change the optimisation (may differ between a run and its resume).
_BOOKKEEPING_FIELDS = {"checkpoint_every", "log_every"}

_STOP = threading.Event()  # set by SIGTERM: stop after the current step, checkpoint, return


def stop_requested() -> bool:
    """Whether this process received SIGTERM while (or before) training."""
    return _STOP.is_set()


class StopOnSigterm:
    """While active (main thread only), SIGTERM sets :func:`stop_requested` instead of killing."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, lambda signum, frame: _STOP.set())
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads from ``threads`` or ``$CLVSMIM_THREADS``; returns the count in use."""
    threads = threads or int(os.environ.get("CLVSMIM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def make_accelerator(cpu: bool | None = None, find_unused_parameters: bool = False):
    """An ``Accelerator`` that leaves mixed precision to the trainer (``cfg.precision``).

    ``find_unused_parameters`` is needed under DDP only by objectives whose forward leaves
    trainable parameters out of the graph; they declare ``has_unused_parameters = True``.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs  # lazy: slow to import, training only

    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    return Accelerator(mixed_precision="no", cpu=cpu, kwargs_handlers=[ddp])


def check_accelerator(accelerator, cfg: TrainConfig) -> None:
    if accelerator.mixed_precision not in ("no", "bf16"):
        raise ValueError(f"accelerator mixed_precision={accelerator.mixed_precision!r} is not supported; "
                         "set TrainConfig.precision='bf16' and use mixed_precision='no'")
    if accelerator.mixed_precision == "bf16" and cfg.precision != "bf16":
        warnings.warn("the accelerator autocasts to bf16 although cfg.precision is fp32", stacklevel=3)
    if accelerator.gradient_accumulation_steps != 1:
        raise ValueError("set TrainConfig.grad_accum instead of the accelerator's gradient_accumulation_steps")


def check_shapes(cfg: TrainConfig, world: int) -> None:
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by processes ({world}) "
                         f"x grad_accum ({cfg.grad_accum})")


def math_config(cfg: TrainConfig | dict) -> dict[str, Any]:
    raw = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return {k: v for k, v in raw.items() if k not in _BOOKKEEPING_FIELDS}
