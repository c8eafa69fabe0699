"""The interface every self-supervised objective implements (the trainer knows only this).

An objective is an ``nn.Module`` that owns its ``encoder`` (a timm ViT, the network the
book analyses) plus whatever heads it needs, and turns a batch of raw images into a loss.
It performs its own augmentation / masking on the device from per-sample seeds
(:mod:`clvsmim.rng`), so results are independent of batch split and resumable.
"""
from __future__ import annotations

import torch
from torch import nn


class Objective(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`forward`."""

    name: str = "objective"

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: ``B×3×H×W`` uint8 (raw, un-normalised); seeds: ``(B,)`` int64 per-sample seeds.

        Returns a dict with at least ``loss`` (scalar tensor with grad); other entries are
        detached scalars for the log (e.g. ``loss_cl``, ``loss_mim``).
        """
        return self.loss_of(*self.prepare(images, seeds))

    def prepare(self, images: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parameter-free part of a step: the views / masks of these images, every tensor
        with the samples along dim 0 and each sample's entries a function of its image and seed
        only (so K models' batches can be prepared in one call and split; ``train.stacked``)."""
        raise NotImplementedError

    def loss_of(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss dict of :meth:`forward` from :meth:`prepare`'s tensors (no data-dependent
        shapes, so it runs under ``torch.vmap`` over stacked models)."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called by the trainer after every optimizer step (e.g. MoCo's momentum update)."""

    def extra_state_modules(self) -> dict[str, nn.Module]:
        """Modules outside the optimizer whose state must be checkpointed (already in
        ``state_dict`` when registered as submodules; kept for clarity)."""
        return {}
