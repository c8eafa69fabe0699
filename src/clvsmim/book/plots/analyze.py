"""Figures of ``clvsmim analyze``: one model, every analysis, from its ``metrics.json`` dict.

The attention metrics and the token similarity are drawn by the book's own plots
(:func:`clvsmim.book.plots.behaviour.plot_per_head`, :func:`clvsmim.book.plots.representation.plot_token_similarity`);
the rest are single-model views (Fourier curves by depth, singular values by depth, query
attention maps, token t-SNE, probe accuracy by depth). :func:`write_figures` saves them as PNG.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from clvsmim.data.augment import to_float
from clvsmim.book.figures import PNG_DPI, plot_kwargs, use_style
from clvsmim.book.plots.behaviour import plot_per_head
from clvsmim.book.plots.representation import plot_token_similarity

#: Figures written by :func:`write_figures` (those that apply): ``<name>.png``.
FIGURES = ("attention_distance", "nmi", "fourier", "token_cosine", "svd_spectrum", "attention_maps", "tsne",
           "probe")


def _line_style(name: str) -> dict:
    """The method's style (a neutral one for any other model), labelled with the model's name."""
    return plot_kwargs(name, label=name)


def _per_block(metrics: dict, key: str) -> dict:
    """``{name: {depth: blocks 1..L, mean, per_head}}`` of an attention metric, for :func:`plot_per_head`."""
    d = metrics[key]
    return {metrics["model"]["name"]: {"depth": list(range(1, len(d["mean"]) + 1)), "mean": d["mean"],
                                       "per_head": d["per_head"]}}


def plot_attention_distance(metrics: dict):
    """Mean attention distance (pixels) per block: heads as dots, mean as a line."""
    return plot_per_head(_per_block(metrics, "attention_distance"), "attention distance (px)",
                         title="Mean attention distance")


def plot_nmi(metrics: dict):
    """Normalised mutual information of attention per block (low = collapsed, query-independent)."""
    return plot_per_head(_per_block(metrics, "nmi"), "NMI", title="NMI of attention", ylim_zero=True)


def _depth_colours(n: int):
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def plot_fourier(metrics: dict):
    """Left: Δ log amplitude curves (centre → corner) per depth; right: the highest frequency per depth."""

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
    values = metrics["token_cosine"]
    return plot_token_similarity({"depth": list(range(len(values))), metrics["model"]["name"]: values})


def plot_svd_spectrum(metrics: dict):
    """Normalised singular values of each image's token matrix, per depth (log scale)."""

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

    t = metrics["tsne"]
    points = np.asarray(t["points"], dtype=float)
    per_image = t["tokens_per_image"]
    image_of_point = np.repeat(np.arange(len(t["image_positions"])), per_image)
    groups = np.asarray(t["labels"])[image_of_point] if t["labels"] is not None else image_of_point
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()

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
            plt.close(fig)
            written.append(key)
    return written
