"""One trainer for every objective, on ``accelerate``: CPU, one GPU or ``accelerate launch``.

Determinism by construction
---------------------------
* Data order is global: epoch ``e`` is a permutation of the dataset drawn from a generator
  seeded by ``(cfg.seed, e)``; optimizer step ``s`` (0-based) uses the ``cfg.batch_size``
  consecutive indices ``s·B … s·B+B-1`` of that order (last incomplete batch dropped).
* Process ``r`` of ``W`` takes the contiguous shard ``[r·B/W, (r+1)·B/W)`` of the global
  batch and splits it into ``cfg.grad_accum`` micro-batches.
* Every sample's randomness comes from ``sample_seed(cfg.seed, s, global_index)``, passed to
  ``objective(images, seeds)``.

Hence a DDP run equals a single-process run with the same global batch (the loss is a
per-sample mean, gradients are averaged), and ``resume=True`` continues bit-exactly.

Stopping: SIGTERM (what ``timeout``, SLURM and preemptible machines send) makes the run save a
checkpoint after its current step and return as incomplete (``summary['complete']`` False);
every later :func:`train` in that process stops at its start. ``resume=True`` continues it.

Step numbering: ``s`` is the 0-based index of an optimizer step (used for the per-sample
seeds, the LR schedule and ``objective.after_optimizer_step(s, total_steps)``); the log,
checkpoints and error messages count steps *done*, ``s + 1``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from clvsmim.cache import write_atomic, write_json_atomic
from clvsmim.train.checkpoint import (CHECKPOINT_NAME, capture_rng_state, load_checkpoint, load_encoder,
                         load_objective_state, restore_rng_state, save_atomic)
from clvsmim.config import ModelConfig, TrainConfig, to_dict
from clvsmim.precision import autocast_for, native_bf16, resolve_precision
from clvsmim.rng import pcg_hash, sample_seed

__all__ = [
    "NonFiniteLossError", "CosineSchedule", "train", "build_optimizer", "build_scheduler", "param_groups",
    "uses_weight_decay", "native_bf16", "resolve_precision", "autocast_for", "epoch_permutation", "BatchPlan",
    "make_accelerator", "load_encoder", "load_objective_state", "set_threads",
    "LOG_NAME", "META_NAME", "stop_requested",
]

LOG_NAME = "log.csv"
META_NAME = "meta.json"
BASE_COLUMNS = ("step", "loss", "lr", "images_per_s")
# Config fields that do not change the optimisation (may differ between a run and its resume).
_BOOKKEEPING_FIELDS = {"checkpoint_every", "log_every"}
# Parameter-name fragments that never get weight decay (besides biases and every 1-d tensor).
_NO_DECAY_TOKENS = ("pos_embed", "cls_token", "mask_token", "dist_token", "reg_token", "norm",
                    "relative_position_bias_table")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint on disk is left untouched."""

    def __init__(self, step: int, value: float, checkpoint_step: int | None, what: str = "loss"):
        self.step, self.value, self.checkpoint_step = step, value, checkpoint_step
        kept = f"last good checkpoint: step {checkpoint_step}" if checkpoint_step else "no checkpoint written yet"
        super().__init__(f"non-finite {what} {value} at step {step} ({kept})")


# --------------------------------------------------------------------------- optimisation

@dataclasses.dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr``, per optimizer step.

    ``lr_at(s)`` for the 0-based step ``s``: ``lr·(s+1)/warmup`` while ``s < warmup``, then
    ``min_lr + (lr-min_lr)·(1+cos(π·p))/2`` with ``p = (s-warmup)/(total-warmup-1)``, so the
    last warm-up step and the first cosine step use ``lr`` and the last step uses ``min_lr``.
    Calling the schedule gives the multiplicative factor ``LambdaLR`` expects.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr_at(step) / self.lr if self.lr else 0.0


def uses_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Weight decay applies to matrices only: not to norms, biases, position embeddings,
    CLS / mask tokens, nor any 1-d parameter."""
    if param.ndim <= 1 or name.endswith(".bias") or name == "bias":
        return False
    return not any(token in name for token in _NO_DECAY_TOKENS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups (decay / no decay) of the trainable parameters (``requires_grad``)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if uses_weight_decay(name, param) else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters with the weight-decay split of :func:`param_groups`."""
    groups = param_groups(model, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the objective has no trainable parameters (all requires_grad=False)")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :class:`CosineSchedule` as a resumable ``LambdaLR``."""
    schedule = CosineSchedule(cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# --------------------------------------------------------------------------- data order

def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global sample order of one epoch: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    mixed = pcg_hash(pcg_hash(torch.tensor(seed, dtype=torch.int64)) ^ epoch)
    generator = torch.Generator().manual_seed(int(mixed))
    return torch.randperm(n, generator=generator)


class BatchPlan:
    """Global batch indices of every step, and each process's shard of them."""

    def __init__(self, num_samples: int, batch_size: int, seed: int):
        if num_samples < batch_size:
            raise ValueError(f"dataset has {num_samples} samples, fewer than one batch of {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.steps_per_epoch = num_samples // batch_size
        self._epoch, self._perm = -1, None

    def global_indices(self, step: int) -> torch.Tensor:
        """The ``batch_size`` dataset indices of 0-based step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.num_samples, self.seed, epoch)
        return self._perm[within * self.batch_size:(within + 1) * self.batch_size]

    def shard(self, indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        """Contiguous slice ``[rank·B/W, (rank+1)·B/W)`` of a global batch."""
        per = len(indices) // world
        return indices[rank * per:(rank + 1) * per]


def _default_batch_fn(dataset, indices: torch.Tensor):
    from clvsmim.data import get_batch  # imported lazily: the data module is optional for custom datasets
    return get_batch(dataset, indices)


def _prefetched(produce: Callable[[int], Any], steps: range) -> Iterator[tuple[int, Any]]:
    """Yield ``(s, produce(s))`` for ``s`` in ``steps`` while the next item loads in a thread."""
    if not steps:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(produce, steps[0])
        for i, s in enumerate(steps):
            item = pending.result()
            if i + 1 < len(steps):
                pending = pool.submit(produce, steps[i + 1])
            yield s, item


# --------------------------------------------------------------------------- logging

class MetricWindow:
    """Running sums of the scalars since the last log row (checkpointed, so resume is exact),
    plus this session's throughput counters (wall time is not reproducible anyway)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self._images, self._since = 0, time.perf_counter()

    def add(self, scalars: dict[str, float], images: int) -> None:
        for key, value in scalars.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self._images += images

    def pop(self) -> dict[str, float]:
        """Window means plus ``images_per_s``; resets the window."""
        row = {k: v / self.count for k, v in self.sums.items()}
        elapsed = time.perf_counter() - self._since
        row["images_per_s"] = self._images / elapsed if elapsed > 0 else float("nan")
        self.sums, self.count = {}, 0
        self._images, self._since = 0, time.perf_counter()
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.count = dict(state["sums"]), int(state["count"])


class CsvLog:
    """``log.csv``: one row per logged step; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        self.columns: list[str] | None = None
        if keep_until is None:
            path.unlink(missing_ok=True)
        else:
            self._truncate(keep_until)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or []) or None
            rows = [r for r in reader if int(r["step"]) <= step]
        def write(f) -> None:
            if self.columns:
                writer = csv.DictWriter(f, self.columns)
                writer.writeheader()
                writer.writerows(rows)

        write_atomic(self.path, write)

    def append(self, row: dict[str, Any]) -> None:
        new_file = self.columns is None
        if new_file:
            extra = sorted(k for k in row if k not in BASE_COLUMNS)
            self.columns = [*BASE_COLUMNS, *extra]
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore", restval="")
            if new_file:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------- runtime

_STOP = threading.Event()  # set by SIGTERM: stop after the current step, checkpoint, return


def stop_requested() -> bool:
    """Whether this process received SIGTERM while (or before) training."""
    return _STOP.is_set()


class _StopOnSigterm:
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
    from accelerate import Accelerator, DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    return Accelerator(mixed_precision="no", cpu=cpu, kwargs_handlers=[ddp])


def _check_accelerator(accelerator, cfg: TrainConfig) -> None:
    if accelerator.mixed_precision not in ("no", "bf16"):
        raise ValueError(f"accelerator mixed_precision={accelerator.mixed_precision!r} is not supported; "
                         "set TrainConfig.precision='bf16' and use mixed_precision='no'")
    if accelerator.mixed_precision == "bf16" and cfg.precision != "bf16":
        warnings.warn("the accelerator autocasts to bf16 although cfg.precision is fp32", stacklevel=3)
    if accelerator.gradient_accumulation_steps != 1:
        raise ValueError("set TrainConfig.grad_accum instead of the accelerator's gradient_accumulation_steps")


def _check_shapes(cfg: TrainConfig, world: int) -> None:
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by processes ({world}) "
                         f"x grad_accum ({cfg.grad_accum})")


def _math_config(cfg: TrainConfig | dict) -> dict[str, Any]:
    raw = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return {k: v for k, v in raw.items() if k not in _BOOKKEEPING_FIELDS}


# --------------------------------------------------------------------------- one step

def _scalars(out: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    if "loss" not in out:
        raise KeyError(f"objective returned {sorted(out)} without a 'loss' entry")
    return {k: torch.as_tensor(v, device=device).detach().float().reshape(()) for k, v in out.items()}


def _forward_backward(model, accelerator, images, seeds, grad_accum: int, precision: str) -> dict[str, torch.Tensor]:
    """Accumulate gradients over ``grad_accum`` micro-batches; returns local mean scalars."""
    totals: dict[str, torch.Tensor] = {}
    chunks = list(zip(images.chunk(grad_accum), seeds.chunk(grad_accum)))
    for i, (x, seed) in enumerate(chunks):
        sync = accelerator.no_sync(model) if i + 1 < len(chunks) else nullcontext()
        with sync:
            with autocast_for(accelerator.device, precision):
                out = model(x, seed)
            accelerator.backward(out["loss"] / len(chunks))
        for k, v in _scalars(out, accelerator.device).items():
            totals[k] = totals.get(k, 0.0) + v / len(chunks)
    return totals


def _reduce(accelerator, scalars: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of every scalar over processes (one collective, one host sync)."""
    keys = sorted(scalars)
    values = accelerator.reduce(torch.stack([scalars[k] for k in keys]), reduction="mean")
    return dict(zip(keys, values.tolist()))


def _clip(accelerator, params: list[torch.Tensor], max_norm: float) -> float:
    """Clip the global gradient norm (``max_norm`` 0 = measure only); returns the pre-clip norm."""
    norm = accelerator.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return float(norm)


# --------------------------------------------------------------------------- checkpoints

def _checkpoint_dict(objective, optimizer, scheduler, step, cfg, model_config, window, wall_time) -> dict:
    return {
        "model": objective.state_dict(),
        "encoder": objective.encoder.state_dict(),
        "model_config": to_dict(model_config) if model_config is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": capture_rng_state(),
        "config": to_dict(cfg),
        "objective": _objective_name(objective),
        "objective_id": _objective_id(objective),
        "log_window": window.state_dict(),
        "wall_time_s": wall_time,
    }


def _objective_name(objective: nn.Module) -> str:
    return str(getattr(objective, "name", type(objective).__name__))


def _objective_id(objective: nn.Module) -> dict[str, Any]:
    """What must match to resume: the objective's name and, for the hybrid, its weight λ."""
    lam = getattr(objective, "lam", None)
    return {"name": _objective_name(objective), "lam": None if lam is None else float(lam)}


def _completed(path: Path, cfg: TrainConfig, objective_id: dict) -> dict | None:
    """The finished checkpoint in ``path`` if it is this very run, else ``None``."""
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    same = _math_config(ckpt["config"]) == _math_config(cfg) and ckpt.get("objective_id") == objective_id
    return ckpt if same and int(ckpt["step"]) >= cfg.steps else None


def _resume_checkpoint(path: Path, cfg: TrainConfig, objective_id: dict) -> dict | None:
    if not path.is_file():
        warnings.warn(f"resume requested but {path} does not exist: starting from step 0", stacklevel=3)
        return None
    ckpt = load_checkpoint(path)
    if _math_config(ckpt["config"]) != _math_config(cfg):
        raise ValueError(f"cannot resume {path}: its TrainConfig {ckpt['config']} differs from {to_dict(cfg)}")
    if ckpt.get("objective_id") != objective_id:
        raise ValueError(f"cannot resume {path}: it trained {ckpt.get('objective_id')}, not {objective_id}")
    return ckpt


def _summary(out_dir: Path, name: str, step: int, total: int, final_loss, images_per_s, wall_time) -> dict:
    return {
        "objective": name, "step": step, "total_steps": total, "complete": step >= total,
        "final_loss": final_loss, "images_per_s": images_per_s, "wall_time_s": wall_time,
        "out_dir": str(out_dir), "checkpoint": str(out_dir / CHECKPOINT_NAME), "log": str(out_dir / LOG_NAME),
    }


def _write_meta(out_dir: Path, summary: dict, cfg: TrainConfig, model_config, extra_meta) -> None:
    meta = {**summary, "config": to_dict(cfg), "git_commit": git_commit(),
            "model_config": to_dict(model_config) if model_config is not None else None,
            **to_dict(extra_meta or {})}
    write_json_atomic(out_dir / META_NAME, meta, indent=2, default=str)


def _summary_of_finished(out_dir: Path, ckpt: dict, name: str, cfg: TrainConfig) -> dict:
    meta_path = out_dir / META_NAME
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        keys = ("final_loss", "images_per_s")
        return _summary(out_dir, name, int(ckpt["step"]), cfg.steps, *(meta.get(k) for k in keys),
                        meta.get("wall_time_s"))
    return _summary(out_dir, name, int(ckpt["step"]), cfg.steps, None, None, ckpt.get("wall_time_s"))


# --------------------------------------------------------------------------- train

@dataclasses.dataclass
class _Session:
    """Everything one training session (a fresh start or a resume) works with."""

    accelerator: Any
    model: nn.Module  # possibly DDP-wrapped
    core: nn.Module  # the unwrapped objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    cfg: TrainConfig
    precision: str
    ckpt_path: Path
    model_config: ModelConfig | None
    log: CsvLog | None
    window: MetricWindow = dataclasses.field(default_factory=MetricWindow)
    start: int = 0
    last_ckpt: int | None = None
    wall_before: float = 0.0
    started_at: float = dataclasses.field(default_factory=time.perf_counter)
    images: int = 0
    final_loss: float | None = None

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.started_at

    def restore(self, ckpt: dict) -> None:
        """Optimizer, scheduler, RNG, log window and step from a checkpoint (model loaded before DDP)."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        self.window.load_state_dict(ckpt["log_window"])
        self.start = self.last_ckpt = int(ckpt["step"])
        self.wall_before = float(ckpt.get("wall_time_s", 0.0))

    def step(self, s: int, local_idx: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
        """Optimizer step ``s`` on this process's shard; raises before updating if anything is non-finite."""
        acc, cfg = self.accelerator, self.cfg
        images = images.to(acc.device, non_blocking=True)
        seeds = sample_seed(cfg.seed, s, local_idx).to(acc.device)
        scalars = _reduce(acc, _forward_backward(self.model, acc, images, seeds, cfg.grad_accum, self.precision))
        scalars["lr"] = self.optimizer.param_groups[0]["lr"]
        if not math.isfinite(scalars["loss"]):
            raise NonFiniteLossError(s + 1, scalars["loss"], self.last_ckpt)
        scalars["grad_norm"] = _clip(acc, self.params, cfg.grad_clip)
        if not math.isfinite(scalars["grad_norm"]):
            raise NonFiniteLossError(s + 1, scalars["grad_norm"], self.last_ckpt, what="gradient norm")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.core.after_optimizer_step(s, cfg.steps)
        self.images += cfg.batch_size
        return scalars

    def record(self, done: int, scalars: dict[str, float]) -> dict | None:
        """Add a step to the log window; every ``log_every`` steps (and at the end) write a row."""
        lr = scalars.pop("lr")
        self.window.add(scalars, self.cfg.batch_size)
        if done % self.cfg.log_every and done != self.cfg.steps:
            return None
        row = {**self.window.pop(), "step": done, "lr": lr}
        self.final_loss = row["loss"]
        if self.log is not None:
            self.log.append(row)
        return row

    def save(self, done: int) -> None:
        """Atomic checkpoint by the main process; every process waits for it."""
        if self.accelerator.is_main_process:
            save_atomic(_checkpoint_dict(self.core, self.optimizer, self.scheduler, done, self.cfg,
                                         self.model_config, self.window, self.wall_time()), self.ckpt_path)
        self.accelerator.wait_for_everyone()
        self.last_ckpt = done


def _open_session(objective, cfg, accelerator, out_dir: Path, resume: bool, model_config) -> _Session:
    """Prepare model / optimizer / scheduler / log, restored from the checkpoint when resuming."""
    ckpt_path = out_dir / CHECKPOINT_NAME
    ckpt = _resume_checkpoint(ckpt_path, cfg, _objective_id(objective)) if resume else None
    if ckpt is not None:
        objective.load_state_dict(ckpt["model"])  # before DDP wraps (and broadcasts) it
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    model = accelerator.prepare_model(objective)
    core = accelerator.unwrap_model(model)
    optimizer = build_optimizer(core, cfg)
    session = _Session(accelerator, model, core, optimizer, build_scheduler(optimizer, cfg), cfg,
                       resolve_precision(cfg.precision, accelerator.device), ckpt_path, model_config, log=None)
    if ckpt is not None:
        session.restore(ckpt)
    if accelerator.is_main_process:
        session.log = CsvLog(out_dir / LOG_NAME, keep_until=session.start if resume else None)
    accelerator.wait_for_everyone()
    return session


def train(objective: nn.Module, dataset, cfg: TrainConfig, out_dir: str | Path, resume: bool = False,
          accelerator=None, progress: bool = True, extra_meta: dict | None = None, *,
          model_config: ModelConfig | None = None, batch_fn: Callable | None = None,
          stop_after: int | None = None, callback: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``objective`` on ``dataset`` for ``cfg.steps`` optimizer steps; returns a summary dict.

    objective:    an :class:`~clvsmim.objectives.base.Objective` (``objective(images, seeds) -> {'loss', ...}``).
    dataset:      anything ``batch_fn(dataset, indices) -> (uint8 images, labels)`` accepts, with ``len``;
                  ``batch_fn`` defaults to :func:`clvsmim.data.get_batch`.
    out_dir:      receives ``checkpoint.pt``, ``log.csv`` and ``meta.json``.
    resume:       continue exactly from ``out_dir/checkpoint.pt``. A finished checkpoint of the same
                  run (same config and objective) returns immediately, with or without ``resume``.
    accelerator:  an ``accelerate.Accelerator`` (default: :func:`make_accelerator`).
    extra_meta:   more entries for ``meta.json`` (profile, λ, ...).
    model_config: the encoder's ModelConfig stored for :func:`load_encoder`
                  (default ``objective.model_config`` if present).
    stop_after:   pause after this many steps done (checkpoint written), as if the budget ended.
    callback:     ``callback(step_done, scalars)`` after every step (tests inject crashes here).

    Raises :class:`NonFiniteLossError` (before any update) when the loss or gradient norm is
    not finite; the checkpoint on disk is then the last good one.
    """
    out_dir = Path(out_dir)
    model_config = model_config if model_config is not None else getattr(objective, "model_config", None)
    if model_config is None:
        warnings.warn("no model_config given (nor objective.model_config): load_encoder will not be able "
                      "to rebuild the backbone from this checkpoint", stacklevel=2)
    finished = _completed(out_dir / CHECKPOINT_NAME, cfg, _objective_id(objective))
    if finished is not None:
        objective.load_state_dict(finished["model"])  # the caller gets the trained weights either way
        return _summary_of_finished(out_dir, finished, _objective_name(objective), cfg)

    accelerator = accelerator or make_accelerator(
        find_unused_parameters=bool(getattr(objective, "has_unused_parameters", False)))
    _check_accelerator(accelerator, cfg)
    _check_shapes(cfg, accelerator.num_processes)
    session = _open_session(objective, cfg, accelerator, out_dir, resume, model_config)
    stop = cfg.steps if stop_after is None else min(cfg.steps, max(stop_after, session.start))
    fetch = _shard_fetcher(dataset, batch_fn or _default_batch_fn, cfg, accelerator)

    bar = _progress_bar(cfg.steps, session.start, enabled=progress and accelerator.is_main_process)
    session.model.train()
    if stop_requested():
        stop = session.start
    try:
        with _StopOnSigterm():
            for s, (local_idx, images) in _prefetched(fetch, range(session.start, stop)):
                scalars = session.step(s, local_idx, images)
                row = session.record(s + 1, dict(scalars))
                if row is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
                bar.update(1)
                if stop_requested():
                    stop = s + 1
                if (s + 1) % cfg.checkpoint_every == 0 or s + 1 == stop:
                    session.save(s + 1)
                if callback is not None:
                    callback(s + 1, scalars)
                if s + 1 == stop:
                    break
    finally:
        bar.close()
    return _finish(session, out_dir, stop, extra_meta)


def _shard_fetcher(dataset, batch_fn: Callable, cfg: TrainConfig, accelerator) -> Callable[[int], tuple]:
    """``fetch(s) -> (global indices of this process's shard, uint8 images)`` for step ``s``."""
    plan = BatchPlan(len(dataset), cfg.batch_size, cfg.seed)
    rank, world = accelerator.process_index, accelerator.num_processes

    def fetch(s: int):
        local_idx = plan.shard(plan.global_indices(s), rank, world)
        images, _labels = batch_fn(dataset, local_idx)
        return local_idx, images

    return fetch


def _finish(session: _Session, out_dir: Path, stop: int, extra_meta: dict | None) -> dict:
    """Summary of the session; ``meta.json`` written by the main process."""
    elapsed = time.perf_counter() - session.started_at
    images_per_s = session.images / elapsed if session.images and elapsed > 0 else None
    summary = _summary(out_dir, _objective_name(session.core), stop, session.cfg.steps, session.final_loss,
                       images_per_s, session.wall_time())
    if session.accelerator.is_main_process:
        _write_meta(out_dir, {**summary, "precision_used": session.precision,
                              "num_processes": session.accelerator.num_processes},
                    session.cfg, session.model_config, extra_meta)
    return summary


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True)
