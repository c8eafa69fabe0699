"""Train K small models of one architecture and objective in ONE process as ONE batched model.

The miniature's ViTs (width 32–64, depth 6, 32 px) are launch-bound on a GPU: one model keeps an
H100 at a few percent of its peak. :func:`train_stacked` trains K of them at once (the seeds of
one zoo entry, or hybrids with different λ) and gives the same result as K separate
:func:`~clvsmim.train.trainer.train` runs (to float rounding), including their checkpoints:

* **Parameters** of the K objectives are stacked along a new leading model axis
  (``torch.func.stack_module_state``); the objective's loss runs once through
  ``torch.func.functional_call`` + ``torch.vmap`` over that axis, so every kernel processes
  all K models.
* **Data**: model ``k`` gets the batch of its own seed (:class:`~clvsmim.train.batches.BatchPlan`)
  and the per-sample seeds ``sample_seed(seed_k, s, index)``. The parameter-free part of the
  step (augmentations and masks, :meth:`Objective.prepare`) runs once on the concatenated
  ``K·B`` samples — every sample's view is a function of its image and seed only — and is
  split into ``K×B×…`` for the vmapped :meth:`Objective.loss_of`. (The augmentations pick
  sample subsets with ``nonzero``, which neither vmap nor a CUDA graph can trace; this split
  keeps them out of both.)
* **One optimizer step** over the stacked tensors: AdamW is element-wise, so AdamW on a
  ``K×…`` tensor is K AdamWs; the weight-decay groups are decided on the per-model name and
  shape (:func:`~clvsmim.train.optim.uses_weight_decay`). The gradient norm is measured and
  clipped **per model** (``torch.nn.utils.clip_grad_norm_``'s rule on each model's slice).
  The LR schedule is the single trainer's (all K share the TrainConfig up to the seed).
* **MoCo's momentum update** (``θ_m ← m·θ_m + (1 − m)·θ``) runs on the stacked tensors, which
  is the per-model update since ``m`` depends on the step only.
* **Checkpoints** are written per model, in :mod:`clvsmim.train.checkpoint`'s format and
  atomically (objective, encoder, AdamW and scheduler state as the single trainer saves them),
  so each model of a stacked run is an ordinary zoo entry: it loads with ``load_encoder``,
  resumes with ``train`` or ``train_stacked``, and a finished one is skipped.
* **CUDA graph** (``cuda_graph=True``, CUDA only; ignored with a warning elsewhere): after
  ``GRAPH_WARMUP_STEPS`` eager steps on a side stream the network part of the step — vmapped
  forward, backward, per-model clipping, the AdamW update (``capturable=True``, LR as a
  device tensor the scheduler fills) and the momentum update (``m`` a device tensor) — is
  captured once and replayed every step from static input buffers; only the augmentation runs
  eagerly. The finiteness check then reads the losses after the replay (one sync per step, as
  the eager path): a non-finite step raises before any checkpoint is written, so the one on
  disk is still the last good one, as in the single trainer.

Objectives: everything with ``prepare`` / ``loss_of`` (MoCo v3, SimMIM, MAE, the hybrid; a
hybrid stack may mix λ only among models with the same branches, i.e. all ``0 < λ < 1``).
BatchNorm (MoCo's heads) runs in train mode with stacked running statistics. timm's fused
attention is switched off inside the stack by default (``fused_attention``): vmap has no
batching rule for the CPU kernel (nor, before pytorch#176265, for the backward of the CUDA ones)
and would loop over the models; the explicit softmax attention batches as one bmm.
Single process only (no DDP): a stack is the way to fill one device.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from clvsmim.config import ModelConfig, TrainConfig
from clvsmim.objectives.base import Objective
from clvsmim.precision import resolve_precision
from clvsmim.rng import sample_seed
from clvsmim.train.batches import BatchPlan, default_batch_fn
from clvsmim.train.loop import run_steps
from clvsmim.train.checkpoint import CHECKPOINT_NAME, capture_rng_state, restore_rng_state, save_atomic
from clvsmim.train.optim import build_scheduler
from clvsmim.train.run_lock import run_lock
from clvsmim.train.runlog import LOG_NAME, CsvLog, MetricWindow
from clvsmim.train.runtime import check_shapes
from clvsmim.train.stacked_model import (StackedObjectives, per_model_optimizer, stack_optimizer_state,
                                         check_stackable)
from clvsmim.train.trainer import (NonFiniteLossError, _checkpoint_dict, _completed, _objective_id,
                                   _objective_name, _progress_bar, _resume_checkpoint, _summary,
                                   _summary_of_finished, _write_meta)

__all__ = ["train_stacked", "StackedObjectives", "check_stackable", "GRAPH_WARMUP_STEPS"]

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before the capture (PyTorch's recipe)


# --------------------------------------------------------------------------- the session

@dataclasses.dataclass
class _Model:
    """One model of the stack: what it writes and where."""

    index: int  # position in the caller's list
    objective: Objective
    cfg: TrainConfig
    out_dir: Path
    model_config: ModelConfig | None
    extra_meta: dict | None
    log: CsvLog | None = None
    window: MetricWindow = dataclasses.field(default_factory=MetricWindow)
    wall_before: float = 0.0
    final_loss: float | None = None


class _StackedSession:
    def __init__(self, models: list[_Model], device: torch.device, resume: bool, cuda_graph: bool,
                 fused_attention: bool):
        self.models, self.device = models, device
        self.cfg = models[0].cfg
        self.k = len(models)
        self.precision = resolve_precision(self.cfg.precision, device)
        ckpts = self._resume_checkpoints() if resume else None
        if ckpts is not None:
            for m, ckpt in zip(models, ckpts):
                m.objective.load_state_dict(ckpt["model"])
        self.stack = StackedObjectives([m.objective for m in models], device, fused_attention)
        self.cuda_graph = cuda_graph
        groups = self.stack.param_groups(self.cfg.weight_decay, self.cfg.lr, self.cfg.lr_scales)
        if not any(g["params"] for g in groups):
            raise ValueError("the objective has no trainable parameters (all requires_grad=False)")
        if cuda_graph:  # the LR changes every step: a device tensor the scheduler fills, read by the replay
            for g in groups:
                g["lr"] = torch.tensor(g["lr"], device=device)
        # on CUDA one fused kernel for the whole update (capturable keeps its step counts on the device)
        extra = {"fused": True, "capturable": cuda_graph} if device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                           weight_decay=self.cfg.weight_decay, **extra)
        self.scheduler = build_scheduler(self.optimizer, self.cfg)
        self.start = 0
        self.last_ckpt: int | None = None
        self.images = 0
        self.started_at = time.perf_counter()
        if ckpts is not None:
            stack_optimizer_state([m.objective for m in models], ckpts, self.stack, self.optimizer,
                                   self.scheduler, self.cfg)
            restore_rng_state(ckpts[0]["rng"])
            for m, ckpt in zip(models, ckpts):
                m.window.load_state_dict(ckpt["log_window"])
                m.wall_before = float(ckpt.get("wall_time_s", 0.0))
            self.start = self.last_ckpt = int(ckpts[0]["step"])
        for m in models:
            m.out_dir.mkdir(parents=True, exist_ok=True)
            m.log = CsvLog(m.out_dir / LOG_NAME, keep_until=self.start if resume else None)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, Any] = {}

    def _resume_checkpoints(self) -> list[dict] | None:
        ckpts = [_resume_checkpoint(m.out_dir / CHECKPOINT_NAME, m.cfg, _objective_id(m.objective))
                 for m in self.models]
        if all(c is None for c in ckpts):
            return None
        steps = {str(m.out_dir): (None if c is None else int(c["step"])) for m, c in zip(self.models, ckpts)}
        if len(set(steps.values())) != 1:
            raise ValueError(f"cannot resume the stack: its models stopped at different steps {steps}; "
                             "resume them separately (train) or in stacks of equal step")
        return ckpts

    # ---- one step
    def _inputs(self, s: int, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """The K models' prepared inputs ``K×B×…`` (one batched augmentation of all ``K·B`` samples)."""
        images = torch.cat([images for _, images in batches]).to(self.device, non_blocking=True)
        seeds = torch.cat([sample_seed(m.cfg.seed, s, idx) for m, (idx, _) in zip(self.models, batches)])
        with torch.no_grad():
            prepared = self.stack.template.prepare(images, seeds.to(self.device))
        b = batches[0][1].shape[0]
        return tuple(t.unflatten(0, (self.k, b)) for t in prepared)

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        # cached casts would be freed between capture and replay (PyTorch's CUDA-graph notes)
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              cache_enabled=not self.cuda_graph)

    def _forward_backward(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Gradients of all K losses (micro-batches along the sample axis); ``(K,)`` scalars."""
        accum = self.cfg.grad_accum
        chunks = list(zip(*(t.chunk(accum, dim=1) for t in inputs)))
        totals: dict[str, torch.Tensor] = {}
        for chunk in chunks:
            with self._autocast():
                out = self.stack.losses(tuple(chunk))
            if "loss" not in out:
                raise KeyError(f"objective returned {sorted(out)} without a 'loss' entry")
            (out["loss"].sum() / len(chunks)).backward()
            for key, v in out.items():
                v = v.detach().float().reshape(self.k)
                totals[key] = v / len(chunks) if key not in totals else totals[key] + v / len(chunks)
        return totals

    def _update(self, inputs, m_value) -> dict[str, torch.Tensor]:
        """Forward, backward, per-model clip, AdamW, momentum: all on the device, no host sync."""
        scalars = self._forward_backward(inputs)
        scalars["grad_norm"] = self.stack.clip_per_model(self.cfg.grad_clip)
        self.optimizer.step()
        if m_value is not None:
            self.stack.momentum_update(m_value)
        return scalars

    def _check(self, s: int, table: dict[str, list[float]]) -> None:
        for what in ("loss", "grad_norm"):
            bad = [k for k, v in enumerate(table[what]) if not math.isfinite(v)]
            if bad:
                k = bad[0]
                raise NonFiniteLossError(s + 1, table[what][k], self.last_ckpt,
                                         what=f"{'gradient norm' if what == 'grad_norm' else 'loss'} of model "
                                              f"{self.models[k].index} ({self.models[k].out_dir})")

    def _host(self, scalars: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        keys = sorted(scalars)
        values = torch.stack([scalars[k] for k in keys]).tolist()  # one sync
        return dict(zip(keys, values))

    def step(self, s: int, batches) -> list[dict[str, float]]:
        """Optimizer step ``s`` of all K models; per-model scalar dicts (with ``lr``)."""
        inputs = self._inputs(s, batches)
        m = self.stack.momentum_at(s, self.cfg.steps)
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.cuda_graph:
            table = self._host(self._graph_step(s, inputs, m))
            self._check(s, table)  # after the replay: the update is in memory, not on disk
        else:
            scalars = self._forward_backward(inputs)
            table = self._host(scalars)
            self._check(s, {**table, "grad_norm": [0.0] * self.k})
            norms = self.stack.clip_per_model(self.cfg.grad_clip)
            table["grad_norm"] = norms.tolist()
            self._check(s, table)
            self.optimizer.step()
            if m is not None:
                self.stack.momentum_update(m)
        if not self.cuda_graph:  # a replay overwrites the graph's gradients; the warm-up zeroes its own
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.images += self.cfg.batch_size * self.k
        return [{**{key: v[k] for key, v in table.items()}, "lr": lr} for k in range(self.k)]

    # ---- CUDA graph
    def _graph_step(self, s: int, inputs, m: float | None) -> dict[str, torch.Tensor]:
        """Eager warm-up steps on a side stream, then one capture, then replays."""
        if "m" not in self.static:
            self.static["m"] = torch.tensor(1.0 if m is None else m, device=self.device)
        if m is not None:
            self.static["m"].fill_(m)
        m_arg = None if m is None else self.static["m"]
        if self.graph is None and self.static.get("warm", 0) < GRAPH_WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                out = self._update(inputs, m_arg)
            torch.cuda.current_stream().wait_stream(side)
            self.static["warm"] = self.static.get("warm", 0) + 1
            return out
        if self.graph is None:
            self.static["inputs"] = tuple(t.clone() for t in inputs)
            self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the graph's pool
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static["out"] = self._update(self.static["inputs"], m_arg)
        for static, fresh in zip(self.static["inputs"], inputs):
            static.copy_(fresh)
        self.graph.replay()
        return self.static["out"]

    # ---- bookkeeping
    def record(self, done: int, per_model: list[dict[str, float]]) -> dict | None:
        """Add a step to every model's log window; at a log step write their rows and return the
        last one (``None`` between log steps)."""
        shown = None
        for m, scalars in zip(self.models, per_model):
            scalars = dict(scalars)
            lr = scalars.pop("lr")
            m.window.add(scalars, self.cfg.batch_size)
            if done % self.cfg.log_every and done != self.cfg.steps:
                continue
            row = {**m.window.pop(), "step": done, "lr": lr}
            m.final_loss = row["loss"]
            m.log.append(row)
            shown = row
        return shown

    def wall_time(self, m: _Model) -> float:
        return m.wall_before + time.perf_counter() - self.started_at

    def save(self, done: int) -> None:
        """Every model's checkpoint, in the single trainer's format, each written atomically."""
        rng = capture_rng_state()
        for k, m in enumerate(self.models):
            obj = self.stack.load_into(m.objective, k)
            opt_k, sched_k = per_model_optimizer(obj, self.stack, self.optimizer, self.scheduler, k, m.cfg)
            ckpt = _checkpoint_dict(obj, opt_k, sched_k, done, m.cfg, m.model_config, m.window, self.wall_time(m))
            ckpt["rng"] = rng
            save_atomic(ckpt, m.out_dir / CHECKPOINT_NAME)
        self.last_ckpt = done

    def finish(self, stop: int) -> list[dict]:
        elapsed = time.perf_counter() - self.started_at
        summaries = []
        for k, m in enumerate(self.models):
            self.stack.load_into(m.objective, k)  # the caller's objectives hold the trained weights
            ips = self.images / self.k / elapsed if self.images and elapsed > 0 else None
            summary = _summary(m.out_dir, _objective_name(m.objective), stop, m.cfg.steps, m.final_loss, ips,
                               self.wall_time(m))
            _write_meta(m.out_dir, {**summary, "precision_used": self.precision, "num_processes": 1,
                                    "stacked_models": self.k, "cuda_graph": self.cuda_graph},
                        m.cfg, m.model_config, m.extra_meta)
            summaries.append(summary)
        return summaries


# --------------------------------------------------------------------------- train_stacked

def train_stacked(objectives: Sequence[Objective], dataset, cfgs: Sequence[TrainConfig],
                  out_dirs: Sequence[str | Path], resume: bool = False, device: str | torch.device | None = None,
                  progress: bool = True, extra_meta: Sequence[dict | None] | None = None, *,
                  model_configs: Sequence[ModelConfig | None] | None = None, batch_fn: Callable | None = None,
                  stop_after: int | None = None, cuda_graph: bool = False, fused_attention: bool = False,
                  callback: Callable[[int, list[dict]], None] | None = None) -> list[dict]:
    """Train K objectives as one stacked model; returns :func:`~clvsmim.train.trainer.train`'s
    summary for each, in order.

    objectives / cfgs / out_dirs: one per model; the configs may differ in ``seed`` only, the
    objectives only in their weights (and a hybrid's λ): :func:`check_stackable`.
    device:       default CUDA when available, else CPU.
    cuda_graph:   capture the step in a CUDA graph (CUDA only; elsewhere a warning and eager steps).
    fused_attention: timm's fused attention (``F.scaled_dot_product_attention``) inside the stack;
                  off by default: under vmap the CPU kernel, and in this torch possibly the backward
                  of the CUDA ones, have no batching rule and loop over the models.
    resume, extra_meta, model_configs, batch_fn, stop_after: as for ``train``, per model. A
    model whose finished checkpoint is already in its ``out_dir`` is skipped (its weights
    loaded); the others must all be at the same step to resume together.
    callback:     ``callback(step_done, [scalars per trained model])`` after every step.

    Raises :class:`~clvsmim.train.trainer.NonFiniteLossError` naming the model when a loss or
    gradient norm is not finite; the checkpoints on disk are then the last good ones;
    :class:`~clvsmim.train.run_lock.RunBusyError` when another process trains into an ``out_dir``.
    """
    objectives, cfgs = list(objectives), list(cfgs)
    out_dirs = [Path(d) for d in out_dirs]
    if len(out_dirs) != len(objectives):
        raise ValueError(f"got {len(out_dirs)} out_dirs for {len(objectives)} objectives")
    if len(set(out_dirs)) != len(out_dirs):
        raise ValueError(f"every stacked model needs its own out_dir, got {[str(d) for d in out_dirs]}")
    check_stackable(objectives, cfgs)
    extra_meta = list(extra_meta) if extra_meta is not None else [None] * len(objectives)
    model_configs = (list(model_configs) if model_configs is not None
                     else [getattr(o, "model_config", None) for o in objectives])
    if any(c is None for c in model_configs):
        warnings.warn("no model_config given (nor objective.model_config): load_encoder will not be able "
                      "to rebuild the backbone from these checkpoints", stacklevel=2)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                         else "cpu")
    if cuda_graph and device.type != "cuda":
        warnings.warn(f"cuda_graph needs a CUDA device, training on {device} without it", stacklevel=2)
        cuda_graph = False
    check_shapes(cfgs[0], 1)

    summaries: list[dict | None] = [None] * len(objectives)
    todo: list[_Model] = []
    for i, (obj, cfg, out_dir) in enumerate(zip(objectives, cfgs, out_dirs)):
        finished = _completed(out_dir / CHECKPOINT_NAME, cfg, _objective_id(obj))
        if finished is not None:
            obj.load_state_dict(finished["model"])
            summaries[i] = _summary_of_finished(out_dir, finished, _objective_name(obj), cfg)
        else:
            todo.append(_Model(i, obj, cfg, out_dir, model_configs[i], extra_meta[i]))
    if not todo:
        return summaries

    with run_lock(*(m.out_dir for m in todo)):  # one writer per run folder
        session = _StackedSession(todo, device, resume, cuda_graph, fused_attention)
        cfg = session.cfg
        stop = cfg.steps if stop_after is None else min(cfg.steps, max(stop_after, session.start))
        plans = [BatchPlan(len(dataset), cfg.batch_size, m.cfg.seed) for m in todo]
        fetch_one = batch_fn or default_batch_fn

        def fetch(s: int):
            out = []
            for plan in plans:
                idx = plan.global_indices(s)
                images, _labels = fetch_one(dataset, idx)
                out.append((idx, images))
            return out

        bar = _progress_bar(cfg.steps, session.start, enabled=progress)
        bar.set_description(f"train ×{len(todo)}")
        session.stack.template.train()
        stop = run_steps(session, fetch, stop, cfg.checkpoint_every, bar, callback)
        for m, summary in zip(todo, session.finish(stop)):
            summaries[m.index] = summary
        return summaries
