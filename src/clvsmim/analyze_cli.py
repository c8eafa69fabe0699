"""``clvsmim analyze``: every analysis of the paper on *your* model, in one command.

::

    clvsmim analyze --model {NAME|timm:NAME|PATH} --data {synthetic|PATH} [--images N]
                    [--batch-size B] [--img-size S] [--device auto] [--allow-pickle]
                    [--random-init] [--seed K] [--spectrum-every K] [--no-figures] [--explorer] [--out DIR]

``--model``
    a registry name of :mod:`clvsmim.weights` (``moco_v3_vit_b``, ``simmim_vit_b``, ``mae_vit_b``,
    ``dino_vit_b``; the book's short names ``moco``/``simmim``/``mae``/``dino`` too — fetched on
    first use, needs network), ``timm:NAME`` (any timm ViT / BEiT, ``pretrained=True``), or the
    PATH of a checkpoint (MoCo v3 / SimMIM / MAE / timm / clvsmim layouts, detected by
    :func:`clvsmim.weights.load_checkpoint`). ``--random-init`` builds the same architecture
    with random weights (seeded by ``--seed``; no download): a control, and what the tests use.
``--data``
    ``synthetic`` (the embedded shape dataset rendered at the model's input resolution, labels =
    the 8 shape classes) or an ImageFolder PATH (``PATH/val`` when it exists; evaluation transform
    at the model's input size). Images are taken class by class in turn (round-robin), so the
    first ``N`` cover the classes evenly. Normalisation: the timm model's own mean/std for
    ``timm:NAME``, ImageNet's otherwise (MoCo v3, SimMIM, MAE, DINO all use it).

Everything runs in ONE forward pass per batch (:func:`clvsmim.models.capture`), so memory is
bounded by one batch of attention maps: per-depth attention distance, NMI, Fourier Δ log
amplitude, token cosine similarity and singular-value spectra (the recipe of
:func:`clvsmim.analysis.analyze`, same numbers), the attention maps of two query patches of the
first image at the last block, a t-SNE of the last-depth tokens of up to 18 images (3 classes ×
6 when labels exist) with the image cluster score, and — when labels exist and there are ≥ 2
classes — a linear probe of every depth on mean-pooled patch tokens (the images split class by
class into alternating train/test halves; one small fixed budget for every depth).

Output: ``DIR/metrics.json`` (model and data description, timing, per-depth lists) and one
figure per analysis, ``DIR/<name>.png`` (:data:`FIGURES`). Python API: :func:`analyze_model`.
``--explorer`` adds ``DIR/explorer.html`` and its data folder ``DIR/explorer/``: the attention
explorer (:mod:`clvsmim.explorer`) of the model on the first images, offline, from ``file://``.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .data import IMAGENET_MEAN, IMAGENET_STD

#: Bumped when the layout of ``metrics.json`` changes.
METRICS_FORMAT = 1
#: Figures written by :func:`analyze_model` (those that apply): ``<name>.png``.
FIGURES = ("attention_distance", "nmi", "fourier", "token_cosine", "svd_spectrum", "attention_maps", "tsne",
           "probe")
#: t-SNE: at most this many images, from at most ``TSNE_CLASSES`` classes when labels exist.
TSNE_IMAGES, TSNE_CLASSES, TSNE_PERPLEXITY = 18, 3, 20.0
#: The linear probe's budget, identical for every depth (full batch, AdamW, cosine lr).
PROBE_STEPS, PROBE_LR, PROBE_WEIGHT_DECAY, PROBE_POOLING = 200, 1e-2, 0.0, "mean"
#: The book's short names accepted by ``--model`` (see :data:`clvsmim.report.OFFICIAL_NAMES`).
MODEL_ALIASES = {"moco": "moco_v3_vit_b", "simmim": "simmim_vit_b", "mae": "mae_vit_b", "dino": "dino_vit_b"}
#: Checkpoint file suffixes: a ``--model`` value with one of these (or a path separator) is a PATH.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt", ".safetensors", ".pkl")
DEFAULT_IMAGES, DEFAULT_BATCH_SIZE = 64, 16


class AnalyzeError(ValueError):
    """A ``clvsmim analyze`` input (model, data, option) is unusable; the message says why."""


# ----------------------------------------------------------------------------- models
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
    import timm

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
    from .weights import REGISTRY, build_architecture, load_pretrained

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
    from .weights import build_architecture, convert, infer_architecture, load_checkpoint, read_checkpoint

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
    from .weights import REGISTRY

    spec = str(spec).strip()
    if not spec:
        raise AnalyzeError("--model is empty")
    if spec.startswith("timm:"):
        model, info = _timm_model(spec[len("timm:"):], random_init, img_size, seed)
    elif spec in REGISTRY or spec in MODEL_ALIASES:
        name = MODEL_ALIASES.get(spec, spec)
        if REGISTRY[name].kind != "checkpoint":
            raise AnalyzeError(f"{name} is a {REGISTRY[name].kind}, not a model")
        model, info = _registry_model(name, random_init, allow_pickle, seed)
    elif _looks_like_path(spec):
        model, info = _checkpoint_model(Path(spec).expanduser(), random_init, allow_pickle, seed)
    else:
        names = sorted(n for n, e in REGISTRY.items() if e.kind == "checkpoint")
        close = difflib.get_close_matches(spec, names + sorted(MODEL_ALIASES), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise AnalyzeError(f"unknown model {spec!r}: not a registry name, not timm:NAME and not an existing file. "
                           f"Available registry names: {', '.join(names)} (aliases: {', '.join(sorted(MODEL_ALIASES))}); "
                           f"or timm:NAME for any timm ViT/BEiT; or the path of a checkpoint.{hint}")
    check_backbone(model, spec)
    info.setdefault("mean", list(IMAGENET_MEAN))
    info.setdefault("std", list(IMAGENET_STD))
    return model, info


def input_size(model: nn.Module) -> int:
    """The square input resolution the backbone was built for (patch grid × patch size)."""
    from .analysis.pipeline import model_geometry

    pe = model.patch_embed
    size = getattr(pe, "img_size", None)
    if isinstance(size, (tuple, list)) and size[0] is not None:
        return int(size[0])
    if isinstance(size, int):
        return size
    geo = model_geometry(model)
    return geo.grid[0] * geo.patch_size


# ----------------------------------------------------------------------------- data
class _TensorImages(torch.utils.data.Dataset):
    """Images (uint8, or float in [0, 1]) ``N×3×S×S`` with optional labels, as a dataset."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise AnalyzeError(f"expected images of shape N×3×S×S (uint8, or float in [0, 1]), found {found}")
        if labels is not None:
            labels = torch.as_tensor(labels).long().reshape(-1)
            if len(labels) != len(images):
                raise AnalyzeError(f"expected one label per image, found {len(labels)} labels for {len(images)} images")
        self.images, self._labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], (-1 if self._labels is None else int(self._labels[i]))

    @property
    def labels(self) -> torch.Tensor | None:
        return self._labels


def _as_dataset(data) -> torch.utils.data.Dataset:
    if isinstance(data, torch.Tensor):
        return _TensorImages(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _TensorImages(data[0], data[1])
    if isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return data
    raise AnalyzeError(f"expected a dataset, an image tensor N×3×S×S or (images, labels), found {type(data).__name__}")


def dataset_labels(dataset) -> torch.Tensor | None:
    """All labels of ``dataset`` without decoding images (``.labels`` / ``.shape``), else None."""
    from .data import SyntheticSet

    if isinstance(dataset, SyntheticSet):
        return dataset.shape
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels).long().reshape(-1)
    return labels if len(labels) == len(dataset) else None


def analysis_order(labels: torch.Tensor | None, size: int, n: int) -> torch.Tensor:
    """Indices of the ``n`` images to analyse: class by class in turn (round-robin) when labels
    exist, so the first ``n`` cover the classes evenly; else ``0 … n−1``."""
    n = min(n, size)
    if labels is None:
        return torch.arange(n)
    classes, cls = labels.unique(return_inverse=True)
    rank = torch.zeros(size, dtype=torch.int64)
    for c in range(len(classes)):
        members = (cls == c).nonzero().squeeze(1)
        rank[members] = torch.arange(len(members))
    return torch.argsort(rank * len(classes) + cls, stable=True)[:n]


def open_analysis_data(spec: str, img_size: int, num_images: int, seed: int = 0):
    """``(dataset, description)`` for ``--data``: ``synthetic`` or an ImageFolder PATH."""
    from .data import EVAL_SEED_OFFSET, SHAPES, ImageFolderDataset, make_synthetic

    if spec == "synthetic":
        dataset = make_synthetic(num_images, img_size, seed=seed + EVAL_SEED_OFFSET)
        return dataset, {"name": "synthetic", "description": f"embedded synthetic shapes ({len(SHAPES)} shape "
                         f"classes × textures), evaluation seed {seed + EVAL_SEED_OFFSET}",
                         "classes": list(SHAPES), "img_size": img_size}
    root = Path(spec).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"--data {spec}: no such folder (give 'synthetic' or an ImageFolder root "
                                "with one sub-folder per class)")
    if not root.is_dir():
        raise AnalyzeError(f"--data {spec} is a file; give 'synthetic' or an ImageFolder root")
    sub = root / "val"
    folder = sub if sub.is_dir() else root
    try:
        dataset = ImageFolderDataset(folder, img_size)
    except ValueError as exc:
        raise AnalyzeError(str(exc)) from exc
    return dataset, {"name": str(root), "description": f"ImageFolder {folder} ({len(dataset)} images, "
                     f"{dataset.num_classes} classes), evaluation transform at {img_size} px",
                     "classes": list(dataset.classes), "img_size": img_size}


# ----------------------------------------------------------------------------- analysis
def tsne_selection(labels: torch.Tensor | None, n: int) -> list[int]:
    """Positions (in analysis order) of the t-SNE images: when labels exist, the first 6 images of
    each of the 3 classes with the most images (ties: first to appear); else the first 18."""
    if labels is None or (labels < 0).any():
        return list(range(min(n, TSNE_IMAGES)))
    per_class = TSNE_IMAGES // TSNE_CLASSES
    members: dict[int, list[int]] = {}
    for pos, c in enumerate(labels[:n].tolist()):
        bucket = members.setdefault(c, [])
        if len(bucket) < per_class:
            bucket.append(pos)
    # the classes with the most images (up to 6), ties broken by first appearance
    classes = sorted(members, key=lambda c: (-len(members[c]), members[c][0]))[:TSNE_CLASSES]
    return sorted(p for c in classes for p in members[c])


def probe_split(labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """Deterministic halves: within each class (in analysis order) alternate train, test, …"""
    train, test = [], []
    seen: dict[int, int] = {}
    for pos, c in enumerate(labels.tolist()):
        k = seen.get(c, 0)
        (train if k % 2 == 0 else test).append(pos)
        seen[c] = k + 1
    return train, test


def attention_queries(grid: Sequence[int]) -> list[tuple[int, int]]:
    """Two query patches: the centre of the grid and the centre of its upper-left quadrant."""
    h, w = grid
    first, second = (h // 2, w // 2), (h // 4, w // 4)
    return [first, second] if second != first else [first]


def _normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    from .augment import to_float

    x = to_float(images)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _finite(obj):
    """JSON-safe copy: numpy/torch scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def analyze_model(model: nn.Module, dataset_or_images, images: int | None = DEFAULT_IMAGES,
                  batch_size: int = DEFAULT_BATCH_SIZE, device: str | torch.device = "auto",
                  out_dir: str | os.PathLike | None = None, *, name: str | None = None,
                  model_info: dict | None = None, data_info: dict | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  spectrum_every: int = 1, tsne: bool = True, probe: bool = True, figures: bool = True) -> dict:
    """Run every analysis that applies to ``model`` on up to ``images`` images; return the metrics.

    ``model``: a timm ViT / BEiT (moved to ``device``; ``"auto"`` = CUDA when available). Run in
    eval mode, restored afterwards. ``dataset_or_images``: a dataset yielding ``(uint8 3×S×S,
    label)`` (:class:`~clvsmim.data.SyntheticSet`, :class:`~clvsmim.data.ImageFolderDataset`, …),
    an image tensor ``N×3×S×S`` (uint8, or float in [0, 1]; no labels), or ``(images, labels)``;
    ``S`` must be the model's input size. Images are normalised with ``mean``/``std`` (ImageNet
    by default). ``images=None`` analyses all of them. With ``out_dir``, writes
    ``out_dir/metrics.json`` and the figures. Returns the dict written to ``metrics.json``::

        format, model {name, class, geometry, img_size, num_params, …}, data {…}, num_images,
        device, timing {…} (seconds), depth_convention,
        attention_distance {per_head L×H, mean L}, nmi {…}, fourier {delta_log_amplitude L+1,
        curves}, token_cosine L+1, svd_spectrum (L+1)×R, svd_num_images        # analysis.analyze
        attention_maps {block, image_index, queries, mean Q×h×w, per_head Q×H×h×w}
        tsne {depth, image_positions, labels, perplexity, image_cluster_score, points} | {skipped}
        probe {pooling, accuracy L+1, train/test sizes, budget, chance} | {skipped}
    """
    from .analysis import image_cluster_score, linear_probe_per_layer, pooled_features, query_attention_map, token_tsne
    from .analysis.pipeline import batch_sums, model_geometry, spectrum_selection, summarise
    from .data import get_batch
    from .models import capture
    from .report import resolve_device

    t_start = time.perf_counter()
    check_backbone(model)
    if batch_size < 1:
        raise AnalyzeError(f"batch size must be >= 1, found {batch_size}")
    if images is not None and images < 1:
        raise AnalyzeError(f"the number of images must be >= 1, found {images}")
    spectrum_selection(0, 0, spectrum_every)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dataset = _as_dataset(dataset_or_images)
    geo = model_geometry(model)
    size = input_size(model)
    mean = list(mean or (model_info or {}).get("mean") or IMAGENET_MEAN)
    std = list(std or (model_info or {}).get("std") or IMAGENET_STD)
    all_labels = dataset_labels(dataset)
    order = analysis_order(all_labels, len(dataset), len(dataset) if images is None else images)
    n = len(order)
    if n == 0:
        raise AnalyzeError("the data holds no images")
    labels = None if all_labels is None else all_labels[order]
    tsne_positions = tsne_selection(labels, n) if tsne else []
    tsne_lookup = {p: i for i, p in enumerate(tsne_positions)}
    p = geo.num_prefix_tokens

    model.to(dev)
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    pooled: list[list[torch.Tensor]] = []
    tsne_tokens: list[torch.Tensor | None] = [None] * len(tsne_positions)
    seen_labels: list[torch.Tensor] = []
    attention_maps: dict[str, Any] | None = None
    first_image: torch.Tensor | None = None
    t_forward = time.perf_counter()
    try:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            batch, batch_labels = get_batch(dataset, idx)
            if tuple(batch.shape[-2:]) != (size, size):
                raise AnalyzeError(f"images are {tuple(batch.shape[-2:])} px but the model takes {size}×{size}; "
                                   f"render / transform the data at the model's input size")
            seen_labels.append(batch_labels.cpu())
            captured = capture(model, _normalise(batch.to(dev), mean, std))
            if len(captured.attentions) != geo.depth or len(captured.hidden_states) != geo.depth + 1:
                raise RuntimeError(f"capture returned {len(captured.attentions)} attention maps and "
                                   f"{len(captured.hidden_states)} hidden states for a depth-{geo.depth} model")
            for key, (value, count) in batch_sums(captured, geo, start, spectrum_every).items():
                sums[key] = sums[key] + value if key in sums else value
                counts[key] = counts.get(key, 0) + count
            if probe:
                feats = pooled_features(captured.hidden_states, PROBE_POOLING, p)
                pooled = pooled or [[] for _ in feats]
                for bucket, f in zip(pooled, feats):
                    bucket.append(f.float().cpu())
            last = captured.hidden_states[-1]
            for j in range(len(idx)):
                if start + j in tsne_lookup:
                    tsne_tokens[tsne_lookup[start + j]] = last[j].float().cpu()
            if start == 0:
                first_image = batch[0].cpu()
                queries = attention_queries(geo.grid)
                attn = captured.attentions[-1][:1]
                maps = torch.stack([query_attention_map(attn, q, p)[0] for q in queries]).double().cpu()  # Q×H×h×w
                attention_maps = {"block": geo.depth, "image_index": int(order[0]),
                                  "queries": [list(q) for q in queries],
                                  "mean": maps.mean(1).tolist(), "per_head": maps.tolist()}
            del captured
    finally:
        model.train(was_training)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    timing = {"forward_s": time.perf_counter() - t_forward}
    means = {key: value / counts[key] for key, value in sums.items()}
    result = summarise(means, geo, n, counts.get("svd_spectrum", 0))

    # labels as seen by the model (datasets without a .labels attribute report them per item)
    batch_labels_all = torch.cat(seen_labels)
    if labels is None and (batch_labels_all >= 0).all() and len(batch_labels_all):
        labels = batch_labels_all

    t0 = time.perf_counter()
    result["tsne"] = _tsne(tsne_tokens, tsne_positions, labels, p, token_tsne, image_cluster_score, geo.depth) \
        if tsne else {"skipped": "disabled"}
    timing["tsne_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result["probe"] = _probe(pooled, labels, linear_probe_per_layer) if probe else {"skipped": "disabled"}
    timing["probe_s"] = time.perf_counter() - t0
    result["attention_maps"] = attention_maps

    name = name or type(model).__name__
    info = dict(model_info or {})
    info.pop("mean", None), info.pop("std", None)
    metrics = {
        "format": METRICS_FORMAT,
        "model": {"name": name, "class": type(model).__name__, **info,
                  "geometry": {"patch_size": geo.patch_size, "grid": list(geo.grid),
                               "num_prefix_tokens": geo.num_prefix_tokens, "depth": geo.depth,
                               "num_heads": geo.num_heads, "embed_dim": geo.embed_dim},
                  "img_size": size, "num_params": int(sum(t.numel() for t in model.parameters()))},
        "data": {**(data_info or {"name": type(dataset).__name__}), "num_images": n,
                 "selection": "round-robin over classes" if all_labels is not None else "first images",
                 "labelled": labels is not None, "mean": mean, "std": std},
        "num_images": n,
        "device": str(dev),
        "depth_convention": "token metrics (fourier, token_cosine, svd_spectrum, probe) have L+1 entries: 0 = patch "
                            "embedding output, l = output of block l; attention metrics have L entries: entry l-1 = block l",
        **result,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        written = write_figures(metrics, out, first_image) if figures else []
        timing["figures_s"] = time.perf_counter() - t0
        metrics["figures"] = [f"{f}.png" for f in written]
    timing["total_s"] = time.perf_counter() - t_start
    metrics["timing"] = timing
    metrics = _finite(metrics)
    if out_dir is not None:
        path = Path(out_dir) / "metrics.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(metrics, indent=1))
        os.replace(tmp, path)
    return metrics


def _tsne_threads():
    """Limit scikit-learn's OpenMP / BLAS pools to one thread on small machines (≤ 4 cores).

    Barnes-Hut t-SNE on a few thousand points is dominated by OpenMP synchronisation when the
    cores are shared (torch's own pool spinning, other processes): measured 4× slower with 2
    threads than with 1 on a busy 2-core machine. Larger machines keep the library default.
    """
    if (os.cpu_count() or 1) > 4:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on it, but do not fail over a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _tsne(tokens, positions, labels, prefix, token_tsne, image_cluster_score, depth) -> dict:
    if len(positions) < 2:
        return {"skipped": f"needs at least 2 images, found {len(positions)}"}
    z = torch.stack(tokens)[:, prefix:]  # (k, N, C): prefix already dropped
    ids = torch.arange(len(positions))
    n_tokens = z.shape[0] * z.shape[1]
    perplexity = float(min(TSNE_PERPLEXITY, max(1.0, (n_tokens - 1) / 3)))
    with _tsne_threads():
        points = token_tsne(z, ids, perplexity=perplexity, seed=0, num_prefix_tokens=0)
    point_labels = None if labels is None else labels[positions].tolist()
    return {
        "depth": depth, "image_positions": positions, "labels": point_labels,
        "tokens_per_image": int(z.shape[1]), "perplexity": perplexity,
        "image_cluster_score": image_cluster_score(z, ids, num_prefix_tokens=0),
        "points": np.round(points, 6).tolist(),
    }


def _probe(pooled, labels, linear_probe_per_layer) -> dict:
    if labels is None or (labels < 0).any():
        return {"skipped": "the data has no labels"}
    if not pooled:
        return {"skipped": "disabled"}
    classes = labels.unique()
    if len(classes) < 2:
        return {"skipped": f"needs at least 2 classes, found {len(classes)}"}
    train, test = probe_split(labels)
    if len(labels[train].unique()) < 2 or not test:
        return {"skipped": f"too few images per class for a train/test split ({len(labels)} images, "
                           f"{len(classes)} classes)"}
    features = [torch.cat(bucket) for bucket in pooled]
    tr, te = torch.tensor(train), torch.tensor(test)
    # relabel to 0..K-1 so the probe has exactly the classes present
    remap = {int(c): i for i, c in enumerate(classes.tolist())}
    y = torch.tensor([remap[int(c)] for c in labels.tolist()])
    from .analysis.tokens import single_threaded

    # small full-batch problems: torch's intra-op threads only add synchronisation overhead
    with single_threaded(torch.device("cpu")):
        acc = linear_probe_per_layer([f[tr] for f in features], y[tr], [f[te] for f in features], y[te],
                                     steps=PROBE_STEPS, lr=PROBE_LR, seed=0, weight_decay=PROBE_WEIGHT_DECAY)
    return {"pooling": PROBE_POOLING, "accuracy": acc, "num_train": len(train), "num_test": len(test),
            "num_classes": len(classes), "chance": 1.0 / len(classes),
            "split": "within each class, alternate train / test in analysis order",
            "budget": {"steps": PROBE_STEPS, "lr": PROBE_LR, "weight_decay": PROBE_WEIGHT_DECAY,
                       "optimizer": "AdamW, cosine lr, full batch, standardised features, zero init"}}


# ----------------------------------------------------------------------------- figures
def _line_style(name: str) -> dict:
    from .figures import plot_kwargs

    try:
        kw = plot_kwargs(name)
    except KeyError:
        kw = {"color": "#333333", "marker": "o", "label": name, "linestyle": "-"}
    kw["label"] = name
    return kw


def _per_head_figure(per_head, mean, name, ylabel, title):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    per_head = np.asarray(per_head, dtype=float)
    blocks = np.arange(1, len(per_head) + 1)
    kw = _line_style(name)
    for h in range(per_head.shape[1]):
        ax.scatter(blocks, per_head[:, h], s=10, color=kw["color"], alpha=0.3, linewidths=0,
                   label="heads" if h == 0 else None)
    ax.plot(blocks, mean, **{**kw, "label": f"{name} (mean over heads)"})
    ax.set_xlabel("depth (block)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(blocks)
    ax.legend()
    return fig


def plot_attention_distance(metrics: dict):
    """Mean attention distance (pixels) per block: heads as dots, mean as a line."""
    d = metrics["attention_distance"]
    return _per_head_figure(d["per_head"], d["mean"], metrics["model"]["name"], "attention distance (px)",
                            "Mean attention distance")


def plot_nmi(metrics: dict):
    """Normalised mutual information of attention per block (low = collapsed, query-independent)."""
    d = metrics["nmi"]
    return _per_head_figure(d["per_head"], d["mean"], metrics["model"]["name"], "NMI", "NMI of attention")


def _depth_colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def plot_fourier(metrics: dict):
    """Left: Δ log amplitude curves (centre → corner) per depth; right: the highest frequency per depth."""
    from matplotlib.figure import Figure

    curves = np.asarray(metrics["fourier"]["curves"], dtype=float)
    fig = Figure(figsize=(9.0, 3.6))
    left, right = fig.subplots(1, 2)
    freqs = np.linspace(0, 1, curves.shape[1])
    for depth, (curve, colour) in enumerate(zip(curves, _depth_colours(len(curves)))):
        left.plot(freqs, curve, color=colour, marker=None, label=f"{depth}" if depth in (0, len(curves) - 1) else None)
    left.set_xlabel("frequency (0 → π)")
    left.set_ylabel("Δ log amplitude")
    left.set_title("Fourier curves (colour = depth)")
    left.legend(title="depth")
    depths = np.arange(len(curves))
    right.plot(depths, metrics["fourier"]["delta_log_amplitude"], **_line_style(metrics["model"]["name"]))
    right.set_xlabel("depth")
    right.set_ylabel("Δ log amplitude at π")
    right.set_title("Highest frequency")
    right.legend()
    return fig


def plot_token_cosine(metrics: dict):
    """Mean cosine similarity between the patch tokens of one image, per depth."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    ax.plot(np.arange(len(metrics["token_cosine"])), metrics["token_cosine"], **_line_style(metrics["model"]["name"]))
    ax.set_xlabel("depth")
    ax.set_ylabel("token cosine similarity")
    ax.set_title("Token homogeneity within an image")
    ax.legend()
    return fig


def plot_svd_spectrum(metrics: dict):
    """Normalised singular values of each image's token matrix, per depth (log scale)."""
    from matplotlib.figure import Figure

    spectra = np.asarray(metrics["svd_spectrum"], dtype=float)
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    ranks = np.arange(1, spectra.shape[1] + 1)
    for depth, (values, colour) in enumerate(zip(spectra, _depth_colours(len(spectra)))):
        # centring makes the last value of an N×C (N ≤ C) matrix zero: leave out values at round-off level
        ax.plot(ranks, np.where(values > 1e-6, values, np.nan), color=colour, marker=None,
                label=f"depth {depth}" if depth in (0, len(spectra) - 1) else None)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("σ / σ₁")
    ax.set_title(f"Token singular values ({metrics['model']['name']})")
    ax.legend()
    return fig


def plot_attention_maps(metrics: dict, image: torch.Tensor | None, max_heads: int = 6):
    """Per query patch: the image with the query marked, the head-mean map and the first heads."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .augment import to_float

    maps = metrics["attention_maps"]
    per_head = np.asarray(maps["per_head"], dtype=float)  # Q×H×h×w
    queries = maps["queries"]
    heads = min(per_head.shape[1], max_heads)
    cols = 2 + heads
    fig = Figure(figsize=(1.6 * cols, 1.7 * len(queries)))
    axes = np.asarray(fig.subplots(len(queries), cols, squeeze=False))
    h, w = per_head.shape[-2:]
    for qi, (row, col) in enumerate(queries):
        ax = axes[qi, 0]
        if image is not None:
            img = to_float(image.unsqueeze(0))[0].permute(1, 2, 0).numpy()
            ax.imshow(img, extent=(0, w, h, 0))
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        ax.set_title(f"query ({row}, {col})", fontsize=8)
        panels = [("mean", np.asarray(maps["mean"][qi]))] + [(f"head {k}", per_head[qi, k]) for k in range(heads)]
        for ax, (label, m) in zip(axes[qi, 1:], panels):
            ax.imshow(m, cmap="inferno")
            ax.plot([col], [row], marker="x", color="cyan", markersize=5)
            ax.set_title(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(f"{metrics['model']['name']}: attention of two query patches, block {maps['block']}", fontsize=9)
    return fig


def plot_tsne(metrics: dict):
    """t-SNE of the last-depth patch tokens (colour = class, or image when unlabelled)."""
    from matplotlib.figure import Figure

    t = metrics["tsne"]
    points = np.asarray(t["points"], dtype=float)
    per_image = t["tokens_per_image"]
    image_of_point = np.repeat(np.arange(len(t["image_positions"])), per_image)
    groups = np.asarray(t["labels"])[image_of_point] if t["labels"] is not None else image_of_point
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    import matplotlib

    names = metrics.get("data", {}).get("classes") or []
    cmap = matplotlib.colormaps["tab10" if len(np.unique(groups)) <= 10 else "tab20"]
    for i, g in enumerate(np.unique(groups)):
        sel = groups == g
        if t["labels"] is None:
            label = f"image {t['image_positions'][g]}"
        else:
            label = names[g] if 0 <= g < len(names) else f"class {g}"
        ax.scatter(points[sel, 0], points[sel, 1], s=4, color=cmap(i % cmap.N), alpha=0.7, linewidths=0, label=label)
    score = t["image_cluster_score"]
    ax.set_title(f"Token t-SNE, depth {t['depth']} (image cluster score {score:.2f})" if score is not None
                 else f"Token t-SNE, depth {t['depth']}", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=3, loc="best")
    return fig


def plot_probe(metrics: dict):
    """Linear-probe test accuracy of every depth, with chance level."""
    from matplotlib.figure import Figure

    pr = metrics["probe"]
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    acc = 100 * np.asarray(pr["accuracy"], dtype=float)
    ax.plot(np.arange(len(acc)), acc, **_line_style(metrics["model"]["name"]))
    ax.axhline(100 * pr["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("depth")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Linear probe per depth ({pr['pooling']}-pooled tokens, train/test {pr['num_train']}/"
                 f"{pr['num_test']} images)",
                 fontsize=9)
    ax.legend()
    return fig


def write_figures(metrics: dict, out: Path, first_image: torch.Tensor | None = None) -> list[str]:
    """Save every figure that applies as ``out/<name>.png``; return the names written."""
    import matplotlib as mpl

    from .figures import PNG_DPI, use_style

    plots = {
        "attention_distance": lambda: plot_attention_distance(metrics),
        "nmi": lambda: plot_nmi(metrics),
        "fourier": lambda: plot_fourier(metrics),
        "token_cosine": lambda: plot_token_cosine(metrics),
        "svd_spectrum": lambda: plot_svd_spectrum(metrics),
        "attention_maps": (lambda: plot_attention_maps(metrics, first_image)) if metrics.get("attention_maps") else None,
        "tsne": (lambda: plot_tsne(metrics)) if "points" in metrics.get("tsne", {}) else None,
        "probe": (lambda: plot_probe(metrics)) if "accuracy" in metrics.get("probe", {}) else None,
    }
    written = []
    with mpl.rc_context():
        use_style()
        for key in FIGURES:
            make = plots[key]
            if make is None:
                continue
            fig = make()
            fig.savefig(out / f"{key}.png", dpi=PNG_DPI, bbox_inches="tight")
            written.append(key)
    return written


# ----------------------------------------------------------------------------- CLI
def _summary(metrics: dict) -> str:
    L = metrics["model"]["geometry"]["depth"]
    probe = metrics["probe"].get("accuracy")
    lines = [f"{'depth':>5}  {'att.dist(px)':>12}  {'NMI':>6}  {'Δlogamp@π':>10}  {'tok.cos':>7}  {'probe':>6}"]
    for d in range(L + 1):
        dist = "" if d == 0 else f"{metrics['attention_distance']['mean'][d - 1]:.1f}"
        nmi = "" if d == 0 else f"{metrics['nmi']['mean'][d - 1]:.3f}"
        fourier = metrics["fourier"]["delta_log_amplitude"][d]
        cos = metrics["token_cosine"][d]
        acc = f"{100 * probe[d]:.0f}%" if probe else ""
        lines.append(f"{d:>5}  {dist:>12}  {nmi:>6}  {'' if fourier is None else f'{fourier:.3f}':>10}  "
                     f"{'' if cos is None else f'{cos:.3f}':>7}  {acc:>6}")
    return "\n".join(lines)


def cmd_analyze(args) -> int:
    from .report import resolve_device
    from .weights import CheckpointError, DownloadError

    try:
        try:
            dev = resolve_device(args.device)
        except RuntimeError as exc:
            raise AnalyzeError(f"--device {args.device}: {exc}") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise AnalyzeError(f"--device {args.device}: CUDA is not available here; use --device auto or cpu")
        if args.images < 1 or args.batch_size < 1:
            raise AnalyzeError(f"--images and --batch-size must be >= 1, found {args.images} and {args.batch_size}")
        model, info = resolve_model(args.model, random_init=args.random_init, allow_pickle=args.allow_pickle,
                                    img_size=args.img_size, seed=args.seed)
        size = input_size(model)
        if args.img_size and args.img_size != size:
            raise AnalyzeError(f"--img-size {args.img_size}: {args.model} takes {size}×{size} images "
                               "(--img-size only changes the resolution of timm:NAME models)")
        dataset, data_info = open_analysis_data(args.data, size, args.images, seed=args.seed)
        out = Path(args.out) if args.out else Path("_build") / "analyze" / _slug(args.model)
        metrics = analyze_model(model, dataset, images=args.images, batch_size=args.batch_size, device=dev,
                                out_dir=out, name=args.model, model_info=info, data_info=data_info,
                                spectrum_every=args.spectrum_every, figures=not args.no_figures)
        if getattr(args, "explorer", False):
            from .explorer.build import analyze_explorer

            page, folder = analyze_explorer(model, dataset, out, args.model, info, dev, args.images, args.batch_size,
                                            data_info.get("classes"))
    except (ValueError, CheckpointError, DownloadError, FileNotFoundError, KeyError) as exc:  # AnalyzeError too
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"clvsmim analyze: error: {msg}", file=sys.stderr)
        return 2
    geo = metrics["model"]["geometry"]
    print(f"{args.model}: {metrics['model']['class']}, depth {geo['depth']}, grid {geo['grid'][0]}×{geo['grid'][1]}, "
          f"{metrics['model']['num_params'] / 1e6:.1f} M params; {metrics['num_images']} images on {metrics['device']} "
          f"in {metrics['timing']['total_s']:.1f} s")
    print(_summary(metrics))
    if "image_cluster_score" in metrics["tsne"]:
        print(f"image cluster score (last depth, {len(metrics['tsne']['image_positions'])} images): "
              f"{metrics['tsne']['image_cluster_score']:.3f}")
    for key in ("tsne", "probe"):
        if "skipped" in metrics[key]:
            print(f"{key} skipped: {metrics[key]['skipped']}")
    print(f"wrote {out / 'metrics.json'} and {len(metrics.get('figures', []))} figure(s) in {out}")
    if getattr(args, "explorer", False):
        print(f"attention explorer: {page} (data: {folder.folder}, {folder.page_bytes / 1e6:.2f} MB; opens from file://)")
    return 0


def add_cli(subparsers) -> None:
    """Register ``clvsmim analyze``."""
    p = subparsers.add_parser(
        "analyze", help="run every analysis of the paper on any ViT / BEiT (registry name, timm:NAME or checkpoint)",
        description="Run every analysis of the paper (attention distance, NMI, Fourier, token similarity, SVD "
                    "spectrum, attention maps, t-SNE, per-layer linear probe) on any timm ViT / BEiT and write "
                    "DIR/metrics.json plus one figure per analysis.")
    p.add_argument("--model", required=True,
                   help="registry name (clvsmim weights list), timm:NAME, or the path of a checkpoint")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or an ImageFolder root")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images to analyse (default {DEFAULT_IMAGES})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"images per forward pass; bounds memory (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--img-size", type=int, default=None,
                   help="input resolution of a timm:NAME model (default: the model's own); other models must match")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda[:i]")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints holding pickled objects (e.g. SimMIM's config); only for trusted files")
    p.add_argument("--random-init", action="store_true",
                   help="same architecture, random weights (no download): a control")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init and of the synthetic data")
    p.add_argument("--spectrum-every", type=int, default=1,
                   help="singular-value spectra on every k-th image only (the costliest metric on CPU)")
    p.add_argument("--no-figures", action="store_true", help="write metrics.json only")
    p.add_argument("--explorer", action="store_true",
                   help="also write DIR/explorer.html + DIR/explorer/: the interactive attention explorer (offline)")
    p.add_argument("--out", default=None, help="output folder (default _build/analyze/<model>)")
    p.set_defaults(func=cmd_analyze)
