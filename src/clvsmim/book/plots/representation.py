"""Figures of the *representation* chapter: F5 (token t-SNE), F6 (Fourier), token similarity,
singular-value spectra, shape bias and noise robustness. Each function takes plain data
(lists / dicts, as the chapter helpers return them) and returns a matplotlib Figure."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence
import matplotlib.pyplot as plt

import numpy as np

from clvsmim.book.figures import plot_kwargs
from clvsmim.methods import display_name

__all__ = ["plot_position_ablation", "CONTROL_STYLE", "CLASS_COLORS", "model_style", "plot_token_tsne", "plot_depth_curves", "plot_fourier",
           "plot_token_similarity", "plot_svd_spectra", "plot_shape_bias", "plot_noise_robustness"]

#: The random-init control: grey and dashed in every figure.
CONTROL_STYLE = {"color": "#7f7f7f", "linestyle": "--", "marker": "o", "markerfacecolor": "none"}
#: Singular values below this fraction of the largest are numerical zeros (not drawn).
SVD_FLOOR = 1e-6
#: Colours of the (up to six) classes of the t-SNE.
CLASS_COLORS = ("#1b1b8f", "#b8339b", "#f2a23a", "#2ca02c", "#17becf", "#8c564b")


def _display(name: str) -> str:

    return display_name(name)


def model_style(name: str, **override: Any) -> dict[str, Any]:
    """``ax.plot`` keywords of a zoo model: the method's style (:func:`clvsmim.book.figures.plot_kwargs`),
    the control grey and dashed; label = display name."""

    if name.split("-")[0] == "random":
        kw = {**CONTROL_STYLE, "label": _display(name)}
    else:
        kw = plot_kwargs(name.split("-")[0], label=_display(name))
    kw.update(override)
    return kw


def plot_token_tsne(results: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str] | None = None):
    """F5: one panel per model, every patch token a point coloured by its image's class.

    ``results``: ``{name: {"coords": N×2, "label": N, "class_names", "classes", "silhouette_image"}}``.
    """
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results[name]
        xy = np.asarray(r["coords"], dtype=float)
        labels = np.asarray(r["label"])
        for i, (c, cname) in enumerate(zip(r["classes"], r["class_names"])):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=7, color=CLASS_COLORS[i % len(CLASS_COLORS)], alpha=0.85,
                       linewidths=0, label=cname)
        title = (titles or {}).get(name, _display(name))
        ax.set_title(f"{title}\nsilhouette by image {r['silhouette_image']:+.2f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=2.5, title="class")
    fig.tight_layout()
    return fig


def plot_depth_curves(curves: Mapping[str, Sequence[float]], ylabel: str, title: str | None = None,
                      ax=None):
    """Per-depth curves (``curves["depth"]`` on x, one line per other key), method styles."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 3.6))
    depth = list(curves["depth"])
    for name, values in curves.items():
        if name == "depth":
            continue
        ax.plot(depth[:len(values)], values, **model_style(name))
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend()
    return fig if fig is not None else ax.figure


def plot_fourier(curves: Mapping[str, Sequence[float]]):
    """F6: Δ log amplitude of the highest frequency per depth (higher = more high frequencies)."""
    fig = plot_depth_curves(curves, "Δ log amplitude (highest freq.)\nhigher = more high-frequency",
                            "Fourier analysis of the tokens")
    fig.tight_layout()
    return fig


def plot_token_similarity(curves: Mapping[str, Sequence[float]]):
    """Mean cosine similarity between the patch tokens of one image, per depth."""
    fig = plot_depth_curves(curves, "token cosine similarity", "Homogeneity of the tokens of an image")
    fig.tight_layout()
    return fig


def plot_svd_spectra(spectra: Mapping[str, Any]):
    """Normalised singular values (largest = 1, log scale) of one image's tokens at ``spectra["depth"]``."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, values in spectra.items():
        if name == "depth":
            continue
        vals = np.asarray(values, dtype=float)
        keep = vals > SVD_FLOOR * vals.max()  # centring leaves (numerically) zero values: not drawn
        ax.plot(np.arange(1, len(vals) + 1)[keep], vals[keep], **model_style(name, markersize=3))
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("singular value / largest")
    ax.set_title(f"Singular-value spectrum of the tokens, depth {spectra['depth']}")
    ax.legend()
    fig.tight_layout()
    return fig


def _bar_color(name: str) -> str:
    return model_style(name)["color"]


def _bias_panel(ax, values: Mapping[str, float | None]) -> None:
    """Shape bias per model (bars; the control hatched), 0.5 = no preference."""
    names = list(values)
    ys = [v if v is not None and math.isfinite(v) else 0.0 for v in values.values()]
    bars = ax.bar(range(len(names)), ys, color=[_bar_color(n) for n in names], width=0.65)
    for bar, name, v in zip(bars, names, values.values()):
        if name.startswith("random"):
            bar.set_hatch("//")
            bar.set_facecolor("#d9d9d9")
            bar.set_edgecolor("#7f7f7f")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(0.5, color="#555555", linewidth=0.8, linestyle=":")
    ax.set_xticks(range(len(names)), [_display(n) for n in names], rotation=20, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("shape bias (shape / (shape + texture))")
    ax.set_title("Shape vs texture on cue-conflict images")


def _cue_panel(ax, cues: Mapping[str, tuple[float | None, float | None]], chance: float, floor: float) -> None:
    """Shape hits and texture hits per model (paired bars, texture hatched) against chance and the
    floor a bias needs before it is read."""
    names = list(cues)
    width = 0.38
    top = floor
    for k, (label, hatch) in enumerate((("shape hits", None), ("texture hits", "//"))):
        ys = [cues[n][k] if cues[n][k] is not None and math.isfinite(cues[n][k]) else 0.0 for n in names]
        top = max(top, *ys)
        xs = np.arange(len(names)) + (k - 0.5) * width
        bars = ax.bar(xs, ys, width=width, color=[_bar_color(n) for n in names], alpha=1.0 - 0.45 * k,
                      edgecolor="black", linewidth=0.4, hatch=hatch, label=label)
        for bar, y in zip(bars, ys):
            ax.text(bar.get_x() + bar.get_width() / 2, y + 0.005, f"{y:.2f}", ha="center", va="bottom", fontsize=6)
    ax.axhline(chance, color="#555555", linewidth=0.8, linestyle=":", label=f"chance ({chance:.3f})")
    ax.axhline(floor, color="#b22222", linewidth=0.9, linestyle="--", label=f"needed to read a bias ({floor:.3f})")
    ax.set_xticks(range(len(names)), [_display(n) for n in names], rotation=20, ha="right")
    ax.set_ylim(0, 1.6 * top)  # room for the legend above the floor
    ax.set_ylabel("fraction of cue-conflict images")
    ax.set_title("Cue probes: hits on the shape / the texture")
    ax.legend(fontsize=6, loc="upper right")


def plot_shape_bias(values: Mapping[str, float | None],
                    cues: Mapping[str, tuple[float | None, float | None]] | None = None,
                    chance: float | None = None, floor: float | None = None):
    """Shape bias per model (bars; the control hatched), 0.5 = no preference. With ``cues``
    (model -> (shape hit rate, texture hit rate)), ``chance`` and ``floor`` a second panel draws
    the hit rates the bias is the ratio of, against chance and the floor (C6's precondition)."""
    names = list(values)
    two = cues is not None and chance is not None and floor is not None
    width = max(3.6, 1.1 * len(names) + 1.5)
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(2 * width if two else width, 3.4), squeeze=False)
    _bias_panel(axes[0, 0], values)
    if two:
        _cue_panel(axes[0, 1], cues, float(chance), float(floor))
    fig.tight_layout()
    return fig


def plot_noise_robustness(rows: Mapping[str, Mapping[str, float | None]]):
    """Accuracy (in percent; ``rows`` hold fractions) clean / + low-frequency noise / + high-frequency
    noise per model (grouped bars)."""
    names = list(rows)
    kinds = [("clean", "clean", 1.0), ("low_freq", "+ low-freq. noise", 0.65),
             ("high_freq", "+ high-freq. noise", 0.35)]
    fig, ax = plt.subplots(figsize=(max(4.2, 1.5 * len(names) + 1.5), 3.6))
    width = 0.26
    for k, (key, label, alpha) in enumerate(kinds):
        xs = np.arange(len(names)) + (k - 1) * width
        ys = [100.0 * (rows[n].get(key) or 0.0) for n in names]
        bars = ax.bar(xs, ys, width=width, color=[_bar_color(n) for n in names], alpha=alpha,
                      edgecolor="black", linewidth=0.4, label=label,
                      hatch=[None, None, "//"][k])
        for bar, y in zip(bars, ys):
            ax.text(bar.get_x() + bar.get_width() / 2, y + 0.5, f"{y:.1f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(names)), [_display(n) for n in names], rotation=20, ha="right")
    ax.set_ylabel("linear-probe accuracy (%)")
    ax.set_title("Robustness to low- vs high-frequency noise")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor="#999999", alpha=a, edgecolor="black", hatch=h, linewidth=0.4)
               for (_, _, a), h in zip(kinds, [None, None, "//"])]
    ax.legend(handles, [label for _, label, _ in kinds], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_position_ablation(results: Mapping[str, Mapping[str, Any]], title: str | None = None):
    """One panel per family (``{family name: depth0_position_ablation(...)}``): the Δ log
    amplitude against frequency without (dashed) and with (solid) the sin-cos embedding; the
    family's own setting is marked "(own)"."""
    if not results:
        raise ValueError("plot_position_ablation: no families given")
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 2.8), sharey=True, squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for position, style in (("none", "--"), ("sincos", "-")):
            curve = res["curves"][position]
            freq = [i / max(len(curve) - 1, 1) for i in range(len(curve))]
            label = {"none": "no absolute embedding", "sincos": "sin-cos embedding"}[position]
            if res.get("own") == position:
                label += " (own)"
            ax.plot(freq, curve, style, marker="o", markersize=3, label=label)
        ax.set_title(f"{name}: Δ = {res['architecture_share']:+.2f} from sin-cos", fontsize=9)
        ax.set_xlabel("frequency (0 → π)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("Δ log amplitude, depth 0")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
