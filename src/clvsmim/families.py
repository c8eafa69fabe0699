"""How each objective's encoder is built: the miniature's *families*.

``families`` is a profile setting (``Profile.families``):

``v2`` (the default when a profile names none; the ``mini2`` profile, the embedded default until v3)
    every objective on the same timm ``VisionTransformer`` with a fixed 2-D sin-cos
    position embedding and PyTorch's default patch-projection init; MoCo's blur sigma is
    upstream's 0.1–2.0 px rescaled from 224 px to the view size.
``faithful`` (each family built the way its original is; ``mini3`` and the shipped ``mini``)
    * SimMIM on the BEiT-style encoder of the official SimMIM ViT (the net
      :data:`clvsmim.weights.registry` loads for ``simmim_vit_b``): no absolute position
      embedding, one relative position bias shared by all blocks, layer scale 0.1, BEiT's
      init (trunc-normal 0.02, per-depth rescaling of the residual projections);
    * MoCo v3 (and the hybrids, whose CL branch freezes the patch projection, and the
      untrained control) on the sin-cos ViT with MoCo v3's patch-projection init (uniform
      in ±sqrt(6 / (3·p² + D)), zero bias: ``facebookresearch/moco-v3`` ``vits.py``);
    * MAE on the sin-cos ViT;
    * MoCo's blur sigma 0.1–2.0 px *in the view's pixels* (upstream's literal values), which
      blurs a 32-px view's textures (period 9–16 px) instead of leaving them untouched.

The family decides only :class:`~clvsmim.config.ModelConfig` / ``MocoConfig`` fields, so the
cache key of a model names its architecture; ``v2`` leaves every config (and key) as before.
A profile's ``model_overrides`` (``{objective: {ModelConfig field: value}}``) is applied on top
of the family (:func:`objective_model_config`): a sweep's one-knob departure from it, e.g.
``{simmim: {sincos_pos_embed: true}}`` (SimMIM's BEiT encoder given MoCo's fixed sin-cos).

The λ sweep's end points are the pure runs in both families (:func:`clvsmim.train.zoo.resolve`:
``hybrid`` at λ = 0 is ``simmim``, at λ = 1 ``moco``). Under ``faithful`` the λ = 0 end point is
therefore SimMIM on its BEiT encoder while the hybrids in between are built on MoCo v3's ViT
(their CL branch needs MoCo's frozen, upstream-initialised patch projection): C8 compares each
hybrid with the models the other claims read, as the paper compares with its MoCo v3 and SimMIM
runs. A λ = 0 hybrid on MoCo's ViT is not part of the zoo.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotations: clvsmim.config applies the family when it loads a profile
    from clvsmim.config import ModelConfig, Profile

FAMILIES = ("v2", "faithful")
#: The objectives a family builds an encoder for (the keys of ``Profile.model_overrides``).
OBJECTIVES = ("moco", "simmim", "mae", "hybrid", "random")
#: MoCo v3's GaussianBlur sigma range (pixels), used literally by the faithful families.
FAITHFUL_BLUR_SIGMA = (0.1, 2.0)
#: SimMIM's official ViT: layer scale init of its BEiT-style blocks.
SIMMIM_LAYER_SCALE = 0.1

__all__ = ["FAMILIES", "OBJECTIVES", "FAITHFUL_BLUR_SIGMA", "SIMMIM_LAYER_SCALE", "check_families",
           "family_model_config", "objective_model_config", "apply_profile_family"]


def check_families(families: str) -> str:
    if families not in FAMILIES:
        raise ValueError(f"unknown families {families!r}; expected one of {FAMILIES}")
    return families


def family_model_config(families: str, objective: str, cfg: ModelConfig) -> ModelConfig:
    """The encoder config of ``objective`` (moco | simmim | mae | hybrid | random) under
    ``families``. Idempotent; ``v2`` and ``timm_name`` configs are returned unchanged."""
    check_families(families)
    if families == "v2" or cfg.timm_name:
        return cfg
    if objective == "simmim":
        return dataclasses.replace(cfg, encoder="beit", sincos_pos_embed=False, patch_init="timm",
                                   layer_scale_init=SIMMIM_LAYER_SCALE)
    if objective in ("moco", "hybrid", "random"):
        return dataclasses.replace(cfg, encoder="vit", sincos_pos_embed=True, patch_init="moco_v3",
                                   layer_scale_init=None)
    if objective == "mae":
        return dataclasses.replace(cfg, encoder="vit", sincos_pos_embed=True, patch_init="timm",
                                   layer_scale_init=None)
    raise ValueError(f"unknown objective {objective!r} for families {families!r}")


def objective_model_config(profile: Profile, objective: str, cfg: ModelConfig | None = None) -> ModelConfig:
    """The encoder config ``objective`` trains under ``profile``: ``cfg`` (default the profile's
    model) built by the profile's family (a hybrid on MoCo's encoder), then the profile's
    ``model_overrides[objective]``."""
    cfg = family_model_config(profile.families, "moco" if objective == "hybrid" else objective,
                              profile.model if cfg is None else cfg)
    over = profile.model_overrides.get(objective)
    return dataclasses.replace(cfg, **over) if over else cfg


def apply_profile_family(profile: Profile) -> Profile:
    """Profile-wide settings of the family: under ``faithful`` MoCo's blur sigma defaults to the
    literal 0.1–2.0 px (an explicit ``moco.blur_sigma`` is kept)."""
    check_families(profile.families)
    if profile.families == "faithful" and profile.moco.blur_sigma is None:
        profile = dataclasses.replace(profile, moco=dataclasses.replace(profile.moco, blur_sigma=FAITHFUL_BLUR_SIGMA))
    return profile
