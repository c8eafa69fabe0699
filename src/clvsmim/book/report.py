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

import copy
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
from clvsmim.methods import CONTROL, OFFICIAL_NAMES, ModelRef, display_name  # noqa: F401  (display_name: used by the chapters as report.display_name)
from clvsmim.paths import cache_dir
from clvsmim.train import zoo
from clvsmim.weights import load_pretrained
from clvsmim.weights.download import cached_path
from clvsmim.weights.errors import DownloadError
from clvsmim.weights.control import random_control

#: Bump when the analysis recipe changes so cached analyses are recomputed.
ANALYSIS_FORMAT = 1


def cache_name(profile, name: str) -> str:
    """The folder name of an official model's caches: ``random-seed<s>`` for the control (its
    weights depend on the profile's training seed), ``name`` otherwise."""
    return f"{name}-seed{profile.train.seed}" if name.split("-")[0] == CONTROL else name


def model_folder(ref: ModelRef) -> Path:
    """Where a model's cache files live: next to its checkpoint (zoo), or under
    ``cache_dir("official", cache_name(profile, name))``."""
    if ref.source == "zoo":
        return zoo.model_dir(ref.profile, ref.name)
    return cache_dir("official", cache_name(ref.profile, ref.name))


def model_cache_path(ref: ModelRef, stem: str, content: Any) -> Path:
    """``<model folder>/<stem>-<hash>.json`` (:func:`model_folder`); the hash covers ``content``,
    the data and the source."""
    key = config_key({"stem": stem, "content": content, "data": ref.profile.data, "source": ref.source})
    return model_folder(ref) / f"{stem}-{key}.json"


def analysis_images(profile: Profile, n: int | None = None):
    """The first ``n`` (default ``profile.eval.num_analysis_images``) evaluation images and
    labels of the profile's data: ``(uint8 n×3×S×S, int64 n)``. The same images for every model."""
    n = n or profile.eval.num_analysis_images
    dataset = open_dataset(profile.data, "eval")
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


#: The official ViT-B/16 backbones (and seeded controls) already read in this process, on the
#: CPU: a chapter asks for the same model several times (analysis, probe, shape bias, t-SNE …),
#: and reading, verifying and converting a checkpoint costs 6–14 s where a copy costs < 1 s.
#: Keyed by the checkpoint file's path, size and modification time: a replaced file is read again.
_OFFICIAL_READ: dict[tuple, nn.Module] = {}


def _read_key(ref: ModelRef) -> tuple | None:
    """What identifies the model ``ref`` reads: the control's seed, or the local checkpoint file
    (None while it is not downloaded, or for a model timm's hub keeps: read, not remembered)."""
    if ref.base == CONTROL:
        return (CONTROL, ref.profile.train.seed)
    try:
        path = cached_path(OFFICIAL_NAMES[ref.base])
    except DownloadError:
        return None
    stat = path.stat() if path.is_file() else None
    return (ref.base, str(path), stat.st_size, stat.st_mtime_ns) if stat else None


def _official_backbone(ref: ModelRef) -> nn.Module:
    """A private copy of the official model (or seeded control) ``ref``, read once per process."""
    if ref.base != CONTROL and ref.base not in OFFICIAL_NAMES:
        raise ValueError(f"no official checkpoint for {ref.name!r}; available: {sorted(OFFICIAL_NAMES)}")
    key = _read_key(ref)
    if key in _OFFICIAL_READ:
        return copy.deepcopy(_OFFICIAL_READ[key])
    model = (random_control(ref.profile.train.seed) if ref.base == CONTROL  # untrained, from the seed
             else load_pretrained(OFFICIAL_NAMES[ref.base], allow_pickle=ref.base == "simmim"))
    key = key or _read_key(ref)  # a first download: the file exists now
    if key is not None:
        _OFFICIAL_READ[key] = copy.deepcopy(model)
    return model


def backbone(ref: ModelRef, device: str | torch.device = "cpu") -> nn.Module:
    """The encoder ``ref`` points at (``moco``, ``simmim-Ti``, ``hybrid-0.4``, ``random`` …), in eval mode.

    ``source="official"``: the official checkpoint of ``ref.name``; ``random`` is then the
    untrained ViT-B/16 built from ``profile.train.seed`` (:func:`clvsmim.weights.control.random_control`).
    Each call returns a model of its own (callers may fine-tune it); an official checkpoint is
    read once per process (:func:`_official_backbone`)."""
    if ref.source == "zoo":
        return zoo.load(ref.profile, ref.name).to(device).eval()
    return _official_backbone(ref).to(device).eval()


def _analysis_path(ref: ModelRef, n: int) -> Path:
    key = config_key({"format": ANALYSIS_FORMAT, "n": n, "data": ref.profile.data, "source": ref.source})
    return model_folder(ref) / f"analysis-{key}.json"


def analysis_pass(ref: ModelRef, collectors=None, device: str = "auto", n: int | None = None):
    """ONE :func:`clvsmim.analysis.analyze` pass of the model ``ref`` over the first ``n``
    :func:`analysis_images` (the images are read before the, possibly large, checkpoint, so bad
    input fails fast). ``collectors=None``: the per-depth metrics, the spectrum on every image
    (the book's analysis sets are small)."""
    dev = resolve_device(device)
    images, _ = analysis_images(ref.profile, n)
    model = backbone(ref, dev)
    return analyze(model, normalised_batches(images, ref.profile.eval.batch_size, dev), collectors, device=dev,
                   spectrum_every=1)


def model_analysis(ref: ModelRef, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """:func:`analysis_pass` of one model (every metric), cached as JSON next to the model."""
    n = n or ref.profile.eval.num_analysis_images
    return cached_json(_analysis_path(ref, n), lambda: analysis_pass(ref, None, device, n))


def model_analyses(refs, **kwargs) -> dict[str, dict[str, Any]]:
    """``{ref.name: model_analysis(ref)}`` for several :class:`~clvsmim.methods.ModelRef`."""
    return {ref.name: model_analysis(ref, **kwargs) for ref in refs}
