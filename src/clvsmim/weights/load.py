"""Loading a checkpoint into its backbone, strictly.

:func:`load_checkpoint` reads safely (:mod:`clvsmim.weights.reading`), converts
(:mod:`clvsmim.weights.convert`), infers the architecture from tensor shapes
(:mod:`clvsmim.weights.architecture`) and loads strictly; any mismatch raises
:class:`~clvsmim.weights.errors.CheckpointError` with a compact list of missing / unexpected /
wrongly shaped keys. :func:`load_pretrained` does the same for a registry entry, fetched and verified.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import timm
import torch
from torch import nn

from clvsmim.weights.architecture import build_architecture, infer_architecture
from clvsmim.weights.convert import clean_state_dict, convert
from clvsmim.weights.download import fetch
from clvsmim.weights.errors import CheckpointError
from clvsmim.weights.reading import read_checkpoint
from clvsmim.weights.registry import Architecture, WeightEntry, get_entry


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
    sd = clean_state_dict(sd)
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
        arch = entry.architecture
        return timm.create_model(arch.timm_name, pretrained=True, **arch.kwargs)
    file = Path(path) if path is not None else fetch(entry, cache=cache, progress=progress)
    model = build_architecture(entry.architecture) if entry.architecture else None
    return load_checkpoint(file, format=entry.converter, allow_pickle=allow_pickle, model=model)
