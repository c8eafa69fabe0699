"""C6 on the official checkpoints: shape vs texture bias on synthetic cue-conflict images.

The paper reads shape bias off Stylized-ImageNet cue-conflict images, which are not available
offline. The paper book uses the miniature's protocol instead (:func:`clvsmim.evaluation.
shape_texture_bias`), rendered at the model's resolution: a linear probe on the final-depth
mean-pooled tokens is trained on "aligned" images (8 shapes, each filled with its own texture,
both cues predict the class) and read on "conflict" images (shape of one class, texture of
another). The counts scale with the book's ``--images`` (:func:`shape_sizes`), so a CPU run with
a few images stays short; at the paper profile's default (256) they are the miniature's 2,048 /
1,024. A comparison of models on one protocol, not the paper's numbers.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from clvsmim.analysis.model_report import PROBE_LR, PROBE_STEPS
from clvsmim.book.report import backbone, model_cache_path, resolve_device
from clvsmim.cache import cached_json
from clvsmim.evaluation.robustness import SHAPE_TEXTURE_SIZES, shape_texture_bias
from clvsmim.methods import ModelRef
from clvsmim.models import geometry

__all__ = ["SHAPE_IMAGES_PER_IMAGE", "SHAPE_TEXTURE_SCALE", "SHAPE_BATCH", "shape_sizes", "shape_bias_evaluation",
           "shape_budget_words"]

#: Aligned (probe training) and conflict (read-out) images per analysis image of the book.
SHAPE_IMAGES_PER_IMAGE = (8, 4)
#: Texture periods relative to the renderer's default (1/7 … 1/4 of the image width): at 224 px
#: and patch 16, 0.5 gives periods of 16–28 px, one to two patches — texture, not pattern.
SHAPE_TEXTURE_SCALE = 0.5
#: Largest batch of the feature pass (a capture holds every depth's tokens: 64 ViT-B/16 images
#: at 224 px are ≈ 0.5 GB, which fits a Colab GPU).
SHAPE_BATCH = 64


def shape_sizes(n: int) -> tuple[int, int]:
    """``(aligned, conflict)`` image counts for ``n`` analysis images, capped at the miniature's
    :data:`~clvsmim.evaluation.robustness.SHAPE_TEXTURE_SIZES`."""
    if n < 1:
        raise ValueError(f"shape_sizes: need at least one analysis image, found {n}")
    return tuple(min(cap, per * n) for cap, per in zip(SHAPE_TEXTURE_SIZES, SHAPE_IMAGES_PER_IMAGE))


def shape_budget_words(n: int) -> str:
    """How C6 is measured on the official models, in words (the summary's sources table)."""
    aligned, conflict = shape_sizes(n)
    return (f"synthetic cue-conflict images (8 shapes × 8 textures at the model's resolution; a linear probe "
            f"trained on {aligned:,} aligned images, read on {conflict:,} conflict images), not Stylized ImageNet")


def shape_bias_evaluation(ref: ModelRef, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """Shape bias of the official model ``ref`` (or the seeded control), cached next to its probe:
    :func:`~clvsmim.evaluation.shape_bias_from_predictions`'s ``shape_bias``, ``shape_acc``,
    ``texture_acc``, ``num_decided`` plus ``num_aligned``, ``num_conflict``, ``img_size``."""
    profile = ref.profile
    n = n or profile.eval.num_analysis_images
    aligned, conflict = shape_sizes(n)
    content = {"sizes": [aligned, conflict], "texture_scale": SHAPE_TEXTURE_SCALE, "steps": PROBE_STEPS,
               "lr": PROBE_LR, "pool": "mean", "seed": profile.train.seed, "format": 1}

    def compute() -> dict[str, Any]:
        model = backbone(ref, resolve_device(device))
        geo = geometry(model)
        img_size = geo.grid[0] * geo.patch_size
        cfg = dataclasses.replace(profile.eval, probe_steps=PROBE_STEPS, probe_lr=PROBE_LR,
                                  batch_size=min(profile.eval.batch_size, SHAPE_BATCH))
        out = shape_texture_bias(model, cfg, img_size, seed=profile.train.seed, pool="mean",
                                 sizes=(aligned, conflict), texture_scale=SHAPE_TEXTURE_SCALE)
        return {**out, "num_aligned": aligned, "num_conflict": conflict, "img_size": img_size}

    return cached_json(model_cache_path(ref, "shape_texture", content), compute)
