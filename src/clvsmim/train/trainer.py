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

import dataclasses
import json
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from clvsmim.cache import write_json_atomic
from clvsmim.train.loop import run_steps
from clvsmim.train.run_lock import run_lock
from clvsmim.train.checkpoint import (CHECKPOINT_NAME, capture_rng_state, load_checkpoint, load_encoder,
                         load_objective_state, restore_rng_state, save_atomic)
from clvsmim.config import ModelConfig, TrainConfig, to_dict
from clvsmim.precision import autocast_for, native_bf16, resolve_precision
from clvsmim.rng import sample_seed
from clvsmim.train.batches import BatchPlan, default_batch_fn, epoch_permutation
from clvsmim.train.optim import CosineSchedule, build_optimizer, build_scheduler, param_groups, uses_weight_decay
from clvsmim.train.runlog import CsvLog, LOG_NAME, META_NAME, MetricWindow, git_commit
from clvsmim.train.runtime import (check_accelerator, check_shapes, math_config, make_accelerator, set_threads,
                                   stop_requested)

__all__ = [
    "NonFiniteLossError", "CosineSchedule", "train", "build_optimizer", "build_scheduler", "param_groups",
    "uses_weight_decay", "native_bf16", "resolve_precision", "autocast_for", "epoch_permutation", "BatchPlan",
    "make_accelerator", "load_encoder", "load_objective_state", "set_threads",
    "LOG_NAME", "META_NAME", "stop_requested",
]



class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint on disk is left untouched."""

    def __init__(self, step: int, value: float, checkpoint_step: int | None, what: str = "loss"):
        self.step, self.value, self.checkpoint_step = step, value, checkpoint_step
        kept = f"last good checkpoint: step {checkpoint_step}" if checkpoint_step else "no checkpoint written yet"
        super().__init__(f"non-finite {what} {value} at step {step} ({kept})")


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
    same = math_config(ckpt["config"]) == math_config(cfg) and ckpt.get("objective_id") == objective_id
    return ckpt if same and int(ckpt["step"]) >= cfg.steps else None


def _resume_checkpoint(path: Path, cfg: TrainConfig, objective_id: dict) -> dict | None:
    if not path.is_file():
        warnings.warn(f"resume requested but {path} does not exist: starting from step 0", stacklevel=3)
        return None
    ckpt = load_checkpoint(path)
    if math_config(ckpt["config"]) != math_config(cfg):
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

    def step(self, s: int, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """Optimizer step ``s`` on this process's shard ``batch = (local_idx, images)``; raises
        before updating if anything is non-finite."""
        (local_idx, images), acc, cfg = batch, self.accelerator, self.cfg
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
        lr = scalars["lr"]
        self.window.add({k: v for k, v in scalars.items() if k != "lr"}, self.cfg.batch_size)
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
    not finite; the checkpoint on disk is then the last good one. Raises
    :class:`~clvsmim.train.run_lock.RunBusyError`, touching nothing, when another process is
    training into ``out_dir``.
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
    check_accelerator(accelerator, cfg)
    check_shapes(cfg, accelerator.num_processes)
    with run_lock(out_dir) if accelerator.is_main_process else nullcontext():  # one writer per folder
        session = _open_session(objective, cfg, accelerator, out_dir, resume, model_config)
        stop = cfg.steps if stop_after is None else min(cfg.steps, max(stop_after, session.start))
        fetch = _shard_fetcher(dataset, batch_fn or default_batch_fn, cfg, accelerator)

        bar = _progress_bar(cfg.steps, session.start, enabled=progress and accelerator.is_main_process)
        session.model.train()
        stop = run_steps(session, fetch, stop, cfg.checkpoint_every, bar, callback)
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
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", dynamic_ncols=True)
