"""The data layer of the book: which backbones a chapter looks at, and their cached analyses.

Chapters stay thin: they ask this module for a backbone (``backbone``), the images the
analyses run on (``analysis_images``), and the per-depth metrics of a model
(``model_analysis`` — :func:`clvsmim.analysis.analyze`, cached as JSON next to the
checkpoint so a re-run of the book recomputes nothing).

Two sources, one code path:

* ``source="zoo"`` — the profile's own trained models (:mod:`clvsmim.train.zoo`), the default;
* ``source="official"`` — the official ViT-B/16 checkpoints (:mod:`clvsmim.weights`), for the
  ``paper`` profile on a machine with network access.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from clvsmim.analysis import analyze
from clvsmim.cache import cached_json
from clvsmim.config import Profile, config_key
from clvsmim.data import get_batch, open_dataset
from clvsmim.data.augment import normalize
from clvsmim.device import resolve_device
from clvsmim.methods import CONTROL, OFFICIAL_NAMES, display_name  # noqa: F401  (display_name: used by the chapters as report.display_name)
from clvsmim.paths import cache_dir
from clvsmim.train import zoo
from clvsmim.weights import load_pretrained
from clvsmim.weights.control import random_control

#: Bump when the analysis recipe changes so cached analyses are recomputed.
ANALYSIS_FORMAT = 1


def cache_name(profile, name: str) -> str:
    """The folder name of an official model's caches: ``random-seed<s>`` for the control (its
    weights depend on the profile's training seed), ``name`` otherwise."""
    return f"{name}-seed{profile.train.seed}" if name.split("-")[0] == CONTROL else name


def model_cache_path(profile: Profile, name: str, stem: str, content: Any, source: str = "zoo",
                     data_root: str | None = None) -> Path:
    """``<model folder>/<stem>-<hash>.json``: a per-model cache file next to the checkpoint (zoo)
    or under ``cache_dir("official", cache_name(profile, name))``; the hash covers ``content``, the
    data and the source."""
    key = config_key({"stem": stem, "content": content, "data": profile.with_data_root(data_root).data, "source": source})
    if source == "zoo":
        return zoo.model_dir(profile, name, data_root=data_root) / f"{stem}-{key}.json"
    return cache_dir("official", cache_name(profile, name)) / f"{stem}-{key}.json"


def analysis_images(profile: Profile, data_root: str | None = None, n: int | None = None):
    """The first ``n`` (default ``profile.eval.num_analysis_images``) evaluation images and
    labels: ``(uint8 n×3×S×S, int64 n)``. The same images for every model."""
    n = n or profile.eval.num_analysis_images
    dataset = open_dataset(profile.with_data_root(data_root).data, "eval")
    if len(dataset) < n:
        where = getattr(dataset, "root", None)
        where = f"the image folder {where}" if where is not None else "the synthetic evaluation split"
        raise ValueError(f"{where} has {len(dataset)} images, the analysis asks for {n}: lower the number of "
                         f"analysis images (`clvsmim book --images {len(dataset)}` or less; profile "
                         f"{profile.name}: eval.num_analysis_images) or add images")
    return get_batch(dataset, torch.arange(n))


def normalised_batches(images: torch.Tensor, batch_size: int, device: torch.device):
    """Yield normalised float batches ``b×3×S×S`` of uint8 ``images`` on ``device``."""
    for start in range(0, len(images), batch_size):
        yield normalize(images[start:start + batch_size].to(device))


def backbone(profile: Profile, name: str, source: str = "zoo", data_root: str | None = None,
             device: str | torch.device = "cpu") -> nn.Module:
    """The encoder called ``name`` (``moco``, ``simmim-Ti``, ``hybrid-0.4``, ``random`` …) in eval mode.

    ``source="official"``: the official checkpoint of ``name``; ``random`` is then the untrained
    ViT-B/16 built from ``profile.train.seed`` (:func:`clvsmim.weights.control.random_control`)."""
    if source == "zoo":
        model = zoo.load(profile, name, data_root=data_root)
    elif source == "official":
        base = name.split("-")[0]
        if base == CONTROL:  # the control: untrained, built from the seed (never downloaded)
            return random_control(profile.train.seed).to(device).eval()
        if base not in OFFICIAL_NAMES:
            raise ValueError(f"no official checkpoint for {name!r}; available: {sorted(OFFICIAL_NAMES)}")
        model = load_pretrained(OFFICIAL_NAMES[base], allow_pickle=base == "simmim")
    else:
        raise ValueError(f"source must be 'zoo' or 'official', got {source!r}")
    return model.to(device).eval()


def _analysis_path(profile: Profile, name: str, source: str, data_root: str | None, n: int) -> Path:
    key = config_key({"format": ANALYSIS_FORMAT, "n": n, "data": profile.with_data_root(data_root).data, "source": source})
    if source == "zoo":
        return zoo.model_dir(profile, name, data_root=data_root) / f"analysis-{key}.json"
    return cache_dir("official", cache_name(profile, name)) / f"analysis-{key}.json"


def analysis_pass(profile: Profile, name: str, collectors=None, source: str = "zoo", data_root: str | None = None,
                  device: str = "auto", n: int | None = None):
    """ONE :func:`clvsmim.analysis.analyze` pass of the model ``name`` over the first ``n``
    :func:`analysis_images` (the images are read before the, possibly large, checkpoint, so bad
    input fails fast). ``collectors=None``: the per-depth metrics, the spectrum on every image
    (the book's analysis sets are small)."""
    dev = resolve_device(device)
    images, _ = analysis_images(profile, data_root, n)
    model = backbone(profile, name, source, data_root, dev)
    return analyze(model, normalised_batches(images, profile.eval.batch_size, dev), collectors, device=dev,
                   spectrum_every=1)


def model_analysis(profile: Profile, name: str, source: str = "zoo", data_root: str | None = None,
                   device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """:func:`analysis_pass` of one model (every metric), cached as JSON next to the model."""
    n = n or profile.eval.num_analysis_images
    return cached_json(_analysis_path(profile, name, source, data_root, n),
                       lambda: analysis_pass(profile, name, None, source, data_root, device, n))


def model_analyses(profile: Profile, names: list[str], **kwargs) -> dict[str, dict[str, Any]]:
    """``{name: model_analysis(name)}`` for several models."""
    return {name: model_analysis(profile, name, **kwargs) for name in names}
