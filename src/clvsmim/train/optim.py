"""Optimisation: AdamW with the parameter groups of the upstream recipes (no weight decay on
biases, norms, embeddings and tokens) and a warm-up + cosine schedule."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

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
