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
figure per analysis, ``DIR/<name>.png`` (:data:`clvsmim.book.plots.analyze.FIGURES`). Python API: :func:`analyze_model`.
``--explorer`` adds ``DIR/explorer.html`` and its data folder ``DIR/explorer/``: the attention
explorer (:mod:`clvsmim.explorer`) of the model on the first images, offline, from ``file://``.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from clvsmim.cache import write_json_atomic
from clvsmim.data import IMAGENET_MEAN, IMAGENET_STD, get_batch
from clvsmim.data.augment import to_float
from clvsmim.device import resolve_device
from clvsmim.models import square_geometry
from clvsmim.book.plots.analyze import FIGURES, write_figures  # noqa: F401  (FIGURES: the figures written)
from clvsmim.analysis.backbones import AnalyzeError, check_backbone, input_size
from clvsmim.analysis.collectors import MetricSums, PatchTokens, PooledFeatures, QueryMaps
from clvsmim.analysis.images import as_dataset, analysis_order, dataset_labels
from clvsmim.analysis.pipeline import analyze, spectrum_selection
from clvsmim.analysis.probe import linear_probe_per_layer
from clvsmim.analysis.tokens import image_cluster_score, single_threaded, token_tsne

#: Bumped when the layout of ``metrics.json`` changes.
METRICS_FORMAT = 1
#: t-SNE: at most this many images, from at most ``TSNE_CLASSES`` classes when labels exist.
TSNE_IMAGES, TSNE_CLASSES, TSNE_PERPLEXITY = 18, 3, 20.0
#: The linear probe's budget, identical for every depth (full batch, AdamW, cosine lr).
PROBE_STEPS, PROBE_LR, PROBE_WEIGHT_DECAY, PROBE_POOLING = 200, 1e-2, 0.0, "mean"
DEFAULT_IMAGES, DEFAULT_BATCH_SIZE = 64, 16


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


def model_slug(name: str) -> str:
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
    t_start = time.perf_counter()
    check_backbone(model)
    if batch_size < 1:
        raise AnalyzeError(f"batch size must be >= 1, found {batch_size}")
    if images is not None and images < 1:
        raise AnalyzeError(f"the number of images must be >= 1, found {images}")
    spectrum_selection(0, 0, spectrum_every)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dataset = as_dataset(dataset_or_images)
    geo = square_geometry(model)
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
    seen_labels: list[torch.Tensor] = []
    first_images: list[torch.Tensor] = []

    def batches():
        """Normalised batches in analysis order; records the labels and the first image."""
        for start in range(0, n, batch_size):
            batch, batch_labels = get_batch(dataset, order[start:start + batch_size])
            if tuple(batch.shape[-2:]) != (size, size):
                raise AnalyzeError(f"images are {tuple(batch.shape[-2:])} px but the model takes {size}×{size}; "
                                   f"render / transform the data at the model's input size")
            seen_labels.append(batch_labels.cpu())
            if start == 0:
                first_images.append(batch[0].cpu())
            yield _normalise(batch.to(dev), mean, std), batch_labels

    queries = attention_queries(geo.grid)
    collectors = {"metrics": MetricSums(spectrum_every), "maps": QueryMaps(queries)}
    if probe:
        collectors["pooled"] = PooledFeatures(PROBE_POOLING)
    if len(tsne_positions):
        collectors["tsne"] = PatchTokens(depths=[-1], positions=tsne_positions)
    model.to(dev)
    t_forward = time.perf_counter()
    collected = analyze(model, batches(), collectors, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    timing = {"forward_s": time.perf_counter() - t_forward}
    result = collected["metrics"]
    maps = collected["maps"]  # Q×H×h×w
    attention_maps = {"block": geo.depth, "image_index": int(order[0]), "queries": [list(q) for q in queries],
                      "mean": maps.mean(1).tolist(), "per_head": maps.tolist()}
    first_image = first_images[0]

    # labels as seen by the model (datasets without a .labels attribute report them per item)
    batch_labels_all = torch.cat(seen_labels)
    if labels is None and (batch_labels_all >= 0).all() and len(batch_labels_all):
        labels = batch_labels_all

    t0 = time.perf_counter()
    result["tsne"] = _tsne(collected.get("tsne", [None])[0], tsne_positions, labels, token_tsne,
                           image_cluster_score, geo.depth) if tsne else {"skipped": "disabled"}
    timing["tsne_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pooled = collected["pooled"][0] if probe else []
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
        write_json_atomic(Path(out_dir) / "metrics.json", metrics, indent=1)
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
        from threadpoolctl import threadpool_limits  # lazy: optional (scikit-learn's dependency), only for t-SNE
    except ImportError:  # scikit-learn depends on it, but do not fail over a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _tsne(z, positions, labels, token_tsne, image_cluster_score, depth) -> dict:
    """t-SNE of the patch tokens ``z`` (k×N×C, prefix dropped) of the images at ``positions``."""
    if len(positions) < 2:
        return {"skipped": f"needs at least 2 images, found {len(positions)}"}
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
    features = pooled
    tr, te = torch.tensor(train), torch.tensor(test)
    # relabel to 0..K-1 so the probe has exactly the classes present
    remap = {int(c): i for i, c in enumerate(classes.tolist())}
    y = torch.tensor([remap[int(c)] for c in labels.tolist()])
    # small full-batch problems: torch's intra-op threads only add synchronisation overhead
    with single_threaded(torch.device("cpu")):
        acc = linear_probe_per_layer([f[tr] for f in features], y[tr], [f[te] for f in features], y[te],
                                     steps=PROBE_STEPS, lr=PROBE_LR, seed=0, weight_decay=PROBE_WEIGHT_DECAY)
    return {"pooling": PROBE_POOLING, "accuracy": acc, "num_train": len(train), "num_test": len(test),
            "num_classes": len(classes), "chance": 1.0 / len(classes),
            "split": "within each class, alternate train / test in analysis order",
            "budget": {"steps": PROBE_STEPS, "lr": PROBE_LR, "weight_decay": PROBE_WEIGHT_DECAY,
                       "optimizer": "AdamW, cosine lr, full batch, standardised features, zero init"}}
