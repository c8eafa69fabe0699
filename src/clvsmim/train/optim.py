"""Optimisation: AdamW with the parameter groups of the upstream recipes (no weight decay on
biases, norms, embeddings and tokens) and a warm-up + cosine schedule."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import torch
from torch import nn

from clvsmim.config import TrainConfig


# --------------------------------------------------------------------------- optimisation

# Parameter-name fragments that never get weight decay (besides biases and every 1-d tensor).
NO_DECAY_TOKENS = ("pos_embed", "cls_token", "mask_token", "dist_token", "reg_token", "norm",
                    "relative_position_bias_table")

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
    return not any(token in name for token in NO_DECAY_TOKENS)


def lr_scale_of(name: str, lr_scales: tuple[tuple[str, float], ...]) -> float:
    """The learning-rate multiplier of parameter ``name``: the scale of the one fragment of
    ``lr_scales`` it contains, 1.0 if none; a name that two fragments match is an error."""
    hits = [(fragment, scale) for fragment, scale in lr_scales if fragment in name]
    if len(hits) > 1:
        raise ValueError(f"train.lr_scales: parameter {name!r} matches several fragments {[f for f, _ in hits]}; "
                         "make the fragments specific enough that each parameter matches one")
    return hits[0][1] if hits else 1.0


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                 lr_scales: tuple[tuple[str, float], ...] = ()) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters (``requires_grad``) of ``model``:
    :func:`group_parameters` of its named parameters."""
    return group_parameters(((name, p, p) for name, p in model.named_parameters() if p.requires_grad),
                            weight_decay, lr, lr_scales)


def group_parameters(entries: Iterable[tuple[str, torch.Tensor, torch.Tensor]], weight_decay: float,
                     lr: float | None = None, lr_scales: tuple[tuple[str, float], ...] = ()) -> list[dict[str, Any]]:
    """AdamW groups: first the two groups decay / no decay at the base learning rate, then one
    group per (decay, scale) for the parameters that ``lr_scales`` gives ``lr · scale``.

    ``entries``: ``(name, parameter as one model holds it, tensor to optimise)``; the first decides
    the group (:func:`uses_weight_decay`, :func:`lr_scale_of`), the second goes in it (the same
    tensor for one model; the stacked ``(K, ...)`` tensor in the stacked trainer)."""
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {(True, 1.0): [], (False, 1.0): []}
    for name, param, tensor in entries:
        key = (uses_weight_decay(name, param), lr_scale_of(name, lr_scales))
        groups.setdefault(key, []).append(tensor)
    out = [{"params": groups[(True, 1.0)], "weight_decay": weight_decay},
           {"params": groups[(False, 1.0)], "weight_decay": 0.0}]
    scaled = sorted(key for key in groups if key[1] != 1.0)
    if scaled and lr is None:
        raise ValueError("param_groups: lr_scales needs the base learning rate lr")
    out += [{"params": groups[key], "weight_decay": weight_decay if key[0] else 0.0, "lr": lr * key[1]}
            for key in scaled]
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters with the groups of :func:`param_groups` (weight-decay
    split, ``cfg.lr_scales``); the scheduler scales every group's learning rate alike."""
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.lr_scales)
    if not any(g["params"] for g in groups):
        raise ValueError("the objective has no trainable parameters (all requires_grad=False)")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :class:`CosineSchedule` as a resumable ``LambdaLR``."""
    schedule = CosineSchedule(cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
