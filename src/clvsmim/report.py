"""The data layer of the book: which backbones a chapter looks at, and their cached analyses.

Chapters stay thin: they ask this module for a backbone (``backbone``), the images the
analyses run on (``analysis_images``), and the per-depth metrics of a model
(``model_analysis`` — :func:`clvsmim.analysis.analyze`, cached as JSON next to the
checkpoint so a re-run of the book recomputes nothing).

Two sources, one code path:

* ``source="zoo"`` — the profile's own trained models (:mod:`clvsmim.zoo`), the default;
* ``source="official"`` — the official ViT-B/16 checkpoints (:mod:`clvsmim.weights`), for the
  ``paper`` profile on a machine with network access.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Profile, config_key
from .paths import cache_dir

#: Bump when the analysis recipe changes so cached analyses are recomputed.
ANALYSIS_FORMAT = 1

#: Short model names of the book -> official checkpoint names of :mod:`clvsmim.weights`.
OFFICIAL_NAMES = {"moco": "moco_v3_vit_b", "simmim": "simmim_vit_b", "mae": "mae_vit_b", "dino": "dino_vit_b"}

#: Display names used in legends.
DISPLAY_NAMES = {"moco": "MoCo v3", "simmim": "SimMIM", "mae": "MAE", "dino": "DINO", "random": "random init"}


def display_name(name: str) -> str:
    """``moco`` -> ``MoCo v3``, ``hybrid-0.4`` -> ``hybrid λ=0.4``, ``simmim-Ti`` -> ``SimMIM (Ti)``."""
    base, _, rest = name.partition("-")
    if base == "hybrid":
        return f"hybrid λ={rest}"
    label = DISPLAY_NAMES.get(base, base)
    return f"{label} ({rest})" if rest else label


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _data_cfg(profile: Profile, data_root: str | None):
    return profile.data if data_root is None else dataclasses.replace(profile.data, root=data_root)


def analysis_images(profile: Profile, data_root: str | None = None, n: int | None = None):
    """The first ``n`` (default ``profile.eval.num_analysis_images``) evaluation images and
    labels: ``(uint8 n×3×S×S, int64 n)``. The same images for every model."""
    from .data import get_batch, open_dataset

    n = n or profile.eval.num_analysis_images
    dataset = open_dataset(data_root, _data_cfg(profile, data_root), "eval")
    if len(dataset) < n:
        where = getattr(dataset, "root", None)
        where = f"the image folder {where}" if where is not None else "the synthetic evaluation split"
        raise ValueError(f"{where} has {len(dataset)} images, the analysis asks for {n}: lower the number of "
                         f"analysis images (`clvsmim book --images {len(dataset)}` or less; profile "
                         f"{profile.name}: eval.num_analysis_images) or add images")
    return get_batch(dataset, torch.arange(n))


def normalised_batches(images: torch.Tensor, batch_size: int, device: torch.device):
    """Yield normalised float batches ``b×3×S×S`` of uint8 ``images`` on ``device``."""
    from .augment import normalize

    for start in range(0, len(images), batch_size):
        yield normalize(images[start:start + batch_size].to(device))


def backbone(profile: Profile, name: str, source: str = "zoo", data_root: str | None = None,
             device: str | torch.device = "cpu") -> nn.Module:
    """The encoder called ``name`` (``moco``, ``simmim-Ti``, ``hybrid-0.4``, ``random`` …) in eval mode.

    ``source="official"``: the official checkpoint of ``name``; ``random`` is then the untrained
    ViT-B/16 built from ``profile.train.seed`` (:func:`clvsmim.paperbook.random_control`)."""
    if source == "zoo":
        from .zoo import load

        model = load(profile, name, data_root=data_root)
    elif source == "official":
        from .weights import load_pretrained

        base = name.split("-")[0]
        if base == "random":  # the control: untrained, built from the seed (never downloaded)
            from .paperbook import random_control

            return random_control(profile.train.seed).to(device).eval()
        if base not in OFFICIAL_NAMES:
            raise ValueError(f"no official checkpoint for {name!r}; available: {sorted(OFFICIAL_NAMES)}")
        model = load_pretrained(OFFICIAL_NAMES[base], allow_pickle=base == "simmim")
    else:
        raise ValueError(f"source must be 'zoo' or 'official', got {source!r}")
    return model.to(device).eval()


def _analysis_path(profile: Profile, name: str, source: str, data_root: str | None, n: int) -> Path:
    key = config_key({"format": ANALYSIS_FORMAT, "n": n, "data": _data_cfg(profile, data_root), "source": source})
    if source == "zoo":
        from .zoo import model_dir

        return model_dir(profile, name, data_root=data_root) / f"analysis-{key}.json"
    from .paperbook import cache_name

    return cache_dir("official", cache_name(profile, name)) / f"analysis-{key}.json"


def model_analysis(profile: Profile, name: str, source: str = "zoo", data_root: str | None = None,
                   device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """:func:`clvsmim.analysis.analyze` of one model on :func:`analysis_images`, cached as JSON."""
    from .analysis import analyze

    n = n or profile.eval.num_analysis_images
    path = _analysis_path(profile, name, source, data_root, n)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            path.unlink()  # corrupt cache: recompute
    dev = resolve_device(device)
    images, _ = analysis_images(profile, data_root, n)  # before the (large) checkpoint: bad input fails fast
    model = backbone(profile, name, source, data_root, dev)
    # the book's analysis sets are small: the spectrum uses every image
    result = analyze(model, normalised_batches(images, profile.eval.batch_size, dev), device=dev, spectrum_every=1)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    return result


def model_analyses(profile: Profile, names: list[str], **kwargs) -> dict[str, dict[str, Any]]:
    """``{name: model_analysis(name)}`` for several models."""
    return {name: model_analysis(profile, name, **kwargs) for name in names}
