"""The backbone a state dict belongs to: inferred from tensor shapes (timm ViT or BEiT), and
built (randomly initialised) from an :class:`~clvsmim.weights.registry.Architecture`."""
from __future__ import annotations

import math
import re
from typing import Mapping

import timm
import torch
from torch import nn

from clvsmim.config import ModelConfig
from clvsmim.models import build_vit
from clvsmim.weights.errors import CheckpointError
from clvsmim.weights.registry import HEADS_BY_DIM, Architecture


def _grid_from_tokens(n: int, prefix: int) -> tuple[int, bool]:
    """``(grid side, no_embed_class)`` from a position-embedding length."""
    for extra, no_embed_class in ((prefix, False), (0, True)):
        side = math.isqrt(max(n - extra, 0))
        if side * side == n - extra and side > 0:
            return side, no_embed_class
    raise CheckpointError(f"position embedding of {n} tokens is not a square grid (+{prefix} prefix tokens)")


def infer_architecture(sd: Mapping[str, torch.Tensor], num_heads: int | None = None) -> Architecture:
    """The timm ViT / BEiT a state dict belongs to, from tensor shapes.

    Embedding width, patch size and channels from ``patch_embed.proj.weight``; depth from the
    largest block index; MLP ratio from ``fc1``; image size from the ``pos_embed`` length or
    (BEiT) the relative-position table; heads from ``num_heads``, the relative-position table,
    or :data:`HEADS_BY_DIM` (else ``embed_dim // 64``).
    """
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointError(f"cannot infer an architecture: no patch_embed.proj.weight among "
                              f"{sorted(sd)[:6]}…")
    embed_dim, in_chans, ph, pw = sd["patch_embed.proj.weight"].shape
    if ph != pw:
        raise CheckpointError(f"non-square patches {ph}x{pw} are not supported")
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError("cannot infer an architecture: no blocks.N.* keys")
    depth = max(blocks) + 1
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    mlp_ratio = fc1.shape[0] / embed_dim if fc1 is not None else 4.0
    table = sd.get("rel_pos_bias.relative_position_bias_table", sd.get("blocks.0.attn.relative_position_bias_table"))
    beit = table is not None or "blocks.0.attn.q_bias" in sd or "blocks.0.gamma_1" in sd
    heads = num_heads or (int(table.shape[1]) if table is not None else None) or HEADS_BY_DIM.get(int(embed_dim))
    if heads is None:
        if embed_dim % 64:
            raise CheckpointError(f"cannot tell the number of heads of a {embed_dim}-wide ViT; pass num_heads=")
        heads = embed_dim // 64
    prefix = (1 if "cls_token" in sd else 0) + (int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0)
    no_embed_class = False
    if "pos_embed" in sd:
        grid, no_embed_class = _grid_from_tokens(int(sd["pos_embed"].shape[1]), prefix)
    elif table is not None:
        side = math.isqrt(int(table.shape[0]) - 3)
        grid = (side + 1) // 2
    else:
        grid = 224 // ph
    num_classes = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    common = dict(img_size=int(grid * ph), patch_size=int(ph), in_chans=int(in_chans), embed_dim=int(embed_dim),
                  depth=depth, num_heads=int(heads), mlp_ratio=mlp_ratio, num_classes=num_classes)
    if beit:
        return Architecture("beit", dict(
            common, qkv_bias="blocks.0.attn.q_bias" in sd, use_abs_pos_emb="pos_embed" in sd,
            use_rel_pos_bias="blocks.0.attn.relative_position_bias_table" in sd,
            use_shared_rel_pos_bias="rel_pos_bias.relative_position_bias_table" in sd,
            init_values=0.1 if "blocks.0.gamma_1" in sd else None,
            global_pool="avg", use_fc_norm="fc_norm.weight" in sd))
    fc_norm = "fc_norm.weight" in sd
    return Architecture("vit", dict(
        common, qkv_bias="blocks.0.attn.qkv.bias" in sd, class_token="cls_token" in sd,
        reg_tokens=int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0,
        no_embed_class=no_embed_class, pos_embed="learn" if "pos_embed" in sd else "none",
        global_pool="avg" if fc_norm or "cls_token" not in sd else "token", fc_norm=fc_norm,
        init_values=1e-5 if "blocks.0.ls1.gamma" in sd else None))


def build_architecture(arch: Architecture) -> nn.Module:
    """Instantiate ``arch`` (randomly initialised)."""
    if arch.family == "clvsmim":
        return build_vit(ModelConfig(**arch.kwargs))
    if arch.timm_name:
        return timm.create_model(arch.timm_name, pretrained=False, **arch.kwargs)
    if arch.family == "vit":
        return timm.models.vision_transformer.VisionTransformer(**arch.kwargs)
    if arch.family == "beit":
        return timm.models.beit.Beit(**arch.kwargs)
    raise CheckpointError(f"unknown architecture family {arch.family!r}")
