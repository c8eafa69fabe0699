"""Which backbone ``clvsmim analyze --model`` means: an official registry name, ``timm:NAME`` or a
checkpoint path (any of the supported layouts), optionally re-initialised at random as a
control."""
from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from clvsmim.data import IMAGENET_MEAN, IMAGENET_STD
from clvsmim.methods import OFFICIAL_NAMES
from clvsmim.models import square_geometry
from clvsmim.weights import (REGISTRY, build_architecture, convert, infer_architecture, load_checkpoint,
                             load_pretrained, read_checkpoint)

#: Bumped when the layout of ``metrics.json`` changes.


# ----------------------------------------------------------------------------- models
#: Checkpoint file suffixes: a ``--model`` value with one of these (or a path separator) is a PATH.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt", ".safetensors", ".pkl")
class AnalyzeError(ValueError):
    """A ``clvsmim analyze`` input (model, data, option) is unusable; the message says why."""


def _seeded(seed: int | None):
    """``torch.random.fork_rng`` seeded with ``seed`` (no-op context when ``seed`` is None)."""
    if seed is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return ctx()


def _looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.startswith((".", "~"))
            or spec.lower().endswith(CHECKPOINT_SUFFIXES) or Path(spec).exists())


def check_backbone(model: nn.Module, what: str = "model") -> None:
    """Raise :class:`AnalyzeError` unless ``model`` looks like a timm ViT / BEiT."""
    missing = [attr for attr in ("patch_embed", "blocks") if not hasattr(model, attr)]
    if not missing:
        blk = model.blocks[0] if len(model.blocks) else None
        if blk is None or not hasattr(getattr(blk, "attn", None), "attn_drop"):
            missing = ["blocks[i].attn.attn_drop"]
    if missing:
        raise AnalyzeError(f"{what} ({type(model).__name__}) is not a timm ViT / BEiT: it has no "
                           f"{', '.join(missing)}; analyze needs patch tokens and per-block self-attention")


def _timm_model(name: str, random_init: bool, img_size: int | None, seed: int) -> tuple[nn.Module, dict]:
    if not name:
        raise AnalyzeError("--model timm:NAME needs a model name after 'timm:', e.g. timm:vit_base_patch16_224")
    if not timm.is_model(name):
        base = name.split(".")[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models('vit*')"
        raise AnalyzeError(f"unknown timm model {name!r}{hint}")
    kwargs: dict[str, Any] = {"num_classes": 0}
    if img_size:
        kwargs["img_size"] = img_size
    try:
        with _seeded(seed):
            model = timm.create_model(name, pretrained=not random_init, **kwargs)
    except TypeError as exc:  # not a ViT family: img_size / num_classes not understood
        raise AnalyzeError(f"timm model {name!r} cannot be built for analysis ({exc}); "
                           "analyze needs a timm ViT or BEiT") from exc
    except Exception as exc:  # pretrained weights unavailable: no network, no such tag, hub errors
        if random_init:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalyzeError(f"could not load the pretrained weights of timm model {name!r} ({first}); timm fetches "
                           "them from its hub, which needs network access. Use --random-init for a randomly "
                           "initialised control, or pass the path of a checkpoint file") from exc
    check_backbone(model, f"timm model {name!r}")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    info = {"source": "timm", "timm_name": name, "pretrained": not random_init,
            "mean": list(cfg.get("mean", IMAGENET_MEAN)), "std": list(cfg.get("std", IMAGENET_STD))}
    return model, info


def _registry_model(name: str, random_init: bool, allow_pickle: bool, seed: int) -> tuple[nn.Module, dict]:

    entry = REGISTRY[name]
    if random_init:
        if entry.architecture is None:
            raise AnalyzeError(f"{name} has no architecture to initialise randomly")
        with _seeded(seed):
            model = build_architecture(entry.architecture)
    else:
        model = load_pretrained(name, allow_pickle=allow_pickle)
    return model, {"source": "registry", "registry_name": name, "pretrained": not random_init}


def _checkpoint_model(path: Path, random_init: bool, allow_pickle: bool, seed: int) -> tuple[nn.Module, dict]:

    if not path.exists():
        raise FileNotFoundError(f"--model {path}: no such checkpoint file (give a registry name, "
                                f"timm:NAME, or the path of an existing checkpoint)")
    if path.is_dir():
        raise AnalyzeError(f"--model {path} is a folder; give the checkpoint file inside it")
    if random_init:
        fmt, sd, hint = convert(read_checkpoint(path, allow_pickle=allow_pickle))
        with _seeded(seed):
            model = build_architecture(hint or infer_architecture(sd))
    else:
        model = load_checkpoint(path, allow_pickle=allow_pickle)
        fmt = model.clvsmim_source["format"]
    return model, {"source": "checkpoint", "path": str(path), "checkpoint_format": fmt,
                   "pretrained": not random_init}


def resolve_model(spec: str, *, random_init: bool = False, allow_pickle: bool = False, img_size: int | None = None,
                  seed: int = 0) -> tuple[nn.Module, dict]:
    """The backbone named by ``--model`` and a description of where it came from.

    ``spec``: ``timm:NAME``, a registry name (or a book alias), or a checkpoint PATH. Raises
    :class:`AnalyzeError` (unknown names, listing what exists; not a ViT), ``FileNotFoundError``
    (missing path) or :class:`clvsmim.weights.CheckpointError` (unreadable / mismatched file).
    ``img_size`` only applies to ``timm:`` models (timm resamples the position embedding).
    """

    spec = str(spec).strip()
    if not spec:
        raise AnalyzeError("--model is empty")
    if spec.startswith("timm:"):
        model, info = _timm_model(spec[len("timm:"):], random_init, img_size, seed)
    elif spec in REGISTRY or spec in OFFICIAL_NAMES:
        name = OFFICIAL_NAMES.get(spec, spec)
        if REGISTRY[name].kind != "checkpoint":
            raise AnalyzeError(f"{name} is a {REGISTRY[name].kind}, not a model")
        model, info = _registry_model(name, random_init, allow_pickle, seed)
    elif _looks_like_path(spec):
        model, info = _checkpoint_model(Path(spec).expanduser(), random_init, allow_pickle, seed)
    else:
        names = sorted(n for n, e in REGISTRY.items() if e.kind == "checkpoint")
        close = difflib.get_close_matches(spec, names + sorted(OFFICIAL_NAMES), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise AnalyzeError(f"unknown model {spec!r}: not a registry name, not timm:NAME and not an existing file. "
                           f"Available registry names: {', '.join(names)} (aliases: {', '.join(sorted(OFFICIAL_NAMES))}); "
                           f"or timm:NAME for any timm ViT/BEiT; or the path of a checkpoint.{hint}")
    check_backbone(model, spec)
    info.setdefault("mean", list(IMAGENET_MEAN))
    info.setdefault("std", list(IMAGENET_STD))
    return model, info


def input_size(model: nn.Module) -> int:
    """The square input resolution the backbone was built for (patch grid × patch size)."""

    pe = model.patch_embed
    size = getattr(pe, "img_size", None)
    if isinstance(size, (tuple, list)) and size[0] is not None:
        return int(size[0])
    if isinstance(size, int):
        return size
    geo = square_geometry(model)
    return geo.grid[0] * geo.patch_size
