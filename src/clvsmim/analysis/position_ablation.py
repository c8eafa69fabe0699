"""How much of the Fourier finding (C4) is the architecture: depth 0 with and without an absolute
position embedding.

At depth 0 a ViT's token ``i`` is ``W·x_i + b (+ pos_i)``: the patch projection of image patch
``i`` plus, for MoCo v3 / MAE, the fixed 2-D sin-cos embedding (the official SimMIM ViT has none;
it encodes position by a relative bias inside attention). The sin-cos embedding is the same for
every image and has almost all of its energy at zero frequency along the token grid's diagonal,
so adding it lowers the depth-0 Δ log amplitude by itself, whatever the objective learned.

:func:`depth0_position_ablation` measures, for one encoder and a batch of images, the Fourier
Δ log amplitude curve (:func:`clvsmim.analysis.tokens.relative_log_amplitude`) of the depth-0
tokens **without** an absolute embedding (patch projection only) and **with** the fixed sin-cos
one — the encoder's own being one of the two, the other the ablation ("SimMIM given sin-cos",
"MoCo given none"). :func:`clvsmim.book.plots.representation.plot_position_ablation` draws them,
one panel per family.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from clvsmim.analysis.tokens import relative_log_amplitude
from clvsmim.book.report import analysis_images, backbone, normalised_batches
from clvsmim.methods import ModelRef
from clvsmim.models import geometry, sincos_pos_embed_2d

__all__ = ["own_position_embedding", "depth0_tokens", "depth0_position_ablation", "position_ablation"]


def own_position_embedding(encoder: nn.Module) -> str:
    """``"sincos"`` / ``"learned"`` when the encoder adds an absolute embedding, else ``"none"``."""
    pos = getattr(encoder, "pos_embed", None)
    if pos is None:
        return "none"
    geo = geometry(encoder)
    grid = geo.grid[0]
    if geo.grid[0] == geo.grid[1] and geo.embed_dim % 4 == 0:
        ref = sincos_pos_embed_2d(geo.embed_dim, grid, 0).to(pos.device, pos.dtype)
        patch = pos[:, -grid * grid:]
        if torch.allclose(patch, ref, atol=2e-3):  # fp16-shipped weights round the embedding
            return "sincos"
    return "learned"


@torch.no_grad()
def depth0_tokens(encoder: nn.Module, x: torch.Tensor, position: str) -> torch.Tensor:
    """Patch tokens at depth 0, ``B×N×C``: the patch projection of normalised images ``x``
    (``B×3×H×W``) plus ``position`` = ``"none"`` | ``"sincos"`` (the fixed 2-D sin-cos embedding)."""
    if position not in ("none", "sincos"):
        raise ValueError(f"position must be 'none' or 'sincos', got {position!r}")
    tokens = encoder.patch_embed(x)
    if tokens.dim() == 4:  # NHWC output
        tokens = tokens.flatten(1, 2)
    if position == "sincos":
        geo = geometry(encoder)
        if geo.grid[0] != geo.grid[1]:
            raise ValueError(f"sin-cos ablation needs a square token grid, got {geo.grid}")
        tokens = tokens + sincos_pos_embed_2d(geo.embed_dim, geo.grid[0], 0).to(tokens.device, tokens.dtype)
    return tokens


def depth0_position_ablation(encoder: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Depth-0 Fourier Δ log amplitude curves without and with the sin-cos embedding.

    Returns ``{"own": own_position_embedding(encoder), "curves": {"none": [K floats],
    "sincos": [K floats]}, "delta": {"none": last value, "sincos": last value},
    "architecture_share": delta["sincos"] − delta["none"]}`` (``K = h − h//2``; entry 0 is 0,
    the last entry the highest frequency).
    """
    curves = {}
    for position in ("none", "sincos"):
        z = depth0_tokens(encoder, x, position)
        curves[position] = [float(v) for v in relative_log_amplitude(z, num_prefix_tokens=0)]
    delta = {k: v[-1] for k, v in curves.items()}
    return {"own": own_position_embedding(encoder), "curves": curves, "delta": delta,
            "architecture_share": delta["sincos"] - delta["none"]}


def position_ablation(profile, names=("moco", "simmim", "mae"), source: str = "zoo",
                      device: str = "cpu") -> dict[str, dict[str, Any]]:
    """:func:`depth0_position_ablation` of each model ``names`` (zoo or official) on the
    profile's analysis images (:func:`clvsmim.book.report.analysis_images`): ``{name: result}``."""

    images, _ = analysis_images(profile)
    x = torch.cat(list(normalised_batches(images, len(images), torch.device(device))))
    return {name: depth0_position_ablation(backbone(ModelRef(profile, name, source), device), x) for name in names}
