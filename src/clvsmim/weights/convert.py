"""Read official checkpoints, convert them to timm state dicts, build and load the backbone.

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

:func:`load_checkpoint` reads safely (``torch.load(weights_only=True)``; pickled objects need
the explicit ``allow_pickle=True`` opt-in), converts, infers the architecture from tensor
shapes (:func:`infer_architecture`) and loads strictly; any mismatch raises
:class:`CheckpointError` with a compact list of missing / unexpected / wrongly shaped keys.
"""
from __future__ import annotations

import math
import pickle
import re
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from clvsmim.config import MAEConfig, ModelConfig
from clvsmim.objectives.mae import MAE, MAEDecoder
from clvsmim.weights.download import fetch
from clvsmim.weights.registry import HEADS_BY_DIM, REGISTRY, Architecture, WeightEntry, get_entry


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, recognised, converted or loaded into the architecture."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled Python objects and ``allow_pickle`` was not given."""


StateDict = "OrderedDict[str, torch.Tensor]"


# ----------------------------------------------------------------------------- reading
class _Placeholder(dict):
    """Stands in for a pickled class that cannot be imported (e.g. yacs' CfgNode)."""

    def __init__(self, *args, **kwargs):  # accept whatever the pickle passes
        try:
            super().__init__(*args, **kwargs)
        except (TypeError, ValueError):
            super().__init__()

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


def _lenient_pickle_module() -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler replaces unimportable classes by placeholders."""
    made: dict[tuple[str, str], type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                key = (module, name)
                if key not in made:
                    made[key] = type(name, (_Placeholder,), {"__module__": f"clvsmim_missing.{module}"})
                return made[key]

    mod = types.ModuleType("clvsmim_lenient_pickle")
    mod.Unpickler = Unpickler
    mod.load = lambda fh, **kw: Unpickler(fh, **kw).load()
    mod.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL", "Pickler",
                                                          "dump", "dumps", "loads")})
    return mod


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> Any:
    """Load a checkpoint file onto the CPU.

    ``.safetensors`` files are read with safetensors. Otherwise ``torch.load(weights_only=True)``
    is tried first; if the file holds pickled Python objects (e.g. SimMIM's yacs config) that
    fails and :class:`UnsafeCheckpointError` explains the opt-in: ``allow_pickle=True`` (CLI
    ``--allow-pickle``) re-reads it with ``weights_only=False`` — which can run code from the
    file, so only do it for files you trust (verified sha256). Classes that cannot be imported
    (yacs not installed) are replaced by inert placeholders.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: cannot read safetensors file (truncated or corrupt?): {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" not in msg.lower() and "weights_only" not in msg.lower():
            raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{msg.splitlines()[0] if msg else type(exc).__name__}") from exc
        if not allow_pickle:
            first = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects besides tensors ({first or 'unsupported global'}), which "
                "torch.load(weights_only=True) refuses. If you trust the file (e.g. an official SimMIM checkpoint "
                "with its yacs config; check it with `clvsmim weights verify`), opt in explicitly: "
                "load_checkpoint(path, allow_pickle=True) / load_pretrained(name, allow_pickle=True), or "
                "`--allow-pickle` on the command line. This loads with weights_only=False, which can execute "
                "code stored in the file.") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt? size "
                              f"{path.stat().st_size} bytes): {str(exc).splitlines()[0] if str(exc) else exc!r}. "
                              "If it came from `clvsmim weights fetch`, run `clvsmim weights verify`.") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module())
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read even with allow_pickle=True: {exc}") from exc


# ----------------------------------------------------------------------------- formats
def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _inner(obj: Any, *keys: str) -> Mapping[str, Any]:
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
    sd = _inner(obj, "state_dict")
    if any(str(k).startswith(_MOCO_PREFIXES) for k in sd):
        return "moco_v3"
    sd = _inner(obj, "model")
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


def _clean(sd: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v) for k, v in sd.items() if not k.endswith("relative_position_index"))


def convert_moco_v3(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = _inner(obj, "state_dict")
    prefix = next((p for p in _MOCO_PREFIXES if any(str(k).startswith(p) for k in sd)), None)
    if prefix is None:
        raise CheckpointError(f"MoCo v3 checkpoint without {' or '.join(_MOCO_PREFIXES)} keys")
    out = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    return _clean({k: v for k, v in out.items() if not k.startswith("head.")}), None


def convert_simmim(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = _inner(obj, "model")
    out = OrderedDict((k[len("encoder."):], v) for k, v in sd.items() if k.startswith("encoder."))
    if not out:
        raise CheckpointError("SimMIM checkpoint without encoder.* keys")
    out.pop("mask_token", None)
    return _clean(out), None


def convert_mae(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = _inner(obj, "model")
    return _clean({k: v for k, v in sd.items() if not (k.startswith("decoder_") or k == "mask_token")}), None


def convert_timm(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:
    sd = obj if _tensor_dict(obj) else _inner(obj, "state_dict", "model")
    if not _tensor_dict(sd):
        raise CheckpointError("expected a plain state dict of tensors")
    return _clean(sd), None


def convert_clvsmim(obj: Any) -> tuple["OrderedDict[str, torch.Tensor]", Architecture | None]:

    cfg = obj.get("model_config")
    arch = None
    if isinstance(cfg, Mapping):
        names = set(ModelConfig.__dataclass_fields__)
        if set(cfg) <= names:
            arch = Architecture("clvsmim", dict(cfg))
    return _clean(obj["encoder"]), arch


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


# ----------------------------------------------------------------------------- architecture
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
    import timm

    if arch.family == "clvsmim":
        from clvsmim.config import ModelConfig
        from clvsmim.models import build_vit

        return build_vit(ModelConfig(**arch.kwargs))
    if arch.timm_name:
        return timm.create_model(arch.timm_name, pretrained=False, **arch.kwargs)
    if arch.family == "vit":
        return timm.models.vision_transformer.VisionTransformer(**arch.kwargs)
    if arch.family == "beit":
        return timm.models.beit.Beit(**arch.kwargs)
    raise CheckpointError(f"unknown architecture family {arch.family!r}")


# ----------------------------------------------------------------------------- strict loading
def _summarise(keys: list[str], limit: int = 6) -> str:
    """Compact listing: block indices folded (``blocks.*.attn.qkv.weight ×12``), first few + count."""
    groups: "OrderedDict[str, int]" = OrderedDict()
    for k in keys:
        pat = re.sub(r"\.\d+\.", ".*.", k)
        groups[pat] = groups.get(pat, 0) + 1
    items = [f"{p} ×{n}" if n > 1 else p for p, n in groups.items()]
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"{shown}{f', … and {more} more pattern(s)' if more > 0 else ''} ({len(keys)} key(s))"


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Load ``sd`` into ``model`` requiring every key and shape to match.

    ``relative_position_index`` buffers are recomputed by timm and never compared. On any
    mismatch :class:`CheckpointError` lists missing keys, unexpected keys and shape
    mismatches, folded and truncated.
    """
    target = model.state_dict()
    sd = _clean(sd)
    derived = {k for k in target if k.endswith("relative_position_index")}
    missing = [k for k in target if k not in sd and k not in derived]
    unexpected = [k for k in sd if k not in target]
    shapes = [k for k in sd if k in target and tuple(sd[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit {type(model).__name__} "
                 f"(embed_dim={getattr(model, 'embed_dim', '?')}, depth={len(getattr(model, 'blocks', []))}):"]
        if missing:
            lines.append(f"  missing keys: {_summarise(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {_summarise(unexpected)}")
        if shapes:
            detail = ", ".join(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
                               for k in shapes[:4])
            more = f", … and {len(shapes) - 4} more" if len(shapes) > 4 else ""
            lines.append(f"  shape mismatches ({len(shapes)}): {detail}{more}")
        raise CheckpointError("\n".join(lines))
    full = {**{k: target[k] for k in derived}, **sd}
    model.load_state_dict(full, strict=True)
    return model


def load_checkpoint(path: str | Path, format: str | None = None, allow_pickle: bool = False, *,
                    model: nn.Module | None = None, architecture: Architecture | None = None,
                    num_heads: int | None = None) -> nn.Module:
    """Read, convert and strictly load a checkpoint; return the timm backbone.

    ``format``: force a layout (``moco_v3``, ``simmim``, ``mae``, ``timm``, ``clvsmim``) instead
    of detecting it. The backbone is ``model`` if given, else ``architecture``, else the one
    the checkpoint describes (project checkpoints) or :func:`infer_architecture` finds.
    ``allow_pickle``: see :func:`read_checkpoint`. The returned module carries
    ``clvsmim_source = {"path", "format"}``.
    """
    obj = read_checkpoint(path, allow_pickle=allow_pickle)
    fmt, sd, hint = convert(obj, format)
    if model is None:
        arch = architecture or hint or infer_architecture(sd, num_heads)
        model = build_architecture(arch)
    load_state_dict_strict(model, sd, source=f"{path} ({fmt})")
    model.clvsmim_source = {"path": str(path), "format": fmt}
    return model


def load_pretrained(name: str | WeightEntry, *, path: str | Path | None = None, cache: str | Path | None = None,
                    progress: bool = True, allow_pickle: bool = False) -> nn.Module:
    """The registry backbone ``name``: fetched (verified) unless ``path`` is given, loaded
    strictly into the registry's architecture. ``source="timm"`` entries (DINO) come from
    ``timm.create_model(..., pretrained=True)``, i.e. timm's hub cache."""

    entry = get_entry(name)
    if entry.kind != "checkpoint":
        raise CheckpointError(f"{entry.name} is a {entry.kind}, not a checkpoint")
    if entry.source == "timm" and path is None:
        import timm

        arch = entry.architecture
        return timm.create_model(arch.timm_name, pretrained=True, **arch.kwargs)
    file = Path(path) if path is not None else fetch(entry, cache=cache, progress=progress)
    model = build_architecture(entry.architecture) if entry.architecture else None
    return load_checkpoint(file, format=entry.converter, allow_pickle=allow_pickle, model=model)


# ----------------------------------------------------------------------------- MAE decoder
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
    sd = _inner(obj, "model")
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
