"""F2's data: the attention maps of two query patches of one analysis image, per model.

The image and the two queries (one on the object, one on the background) are chosen from the
foreground masks of the synthetic data (:func:`pick_image`, :func:`pick_queries`; the centre and
a corner patch for an image folder); :func:`query_attention_data` measures every model in one
:func:`clvsmim.analysis.analyze` pass per model (:class:`clvsmim.analysis.QueryMaps`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from clvsmim.analysis import QueryMaps, analyze
from clvsmim.book import report
from clvsmim.data import open_dataset
from clvsmim.data.augment import normalize
from clvsmim.methods import ModelRef
from clvsmim.models import geometry

__all__ = ["foreground_fractions", "pick_image", "pick_queries", "query_attention_maps", "map_cosine", "local_mass",
           "query_attention_data", "query_attention_record"]


def foreground_fractions(profile, n: int, patch_size: int):
    """Foreground fraction per patch ``n×h×w`` (numpy) of the first ``n`` evaluation images, or
    ``None`` when the data has no masks (an image folder)."""
    dataset = open_dataset(profile.data, "eval")
    if not hasattr(dataset, "token_targets") or dataset.img_size % patch_size:
        return None
    return dataset.token_targets(patch_size)[:n].numpy()


def pick_image(fractions: np.ndarray, target: float = 0.35) -> int:
    """Index of the image whose object covers a fraction of the patches closest to ``target``,
    among those with at least one mostly-foreground patch (> 0.5) and one pure-background patch."""
    fractions = np.asarray(fractions, dtype=float)
    best, best_score = 0, math.inf
    for i, f in enumerate(fractions):
        if not ((f > 0.5).any() and (f == 0).any()):
            continue
        score = abs(float((f > 0.5).mean()) - target)
        if score < best_score:
            best, best_score = i, score
    return best


def pick_queries(fraction: np.ndarray | None, grid: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
    """Two query patches ``(row, col)``: ``object`` (most foreground; ties: nearest the object's
    centroid) and ``background`` (no foreground; farthest from the centroid).

    ``fraction`` is the foreground fraction per patch ``h×w``. Without masks (``None``) the
    queries are the centre patch and the top-left corner patch of ``grid``.
    """
    if fraction is None:
        if grid is None:
            raise ValueError("pick_queries needs the foreground fractions or the grid size")
        h, w = grid
        return {"object": (h // 2, w // 2), "background": (0, 0)}
    f = np.asarray(fraction, dtype=float)
    h, w = f.shape
    rows, cols = np.mgrid[0:h, 0:w]
    weight = f.sum()
    if weight <= 0:
        return pick_queries(None, (h, w))
    cy, cx = float((rows * f).sum() / weight), float((cols * f).sum() / weight)
    dist = np.hypot(rows - cy, cols - cx)
    top = f.max()
    inside = np.argwhere(f >= top - 1e-9)
    obj = min(map(tuple, inside), key=lambda rc: (dist[rc], rc))
    low = f.min()
    outside = np.argwhere(f <= low + 1e-9)
    bg = max(map(tuple, outside), key=lambda rc: (dist[rc], -rc[0], -rc[1]))
    return {"object": (int(obj[0]), int(obj[1])), "background": (int(bg[0]), int(bg[1]))}


def query_attention_maps(model, image_normalised, queries: Mapping[str, tuple[int, int]],
                         block: int = -1) -> dict[str, np.ndarray]:
    """Head-averaged attention map ``h×w`` of each query patch at ``block`` (1-based; -1 = last),
    for one normalised image ``1×3×H×W``."""

    collector = QueryMaps(list(queries.values()), block=block)
    maps = analyze(model, [image_normalised], {"maps": collector}, device=image_normalised.device)["maps"]
    return {q: m.mean(0).float().numpy() for q, m in zip(queries, maps)}


def map_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two attention maps (1 = the same map: collapse)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


def local_mass(attn_map: np.ndarray, query: tuple[int, int], radius: int = 1) -> float:
    """Fraction of a query's attention on the patches within ``radius`` (Chebyshev) of itself."""
    m = np.asarray(attn_map, float)
    r, c = query
    window = m[max(0, r - radius):r + radius + 1, max(0, c - radius):c + radius + 1]
    total = m.sum()
    return float(window.sum() / total) if total > 0 else 0.0


def query_attention_data(refs: Sequence[ModelRef], device: str = "auto", image_index: int | None = None,
                         block: int = -1) -> dict[str, Any]:
    """Everything F2 shows, for the models ``refs`` (one profile and source): one analysis
    image, two query patches, each model's head-averaged
    attention map of both queries at ``block`` (default: the last), and per map its local
    mass; per model the cosine similarity of the two maps. JSON-able except ``image``
    (``H×W×3`` float in [0, 1])."""

    dev = report.resolve_device(device)
    profile = refs[0].profile
    models = {ref.name: report.backbone(ref, dev) for ref in refs}
    geo = geometry(next(iter(models.values())))
    n = profile.eval.num_analysis_images
    images, labels = report.analysis_images(profile, n)
    fractions = foreground_fractions(profile, n, geo.patch_size)
    if image_index is None:
        image_index = pick_image(fractions) if fractions is not None else 0
    queries = pick_queries(None if fractions is None else fractions[image_index], geo.grid)
    x = normalize(images[image_index:image_index + 1].to(dev))
    maps, stats = {}, {}
    for name, model in models.items():
        m = query_attention_maps(model, x, queries, block)
        maps[name] = {q: v.tolist() for q, v in m.items()}
        stats[name] = {"cosine_between_queries": map_cosine(m["object"], m["background"]),
                       "local_mass": {q: local_mass(m[q], queries[q]) for q in queries}}
    depth = geo.depth
    return {"image": images[image_index].permute(1, 2, 0).float().div(255).numpy(),
            "image_index": int(image_index), "label": int(labels[image_index]),
            "block": depth if block == -1 else int(block), "patch_size": geo.patch_size,
            "grid": list(geo.grid), "queries": {q: list(rc) for q, rc in queries.items()},
            "query_foreground": (None if fractions is None else
                                 {q: float(fractions[image_index][rc]) for q, rc in queries.items()}),
            "maps": maps, "stats": stats, "models": list(models), "source": refs[0].source}


def query_attention_record(f2: Mapping[str, Any]) -> dict[str, Any]:
    """F2's figure record: :func:`query_attention_data` without the image (JSON-able)."""
    return {k: v for k, v in f2.items() if k != "image"}
