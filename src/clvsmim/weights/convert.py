"""The layouts of official checkpoints, converted to timm state dicts.

Formats (detected from key prefixes by :func:`detect_format`):

``moco_v3``  ``{'state_dict': {'module.base_encoder.*', 'module.momentum_encoder.*',
             'module.predictor.*'}, 'optimizer', 'scaler', 'epoch', 'arch'}`` — keep
             ``base_encoder`` without its prefix, drop its ``head.*`` (the projector MLP).
``simmim``   ``{'model': {'encoder.*', 'decoder.*'}, 'config', ...}`` — keep ``encoder.*``
             without the prefix, drop ``encoder.mask_token`` and ``relative_position_index``
             buffers. The remaining SimMIM names (``blocks.N.gamma_1/gamma_2``,
             ``blocks.N.attn.q_bias/v_bias``, ``rel_pos_bias.relative_position_bias_table``,
             ``norm.*``) are exactly timm ``Beit``'s, so the key mapping is the identity.
``mae``      ``{'model': {timm ViT keys [+ 'mask_token', 'decoder_*']}}`` — drop the decoder
             (see :func:`mae_decoder_state_dict` for it).
``timm``     a plain timm state dict (``.pth`` or ``.safetensors``).
``clvsmim``  the project's own ``{'encoder': timm state dict, 'model_config': ModelConfig dict}``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

import torch

from clvsmim.config import ModelConfig
from clvsmim.weights.errors import CheckpointError
from clvsmim.weights.registry import Architecture

def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def inner_mapping(obj: Any, *keys: str) -> Mapping[str, Any]:
    """The first nested mapping under ``keys`` (else ``obj`` itself)."""
    if isinstance(obj, Mapping):
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj if isinstance(obj, Mapping) else {}


_MOCO_PREFIXES = ("module.base_encoder.", "base_encoder.")


def detect_format(obj: Any) -> str:
    """Name the layout of a loaded checkpoint (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"a checkpoint should be a dict, found {type(obj).__name__}")
    if "encoder" in obj and "model_config" in obj:
        return "clvsmim"
    sd = inner_mapping(obj, "state_dict")
    if any(str(k).startswith(_MOCO_PREFIXES) for k in sd):
        return "moco_v3"
    sd = inner_mapping(obj, "model")
    keys = [str(k) for k in sd]
    if any(k == "encoder.patch_embed.proj.weight" for k in keys):
        return "simmim"
    if "patch_embed.proj.weight" in sd:
        if "model" in obj or any(k.startswith("decoder_") for k in keys) or "mask_token" in sd:
            return "mae"
        return "timm"
    top = sorted(map(str, obj))[:8]
    some = sorted(keys)[:6]
    raise CheckpointError(f"unrecognised checkpoint layout: top-level keys {top}, tensor keys {some}…; "
                          f"expected one of {sorted(CONVERTERS)} (pass format=... to force one)")


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """``sd`` without the ``relative_position_index`` buffers (timm recomputes them)."""
    return OrderedDict((k, v) for k, v in sd.items() if not k.endswith("relative_position_index"))


def convert_moco_v3(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = inner_mapping(obj, "state_dict")
    prefix = next((p for p in _MOCO_PREFIXES if any(str(k).startswith(p) for k in sd)), None)
    if prefix is None:
        raise CheckpointError(f"MoCo v3 checkpoint without {' or '.join(_MOCO_PREFIXES)} keys")
    out = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    return clean_state_dict({k: v for k, v in out.items() if not k.startswith("head.")}), None


def convert_simmim(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = inner_mapping(obj, "model")
    out = OrderedDict((k[len("encoder."):], v) for k, v in sd.items() if k.startswith("encoder."))
    if not out:
        raise CheckpointError("SimMIM checkpoint without encoder.* keys")
    out.pop("mask_token", None)
    return clean_state_dict(out), None


def convert_mae(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = inner_mapping(obj, "model")
    return clean_state_dict({k: v for k, v in sd.items() if not (k.startswith("decoder_") or k == "mask_token")}), None


def convert_timm(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = obj if _tensor_dict(obj) else inner_mapping(obj, "state_dict", "model")
    if not _tensor_dict(sd):
        raise CheckpointError("expected a plain state dict of tensors")
    return clean_state_dict(sd), None


def convert_clvsmim(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    cfg = obj.get("model_config")
    arch = None
    if isinstance(cfg, Mapping):
        names = set(ModelConfig.__dataclass_fields__)
        if set(cfg) <= names:
            arch = Architecture("clvsmim", dict(cfg))
    return clean_state_dict(obj["encoder"]), arch


CONVERTERS: dict[str, Callable[[Any], tuple["OrderedDict[str, torch.Tensor]", Architecture | None]]] = {
    "moco_v3": convert_moco_v3,
    "simmim": convert_simmim,
    "mae": convert_mae,
    "timm": convert_timm,
    "clvsmim": convert_clvsmim,
}


def convert(obj: Any, format: str | None = None) -> tuple[str, "OrderedDict[str, torch.Tensor]", Architecture | None]:
    """``(format, timm state dict, architecture hint or None)`` of a loaded checkpoint."""
    fmt = format or detect_format(obj)
    if fmt not in CONVERTERS:
        raise CheckpointError(f"unknown checkpoint format {fmt!r}; known: {sorted(CONVERTERS)}")
    sd, arch = CONVERTERS[fmt](obj)
    return fmt, sd, arch
