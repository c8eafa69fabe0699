"""The official MAE decoder (``mae_vit_b_visualize`` ships it): its keys renamed for
:class:`clvsmim.objectives.mae.MAEDecoder`, its configuration read from tensor shapes, and the
project's :class:`~clvsmim.objectives.mae.MAE` around an official encoder + decoder (F8)."""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from clvsmim.config import MAEConfig
from clvsmim.objectives.mae import MAE, MAEDecoder
from clvsmim.weights.architecture import build_architecture, infer_architecture
from clvsmim.weights.convert import convert, inner_mapping
from clvsmim.weights.download import fetch
from clvsmim.weights.errors import CheckpointError
from clvsmim.weights.load import load_state_dict_strict
from clvsmim.weights.reading import read_checkpoint
from clvsmim.weights.registry import REGISTRY

#: official MAE decoder key prefix -> :class:`clvsmim.objectives.mae.MAEDecoder` name
MAE_DECODER_KEYS = {"decoder_embed.": "decoder_embed.", "decoder_pos_embed": "pos_embed",
                    "decoder_blocks.": "blocks.", "decoder_norm.": "norm.", "decoder_pred.": "pred.",
                    "mask_token": "mask_token"}


def mae_decoder_state_dict(obj: Any) -> "OrderedDict[str, torch.Tensor]":
    """The MAE decoder of a loaded ``{'model': ...}`` checkpoint, renamed for ``MAEDecoder``.

    ``decoder_embed.*`` stays, ``decoder_pos_embed`` -> ``pos_embed`` (fixed sin-cos; a
    non-persistent buffer in ``MAEDecoder``), ``decoder_blocks.N.*`` -> ``blocks.N.*`` (timm
    ``Block`` names), ``decoder_norm.*`` -> ``norm.*``, ``decoder_pred.*`` -> ``pred.*``,
    ``mask_token`` (decoder width) stays (see :data:`MAE_DECODER_KEYS`).
    """
    sd = inner_mapping(obj, "model")
    out = OrderedDict()
    for k, v in sd.items():
        for old, new in MAE_DECODER_KEYS.items():
            if k == old or (old.endswith(".") and k.startswith(old)):
                out[new + k[len(old):]] = v
                break
    if "decoder_embed.weight" not in out:
        raise CheckpointError("no MAE decoder in this checkpoint (use mae_vit_b_visualize, which ships it)")
    return out


def mae_decoder_config(dec: Mapping[str, torch.Tensor], num_heads: int | None = None,
                       in_chans: int = 3) -> dict[str, Any]:
    """``MAEDecoder`` constructor arguments from a :func:`mae_decoder_state_dict` (heads:
    ``num_heads``, else 16 for the official 512-wide decoder, else ``width // 32``)."""
    width, enc_dim = dec["decoder_embed.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in dec if (m := re.match(r"blocks\.(\d+)\.", k)))
    patch = math.isqrt(int(dec["pred.weight"].shape[0]) // in_chans)
    if "pos_embed" in dec:
        grid = math.isqrt(int(dec["pos_embed"].shape[1]) - 1)
    else:
        raise CheckpointError("decoder without pos_embed: cannot tell the token grid")
    heads = num_heads or {512: 16}.get(int(width)) or max(1, int(width) // 32)
    return {"embed_dim": int(enc_dim), "grid": grid, "patch_size": patch, "decoder_dim": int(width),
            "depth": depth, "num_heads": int(heads),
            "mlp_ratio": float(dec["blocks.0.mlp.fc1.weight"].shape[0] / width), "in_chans": in_chans}


def load_mae_decoder(dec: Mapping[str, torch.Tensor], num_heads: int | None = None) -> nn.Module:
    """A :class:`clvsmim.objectives.mae.MAEDecoder` holding ``dec`` (strict; the fixed position
    embedding is copied into its buffer)."""

    dec = OrderedDict(dec)
    decoder = MAEDecoder(**mae_decoder_config(dec, num_heads))
    pos = dec.pop("pos_embed")
    load_state_dict_strict(decoder, dec, source="MAE decoder")
    if tuple(decoder.pos_embed.shape) != tuple(pos.shape):
        raise CheckpointError(f"MAE decoder pos_embed {tuple(pos.shape)} vs {tuple(decoder.pos_embed.shape)}")
    decoder.pos_embed.copy_(pos.to(decoder.pos_embed.dtype))
    return decoder


def load_mae_with_decoder(path: str | Path | None = None, *, name: str = "mae_vit_b_visualize",
                          cache: str | Path | None = None, progress: bool = True,
                          decoder_heads: int | None = None) -> tuple[nn.Module, nn.Module]:
    """``(encoder, decoder)`` of an MAE checkpoint that holds both (default: the official
    ``mae_vit_b_visualize``, fetched and verified): a timm ViT and a
    :class:`clvsmim.objectives.mae.MAEDecoder`, both loaded strictly."""

    file = Path(path) if path is not None else fetch(name, cache=cache, progress=progress)
    obj = read_checkpoint(file)
    fmt, sd, _ = convert(obj, "mae")
    encoder = build_architecture(infer_architecture(sd))
    load_state_dict_strict(encoder, sd, source=f"{file} (mae encoder)")
    encoder.clvsmim_source = {"path": str(file), "format": fmt}
    return encoder, load_mae_decoder(mae_decoder_state_dict(obj), decoder_heads)


def load_mae_objective(path: str | Path | None = None, *, name: str = "mae_vit_b_visualize",
                       norm_pix_loss: bool | None = None, mask_ratio: float = 0.75, **kwargs) -> nn.Module:
    """The project's :class:`clvsmim.objectives.mae.MAE` around an official encoder + decoder
    (for F8: ``reconstruct`` and ``decoder_hidden_states``). ``norm_pix_loss`` defaults to the
    registry's (``False`` for the visualisation checkpoint)."""

    encoder, decoder = load_mae_with_decoder(path, name=name, **kwargs)
    if norm_pix_loss is None:
        norm_pix_loss = bool(REGISTRY[name].extra.get("norm_pix_loss", True)) if name in REGISTRY else True
    cfg = MAEConfig(mask_ratio=mask_ratio, decoder_dim=decoder.decoder_embed.out_features,
                    decoder_depth=len(decoder.blocks), decoder_heads=decoder.blocks[0].attn.num_heads,
                    norm_pix_loss=norm_pix_loss)
    mae = MAE(encoder, cfg)
    mae.decoder = decoder
    return mae.eval()
