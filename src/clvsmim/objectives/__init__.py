"""Self-supervised objectives: MoCo v3 (CL), SimMIM and MAE (MIM), and the CL + MIM hybrid.

Every objective follows :class:`~clvsmim.objectives.base.Objective`: it owns the timm ViT
``encoder`` plus its heads, augments / masks raw uint8 images on the device from per-sample
seeds, and returns ``{"loss": ..., <detached scalars>}``.
"""
from __future__ import annotations

from clvsmim.config import ModelConfig, Profile
from clvsmim.families import objective_model_config
from clvsmim.models import build_vit
from clvsmim.objectives.base import Objective
from clvsmim.objectives.hybrid import Hybrid
from clvsmim.objectives.mae import MAE, MAEDecoder
from clvsmim.objectives.moco import MoCo, momentum_at
from clvsmim.objectives.simmim import SimMIM

OBJECTIVES = ("moco", "simmim", "mae", "hybrid")

__all__ = ["OBJECTIVES", "Objective", "MoCo", "SimMIM", "MAE", "MAEDecoder", "Hybrid",
           "momentum_at", "build_objective"]


def build_objective(name: str, profile: Profile, model_cfg: ModelConfig | None = None,
                    lam: float | None = None) -> Objective:
    """A fresh objective ``name`` with a new encoder ``build_vit(model_cfg or profile.model)``,
    built as ``profile.families`` says for this objective (:mod:`clvsmim.families`).

    ``lam`` (weight of the contrastive loss, 0..1) is required for ``"hybrid"`` and must
    be left out for the other objectives.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
    if name == "hybrid" and lam is None:
        raise ValueError("objective 'hybrid' needs lam, the weight of the CL loss in [0, 1] "
                         "(0 = SimMIM only, 1 = MoCo only)")
    if name != "hybrid" and lam is not None:
        raise ValueError(f"lam={lam} only applies to the 'hybrid' objective, not {name!r}")

    encoder = build_vit(objective_model_config(profile, name, model_cfg))
    if name == "moco":
        return MoCo(encoder, profile.moco)
    if name == "simmim":
        return SimMIM(encoder, profile.simmim)
    if name == "mae":
        return MAE(encoder, profile.mae)
    return Hybrid(encoder, profile.moco, profile.simmim, lam=lam)
