"""Figures of the *background* chapter: F0 (CL vs MIM overview drawn with the project's real
augmentation and masks) and A-dataset (the embedded shape/texture data)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import ConnectionPatch

from clvsmim.book.figures import FAMILY_COLOR, bare_axes

__all__ = ["plot_overview", "plot_dataset", "flow"]

_ATTRACT = "#2ca02c"
_REPEL = "#d62728"


def _show(ax, image, title: str | None = None, grid: int | None = None) -> None:
    ax.imshow(np.clip(np.asarray(image, dtype=float), 0, 1), interpolation="nearest")
    if grid:  # patch grid lines
        size = np.asarray(image).shape[0]
        for k in range(1, grid):
            pos = k * size / grid - 0.5
            ax.axhline(pos, color="white", lw=0.4, alpha=0.6)
            ax.axvline(pos, color="white", lw=0.4, alpha=0.6)
    bare_axes(ax)
    if title:
        ax.set_title(title, fontsize=9)


def flow(ax, y: float, labels: Sequence[str], color: str, x0: float = 0.02, x1: float = 0.98,
         fontsize: float = 8) -> list[Any]:
    """Boxes with ``labels`` evenly spaced on the line ``y`` of an axes (axes coordinates),
    joined by arrows; returns the text artists."""
    n = len(labels)
    xs = np.linspace(x0, x1, 2 * n + 1)[1::2]
    texts = []
    for i, (x, label) in enumerate(zip(xs, labels)):
        texts.append(ax.text(x, y, label, ha="center", va="center", fontsize=fontsize, transform=ax.transAxes,
                             bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=color, lw=1.2)))
        if i:
            dx = xs[1] - xs[0]
            ax.annotate("", xy=(x - 0.32 * dx, y), xytext=(xs[i - 1] + 0.32 * dx, y),
                        xycoords="axes fraction", textcoords="axes fraction",
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.2))
    return texts


def _connect(fig, ax_a, ax_b, color: str, style: str = "arc3,rad=-0.35", ls: str = "-", xy_a=(0.5, 1.0),
             xy_b=(0.5, 1.0)) -> None:
    con = ConnectionPatch(xyA=xy_a, coordsA=ax_a.transAxes, xyB=xy_b, coordsB=ax_b.transAxes,
                          arrowstyle="<->", color=color, lw=1.3, ls=ls, connectionstyle=style, zorder=5)
    fig.add_artist(con)


def plot_overview(data: Mapping[str, Any]):
    """F0: per image (rows) the image, the two MoCo v3 views (attracted to each other,
    repelled from the other images' views), the SimMIM block mask and the MAE random mask
    (masked patches grey); below, the two objectives as flow diagrams. ``data`` comes from
    :func:`clvsmim.book.chapters.background.overview_data`."""
    rec = data["record"]
    n = len(data["images"])
    grid = rec["img_size"] // rec["patch_size"]
    fig = plt.figure(figsize=(12, 2.0 * n + 3.0))
    gs = fig.add_gridspec(n + 1, 6, width_ratios=[1, 1, 1, 0.35, 1, 1],
                          height_ratios=[1] * n + [1.6], hspace=0.4, wspace=0.12)
    rows = []
    for i in range(n):
        labels = rec["labels"][i]
        name = " / ".join(str(v) for v in labels.values())
        axes = [fig.add_subplot(gs[i, c]) for c in (0, 1, 2, 4, 5)]
        first = i == 0
        _show(axes[0], data["images"][i], f"image {rec['image_ids'][i]}: {name}")
        _show(axes[1], data["view1"][i], "view 1 (blur)" if first else None)
        _show(axes[2], data["view2"][i], "view 2 (solarize p=.2)" if first else None)
        sim_ratio = rec["simmim"]["realised_ratio"][i]
        mae_ratio = rec["mae"]["realised_ratio"][i]
        _show(axes[3], data["simmim"][i], f"SimMIM block mask ({sim_ratio:.0%})", grid)
        _show(axes[4], data["mae"][i], f"MAE random mask ({mae_ratio:.0%})", grid)
        rows.append(axes)
    for i, axes in enumerate(rows):  # attract the two views of an image, repel other images' views
        _connect(fig, axes[1], axes[2], _ATTRACT, "arc3,rad=0.25", xy_a=(0.5, 0.0), xy_b=(0.5, 0.0))
        if i + 1 < n:
            _connect(fig, axes[2], rows[i + 1][2], _REPEL, "arc3,rad=-0.6", ls="--", xy_a=(1.0, 0.5),
                     xy_b=(1.0, 0.5))

    fig.legend(handles=[Line2D([], [], color=_ATTRACT, label="attract: two views of one image"),
                        Line2D([], [], color=_REPEL, ls="--", label="repel: views of different images")],
               loc="lower center", bbox_to_anchor=(0.3, rows[0][0].get_position().y1 + 0.03), ncol=2, fontsize=8)

    ax = fig.add_subplot(gs[n, 0:3])
    ax.axis("off")
    cl = FAMILY_COLOR["CL"]
    ax.text(0.5, 0.9, "(a) contrastive learning: MoCo v3 — image level", color=cl, fontsize=10, ha="center",
            va="center", transform=ax.transAxes)
    flow(ax, 0.66, ["view 1", "ViT", "projector\n+ predictor", "q"], cl)
    flow(ax, 0.36, ["view 2", "momentum\nViT", "momentum\nprojector", "k"], cl)
    ax.text(0.5, 0.04, f"InfoNCE (τ = {rec['moco'].get('tau', 0.2):g}): attract q to the k of the same image,\n"
            "repel it from the k of every other image",
            ha="center", va="center", fontsize=8, transform=ax.transAxes, color=cl)

    ax = fig.add_subplot(gs[n, 3:6])
    ax.axis("off")
    mim = FAMILY_COLOR["MIM"]
    ax.text(0.5, 0.9, "(b) masked image modeling — token level", color=mim, fontsize=10, ha="center",
            va="center", transform=ax.transAxes)
    flow(ax, 0.66, ["masked\npatches", "ViT +\nmask tokens", "linear\nhead", "ℓ1 on\nmasked px"], mim, fontsize=8)
    flow(ax, 0.36, ["visible\npatches", "ViT\nencoder", "decoder +\nmask tokens", "MSE on\nmasked px"], mim,
         fontsize=8)
    ax.text(0.5, 0.04, "top: SimMIM (block mask); bottom: MAE (random mask,\nencoder sees visible tokens only)",
            ha="center", va="center", fontsize=8, transform=ax.transAxes, color=mim)
    return fig


def plot_dataset(samples: Mapping[str, Any]):
    """A-dataset: per shape class (columns) the aligned rendering, the cue-conflict rendering
    of the same scene and its foreground mask (rows); data of
    :func:`clvsmim.book.chapters.background.dataset_samples`."""
    rec = samples["record"]
    k = len(rec["indices"])
    fig, axes = plt.subplots(3, k, figsize=(1.45 * k + 0.8, 5.0), squeeze=False)
    for j in range(k):
        a, c = rec["aligned"][j], rec["conflict"][j]
        _show(axes[0, j], samples["aligned"][j], f"{a['shape']}\n{a['texture']}")
        _show(axes[1, j], samples["conflict"][j], f"{c['shape']}\n{c['texture']}")
        _show(axes[2, j], np.repeat(np.asarray(samples["mask"][j], dtype=float)[..., None], 3, -1))
    for row, label in enumerate(("aligned\n(shape = texture)", "cue conflict", "foreground")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(f"the embedded data: {rec['num_shapes']} shapes × {rec['num_textures']} textures, "
                 f"{rec['img_size']} px", fontsize=10)
    fig.tight_layout()
    return fig
