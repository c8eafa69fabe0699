"""MoCo v3 (Chen, Xie & He, 2021): two views, projector + predictor, momentum encoder, InfoNCE.

* Both views go through the online encoder in one call (the ViT has no batch-coupled
  layers, so this equals two calls); the projector and predictor (BatchNorm MLPs) run on
  each view separately, as upstream.
* Features are the encoder's pre-logits output (``forward_head(pre_logits=True)``: the
  CLS token after the final norm for a ``global_pool="token"`` ViT).
* Loss: ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr = 2τ · CE(q·kᵀ / τ, positives)`` on
  ℓ2-normalised vectors; under ``torch.distributed`` the keys are all-gathered across
  ranks (no gradient; every rank must have the same batch size) and the positive of
  local sample ``i`` is ``rank·B + i``.
* The momentum encoder + projector are a deep copy without gradients, updated ONLY in
  :meth:`MoCo.after_optimizer_step` with ``m = momentum_at(step, total, m0)``.
* ``stop_grad_patch_embed`` freezes the random patch projection (MoCo v3's stability trick).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from clvsmim.data.augment import moco_views
from clvsmim.config import MocoConfig
from clvsmim.models import geometry
from clvsmim.objectives.base import Objective
from clvsmim.objectives.heads import mlp


def momentum_at(step: int, total: int, m0: float) -> float:
    """Cosine momentum schedule ``m = 1 − (1 − m0)·(cos(π·step/total) + 1)/2``: m(0) = m0, m(total) = 1."""
    if total <= 0:
        return float(m0)
    frac = min(max(step / total, 0.0), 1.0)
    return 1.0 - (1.0 - m0) * (math.cos(math.pi * frac) + 1.0) / 2.0


def pre_logits(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Image-level feature of a timm ViT: pooled (CLS) token after the final norm."""
    return encoder.forward_head(encoder.forward_features(x), pre_logits=True)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.no_grad()
def _gather_keys(k: torch.Tensor) -> torch.Tensor:
    rank, world = _distributed()
    if world == 1:
        return k
    parts = [torch.empty_like(k) for _ in range(world)]
    torch.distributed.all_gather(parts, k.contiguous())
    return torch.cat(parts, dim=0)


def infonce(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo v3's contrastive loss ``2τ · CE(q·kᵀ/τ)`` with keys gathered across ranks."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    keys = _gather_keys(k)
    rank, _ = _distributed()
    logits = q @ keys.t() / tau
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels) * (2.0 * tau)


class MoCo(Objective):
    """MoCo v3 on a timm ViT ``encoder`` with settings from :class:`MocoConfig`."""

    name = "moco"

    def __init__(self, encoder: nn.Module, cfg: MocoConfig = MocoConfig()):
        super().__init__(encoder)
        self.cfg = cfg
        geo = geometry(encoder)
        self.img_size = geo.grid[0] * geo.patch_size
        if cfg.stop_grad_patch_embed:
            encoder.patch_embed.proj.requires_grad_(False)
        dim = int(getattr(encoder, "num_features", geo.embed_dim))
        self.projector = mlp(dim, cfg.proj_hidden, cfg.proj_out, num_layers=3, last_bn=True)
        self.predictor = mlp(cfg.proj_out, cfg.pred_hidden, cfg.proj_out, num_layers=2, last_bn=False)
        self.momentum_encoder = copy.deepcopy(encoder)
        self.momentum_projector = copy.deepcopy(self.projector)
        for p in self.momentum_parameters():
            p.requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters()) + list(self.projector.parameters())

    def momentum_parameters(self) -> list[nn.Parameter]:
        return list(self.momentum_encoder.parameters()) + list(self.momentum_projector.parameters())

    def prepare(self, images: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two MoCo v3 views, ``B×3×H×W`` each."""
        return moco_views(images, seeds, self.img_size, self.cfg.crop_min_scale, self.cfg.blur_sigma)

    def loss_of(self, v1: torch.Tensor, v2: torch.Tensor) -> dict[str, torch.Tensor]:
        b = v1.shape[0]
        both = torch.cat([v1, v2], dim=0)
        feats = pre_logits(self.encoder, both)
        q1 = self.predictor(self.projector(feats[:b]))
        q2 = self.predictor(self.projector(feats[b:]))
        with torch.no_grad():
            kf = pre_logits(self.momentum_encoder, both)
            k1 = self.momentum_projector(kf[:b])
            k2 = self.momentum_projector(kf[b:])
        loss = infonce(q1, k2, self.cfg.tau) + infonce(q2, k1, self.cfg.tau)
        return {"loss": loss, "loss_cl": loss.detach()}

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the momentum encoder + projector: ``θ_m ← m·θ_m + (1 − m)·θ``."""
        m = momentum_at(step, total_steps, self.cfg.momentum)
        momentum = list(self.momentum_parameters())
        torch._foreach_mul_(momentum, m)  # two multi-tensor kernels instead of two per parameter
        torch._foreach_add_(momentum, [p.detach() for p in self.online_parameters()], alpha=1.0 - m)

    def extra_state_modules(self) -> dict[str, nn.Module]:
        return {"momentum_encoder": self.momentum_encoder, "momentum_projector": self.momentum_projector}
