"""The stacked model of :func:`clvsmim.train.stacked.train_stacked`: K objectives of one
architecture as one vmapped loss, and their optimizer state stacked and unstacked.

:func:`check_stackable` says whether K objectives can share one stack (same class, shapes,
branches and training config up to the seed); :class:`StackedObjectives` holds the stacked
parameters / buffers (``torch.func.stack_module_state``) and runs ``Objective.loss_of``
through ``functional_call`` + ``vmap`` over the model axis; the optimizer helpers build one
AdamW over the stacked tensors and move each model's state in and out of it, so a stacked run
writes and resumes the single trainer's checkpoints.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from clvsmim.config import TrainConfig
from clvsmim.objectives.base import Objective
from clvsmim.objectives.hybrid import Hybrid
from clvsmim.objectives.moco import MoCo, momentum_at
from clvsmim.train.optim import build_optimizer, build_scheduler, group_parameters
from clvsmim.train.runtime import math_config
from clvsmim.train.trainer import _objective_name


__all__ = ["StackedObjectives", "check_stackable", "per_model_optimizer", "stack_optimizer_state"]

_STEP_HOOKS = (Objective.after_optimizer_step, MoCo.after_optimizer_step, Hybrid.after_optimizer_step)


# --------------------------------------------------------------------------- what can be stacked

def _signature(objective: nn.Module) -> dict[str, tuple]:
    """Name -> (shape, dtype, requires_grad) of every parameter and buffer."""
    sig = {n: (tuple(p.shape), p.dtype, p.requires_grad) for n, p in objective.named_parameters()}
    sig.update({n: (tuple(b.shape), b.dtype, False) for n, b in objective.named_buffers()})
    return sig


def check_stackable(objectives: Sequence[Objective], cfgs: Sequence[TrainConfig]) -> None:
    """Raise ``ValueError`` naming the difference unless the K objectives and their configs can
    train as one stack: same class and settings, same parameters (names, shapes, dtypes,
    trainability), TrainConfigs equal up to ``seed``, a known after-step hook, and ``prepare`` /
    ``loss_of`` implemented."""
    if not objectives:
        raise ValueError("train_stacked needs at least one objective")
    if len(cfgs) != len(objectives):
        raise ValueError(f"got {len(cfgs)} TrainConfigs for {len(objectives)} objectives")
    first, sig0 = objectives[0], _signature(objectives[0])
    if type(first).prepare is Objective.prepare or type(first).loss_of is Objective.loss_of:
        raise ValueError(f"objective {_objective_name(first)!r} does not split its step into prepare / loss_of, "
                         "so it cannot be vmapped over stacked models")
    if type(first).after_optimizer_step not in _STEP_HOOKS:
        raise ValueError(f"objective {_objective_name(first)!r} has its own after_optimizer_step; the stacked "
                         "trainer knows only MoCo's momentum update")
    base_cfg = {k: v for k, v in math_config(cfgs[0]).items() if k != "seed"}
    for k, (obj, cfg) in enumerate(zip(objectives, cfgs)):
        if type(obj) is not type(first):
            raise ValueError(f"model {k} is a {type(obj).__name__}, model 0 a {type(first).__name__}")
        if getattr(obj, "cfg", None) != getattr(first, "cfg", None):
            raise ValueError(f"model {k}'s objective settings {getattr(obj, 'cfg', None)} differ from model 0's "
                             f"{getattr(first, 'cfg', None)}")
        for part in ("moco", "simmim"):  # the hybrid's branches and their settings
            a, b = getattr(obj, part, None), getattr(first, part, None)
            if (a is None) != (b is None) or (a is not None and a.cfg != b.cfg):
                raise ValueError(f"model {k}'s {part} branch differs from model 0's (hybrids stack only with "
                                 "the same branches: all 0 < lam < 1, or equal lam)")
        sig = _signature(obj)
        if sig != sig0:
            diff = sorted(set(sig) ^ set(sig0)) or [n for n in sig if sig[n] != sig0[n]]
            raise ValueError(f"model {k} has other parameters than model 0 (first differences: {diff[:4]})")
        other = {k2: v for k2, v in math_config(cfg).items() if k2 != "seed"}
        if other != base_cfg:
            diff = sorted(n for n in other if other[n] != base_cfg.get(n))
            raise ValueError(f"model {k}'s TrainConfig differs from model 0's in {diff} (only seed may differ)")


# --------------------------------------------------------------------------- the stacked model

class _LossOf(nn.Module):
    """``forward`` = the objective's :meth:`loss_of`, for ``functional_call``."""

    def __init__(self, objective: Objective):
        super().__init__()
        self.objective = objective

    def forward(self, inputs: tuple[torch.Tensor, ...], lam: torch.Tensor | None):
        if lam is None:
            return self.objective.loss_of(*inputs)
        return self.objective.loss_of(*inputs, lam=lam)


class StackedObjectives:
    """K objectives as stacked tensors ``params[name]`` / ``buffers[name]`` (``K×…``) and one
    template module whose :meth:`loss_of` runs on them via ``functional_call`` + ``vmap``."""

    def __init__(self, objectives: Sequence[Objective], device: torch.device, fused_attention: bool = False):
        self.k = len(objectives)
        self.device = device
        template = copy.deepcopy(objectives[0]).to(device)
        for module in template.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused_attention
        self.template = template
        self.call = _LossOf(template)
        params, buffers = stack_module_state([o.to(device) for o in objectives])
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        self.lam = (torch.tensor([float(o.lam) for o in objectives], device=device)
                    if isinstance(objectives[0], Hybrid) else None)
        self.template_params = dict(template.named_parameters())
        self._momentum = self._momentum_pairs()

    # ---- the loss of all K models
    def losses(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """``inputs``: :meth:`prepare` tensors as ``K×B×…``; returns each loss entry as a ``(K,)`` tensor."""
        named = {f"objective.{n}": t for n, t in self.params.items()}
        named_buffers = {f"objective.{n}": t for n, t in self.buffers.items()}

        def one(p, b, x, lam):
            return functional_call(self.call, (p, b), (x, lam))

        lam_dim = None if self.lam is None else 0
        return vmap(one, in_dims=(0, 0, 0, lam_dim), randomness="different")(named, named_buffers, inputs, self.lam)

    def trainable(self) -> list[tuple[str, torch.Tensor]]:
        return [(n, p) for n, p in self.params.items() if p.requires_grad]

    def param_groups(self, weight_decay: float, lr: float,
                     lr_scales: tuple[tuple[str, float], ...] = ()) -> list[dict[str, Any]]:
        """The AdamW groups of :func:`~clvsmim.train.optim.param_groups`, in its order, decided on
        the per-model name and shape (a stacked bias is 2-d but still gets no decay); every group
        names its learning rate."""
        groups = group_parameters(((name, self.template_params[name], p) for name, p in self.trainable()),
                                  weight_decay, lr, lr_scales)
        return [{**g, "lr": g.get("lr", lr)} for g in groups]

    # ---- per-model gradient clipping
    def clip_per_model(self, max_norm: float) -> torch.Tensor:
        """Clip each model's gradient to ``max_norm`` (0: measure only) as ``clip_grad_norm_``
        does for one model; returns the ``(K,)`` pre-clip norms. No host sync."""
        grads = [p.grad for _, p in self.trainable() if p.grad is not None]
        sq = torch.stack([g.detach().float().pow(2).flatten(1).sum(1) for g in grads]).sum(0)
        norms = sq.sqrt()
        if max_norm > 0:
            coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
        return norms

    # ---- MoCo's momentum update
    def _momentum_pairs(self) -> tuple[list[str], list[str], float] | None:
        moco = next((m for m in self.template.modules() if isinstance(m, MoCo)), None)
        if moco is None:
            return None
        name_of = {id(p): n for n, p in self.template.named_parameters()}
        momentum = [name_of[id(p)] for p in moco.momentum_parameters()]
        online = [name_of[id(p)] for p in moco.online_parameters()]
        return momentum, online, moco.cfg.momentum

    @torch.no_grad()
    def momentum_update(self, m: float | torch.Tensor) -> None:
        """``θ_m ← m·θ_m + (1 − m)·θ`` on the stacked tensors (``m`` a float or a device scalar)."""
        if self._momentum is None:
            return
        names_m, names_o, _ = self._momentum
        mom = [self.params[n] for n in names_m]
        online = [self.params[n].detach() for n in names_o]
        if isinstance(m, torch.Tensor):
            torch._foreach_mul_(mom, m)
            torch._foreach_add_(mom, torch._foreach_mul(online, 1.0 - m))
        else:
            torch._foreach_mul_(mom, m)
            torch._foreach_add_(mom, online, alpha=1.0 - m)

    def momentum_at(self, step: int, total: int) -> float | None:
        return None if self._momentum is None else momentum_at(step, total, self._momentum[2])

    # ---- per-model views
    def load_into(self, objective: Objective, k: int) -> Objective:
        """Copy model ``k``'s tensors into ``objective`` (a module of the same structure)."""
        keys = objective.state_dict().keys()  # not the non-persistent buffers (constants)
        state = {n: t[k].detach() for n, t in {**self.params, **self.buffers}.items() if n in keys}
        objective.load_state_dict(state)
        return objective


# --------------------------------------------------------------------------- per-model optimizer state

def _float_lr_state(state: Any) -> Any:
    """Scheduler state with tensor LRs (the capturable optimizer's) as floats."""
    if isinstance(state, torch.Tensor):
        return float(state)
    if isinstance(state, list):
        return [_float_lr_state(v) for v in state]
    if isinstance(state, dict):
        return {k: _float_lr_state(v) for k, v in state.items()}
    return state


def per_model_optimizer(objective: Objective, stack: StackedObjectives, optimizer, scheduler, k: int,
                         cfg: TrainConfig):
    """Model ``k``'s AdamW and scheduler exactly as the single trainer would hold them."""
    opt_k = build_optimizer(objective, cfg)
    sched_k = build_scheduler(opt_k, cfg)
    sched_k.load_state_dict(_float_lr_state(scheduler.state_dict()))
    for g_k, g in zip(opt_k.param_groups, optimizer.param_groups):
        g_k["lr"] = float(g["lr"])
    named = dict(objective.named_parameters())
    for name, p in stack.trainable():
        state = optimizer.state.get(p)
        if state:
            opt_k.state[named[name]] = {key: (v.detach().cpu().clone() if key == "step" else v[k].detach().clone())
                                        for key, v in state.items()}
    return opt_k, sched_k


def stack_optimizer_state(objectives: Sequence[Objective], ckpts: Sequence[dict], stack: StackedObjectives,
                           optimizer, scheduler, cfg: TrainConfig) -> None:
    """The inverse: load each model's AdamW state, stack it, and load it into ``optimizer``
    through its own ``load_state_dict`` (which puts ``step`` where fused / capturable want it)."""
    per_model = []
    for obj, ckpt in zip(objectives, ckpts):
        opt_k = build_optimizer(obj, cfg)
        opt_k.load_state_dict(ckpt["optimizer"])
        per_model.append((dict(obj.named_parameters()), opt_k))
    index = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    stacked_state = {}
    for name, p in stack.trainable():
        states = [opt_k.state.get(named[name]) for named, opt_k in per_model]
        if not all(states):
            continue
        entry = {}
        for key in states[0]:
            if key == "step":
                steps = {float(s[key]) for s in states}
                if len(steps) != 1:
                    raise ValueError(f"the models' AdamW step counts differ for {name}: {sorted(steps)}")
                entry[key] = states[0][key].detach().clone()
            else:
                entry[key] = torch.stack([s[key].detach() for s in states])
        stacked_state[index[id(p)]] = entry
    lrs = [float(g["lr"]) for g in per_model[0][1].param_groups]
    saved = optimizer.state_dict()
    optimizer.load_state_dict({"state": stacked_state, "param_groups": saved["param_groups"]})
    scheduler.load_state_dict(ckpts[0]["scheduler"])
    for g, lr in zip(optimizer.param_groups, lrs):
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr
