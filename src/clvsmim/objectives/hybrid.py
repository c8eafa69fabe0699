"""Hybrid CL + MIM: ``L = λ·L_CL + (1 − λ)·L_MIM`` on ONE shared encoder.

What each branch sees, for a batch of raw images and their per-sample seeds:

* CL branch (MoCo v3, :class:`~clvsmim.objectives.moco.MoCo`): the two UNmasked MoCo v3
  views of the images (crop scale ``moco.crop_min_scale``, jitter, grayscale, blur,
  solarize), through the shared encoder, projector and predictor; keys from the momentum
  copy of the shared encoder.
* MIM branch (SimMIM, :class:`~clvsmim.objectives.simmim.SimMIM`): its OWN SimMIM crop
  (+ flip) of the same images (scale ``simmim.crop_min_scale``, no colour augmentation),
  block-masked, through the same shared encoder and the linear pixel head; ℓ1 on masked
  pixels.

The branches draw their randomness from separate streams of the same seeds, so with
``λ = 1`` the loss equals :class:`MoCo`'s and with ``λ = 0`` :class:`SimMIM`'s. A branch
whose weight is 0 is neither built nor computed (its logged loss is NaN). The patch
projection is frozen (MoCo v3's ``stop_grad_patch_embed``) whenever the CL branch exists.
The momentum update is delegated to the MoCo part.
"""
from __future__ import annotations

import torch
from torch import nn

from clvsmim.config import MocoConfig, SimMIMConfig
from clvsmim.objectives.base import Objective
from clvsmim.objectives.moco import MoCo
from clvsmim.objectives.simmim import SimMIM


def _borrow_encoder(part: Objective, encoder: nn.Module) -> None:
    """Let ``part`` use ``encoder`` without registering it as its submodule, so the shared
    encoder's parameters appear once in ``parameters()`` / ``state_dict()`` (as ``encoder.*``)."""
    del part._modules["encoder"]
    object.__setattr__(part, "encoder", encoder)


class Hybrid(Objective):
    """MoCo v3 + SimMIM with weight ``lam`` on the contrastive loss (0 = SimMIM, 1 = MoCo)."""

    name = "hybrid"

    def __init__(self, encoder: nn.Module, moco_cfg: MocoConfig = MocoConfig(),
                 simmim_cfg: SimMIMConfig = SimMIMConfig(), lam: float = 0.5):
        super().__init__(encoder)
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"hybrid weight lam must be in [0, 1] (0 = SimMIM, 1 = MoCo), got {lam}")
        self.lam = lam
        self.moco: MoCo | None = None
        self.simmim: SimMIM | None = None
        if lam > 0:
            self.moco = MoCo(encoder, moco_cfg)
            _borrow_encoder(self.moco, encoder)
        if lam < 1:
            self.simmim = SimMIM(encoder, simmim_cfg)
            _borrow_encoder(self.simmim, encoder)

    def prepare(self, images: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The MoCo views (if λ > 0) followed by the SimMIM view and mask (if λ < 1)."""
        inputs: tuple[torch.Tensor, ...] = ()
        if self.moco is not None:
            inputs += self.moco.prepare(images, seeds)
        if self.simmim is not None:
            inputs += self.simmim.prepare(images, seeds)
        return inputs

    def loss_of(self, *inputs: torch.Tensor, lam: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
        """``lam`` overrides ``self.lam`` (a tensor: one λ per stacked model under vmap)."""
        lam = self.lam if lam is None else lam
        nan = torch.full((), float("nan"), device=inputs[0].device)  # a fill kernel: capturable
        loss = None
        loss_cl = loss_mim = nan
        if self.moco is not None:
            l_cl = self.moco.loss_of(*inputs[:2])["loss"]
            inputs = inputs[2:]
            loss = lam * l_cl
            loss_cl = l_cl.detach()
        if self.simmim is not None:
            l_mim = self.simmim.loss_of(*inputs)["loss"]
            term = (1.0 - lam) * l_mim
            loss = term if loss is None else loss + term
            loss_mim = l_mim.detach()
        return {"loss": loss, "loss_cl": loss_cl, "loss_mim": loss_mim}

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        if self.moco is not None:
            self.moco.after_optimizer_step(step, total_steps)

    def extra_state_modules(self) -> dict[str, nn.Module]:
        return self.moco.extra_state_modules() if self.moco is not None else {}
