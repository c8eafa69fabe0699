"""Figures of the *architecture* chapter: F7 (linear probe of every depth) and F8 (Fourier
analysis of MAE through encoder and decoder depths, with a masked / reconstructed / original
image strip)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from clvsmim.book.figures import plot_kwargs, set_depth_ticks, bare_axes
from clvsmim.book.plots.behaviour import CONTROL_STYLE, _label
from clvsmim.book.units import accuracy_se_points

__all__ = ["plot_linear_probe_depths", "plot_mae_fourier"]


#: How F7 draws a normed-CLS probe: dotted, hollow markers, in the model's colour.
CLS_STYLE = {"linestyle": ":", "markerfacecolor": "none", "linewidth": 1.3}


def plot_linear_probe_depths(summary: Mapping[str, Mapping[str, Any]], control: Mapping[str, Any] | None = None,
                             control_name: str = "random", chance: float | None = None,
                             cls_summary: Mapping[str, Mapping[str, Any]] | None = None,
                             cls_control: Mapping[str, Any] | None = None, num_images: int | None = None,
                             band_pool: Mapping[str, str] | None = None):
    """F7: linear-probe accuracy (%) of every depth 0..L per model (data of
    :func:`clvsmim.book.chapters.architecture.linear_probe_summary`), the best depth of each model
    marked with a larger open marker; the untrained control grey dashed; chance level dotted.
    ``cls_summary`` / ``cls_control`` (same structure): the probes of the normed CLS token, drawn
    dotted in each model's colour beside its mean-pooled curve. ``num_images`` (the evaluation
    images every accuracy is over) shades ± 2 binomial standard errors around one curve per model:
    the normed-CLS one where ``band_pool`` maps the model to ``"cls_norm"`` (the representation its
    claims read), else the mean-pooled one. Differences inside the band are sampling noise."""
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for name, s in summary.items():
        kw = plot_kwargs(name, label=_label(name))
        ax.plot(s["depth"], s["accuracy"], **kw)
        if num_images:
            read_cls = (band_pool or {}).get(name) == "cls_norm" and cls_summary and name in cls_summary
            curve = cls_summary[name] if read_cls else s
            acc = np.asarray(curve["accuracy"], dtype=float)
            band = 2.0 * accuracy_se_points(acc, num_images)
            ax.fill_between(curve["depth"], acc - band, acc + band, color=kw["color"], alpha=0.12, lw=0)
        ax.scatter([s["best_depth"]], [s["best"]], s=130, facecolors="none", edgecolors=kw["color"], lw=1.5,
                   zorder=4)
        if cls_summary and name in cls_summary:
            c = cls_summary[name]
            ax.plot(c["depth"], c["accuracy"], **{**kw, "label": None, **CLS_STYLE})
    if control is not None:
        ax.plot(control["depth"], control["accuracy"], label=f"{_label(control_name)} (control)", **CONTROL_STYLE)
    if cls_control is not None:
        ax.plot(cls_control["depth"], cls_control["accuracy"], **{**CONTROL_STYLE, **CLS_STYLE})
    if cls_summary or cls_control is not None:
        ax.plot([], [], color="#555555", label="dotted: normed CLS token", **CLS_STYLE)
    if chance is not None:
        ax.axhline(chance, color="#bbbbbb", ls=":", lw=1, label="chance")
    if num_images:
        ax.fill_between([], [], [], color="#555555", alpha=0.12, lw=0, label=f"± 2 SE ({num_images} images)")
    set_depth_ticks(ax, (d for s in summary.values() for d in s["depth"]))
    ax.set(xlabel="depth (0 = patch embedding)", ylabel="linear probing (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_mae_fourier(fourier: Mapping[str, Any], simmim_encoder: Sequence[float] | None = None,
                     strip: Mapping[str, np.ndarray] | None = None, max_images: int = 3):
    """F8: Δ log amplitude (highest frequency) of MAE at every encoder depth 0..L (left) and
    every decoder depth (right: the decoder input at x = L, block j at x = L + j), SimMIM's
    encoder dashed for comparison; above, the masked / reconstructed / original images."""
    enc, dec = list(fourier["encoder"]), list(fourier["decoder"])
    depth = len(enc) - 1
    k = 0 if strip is None else min(max_images, len(strip["original"]))
    fig = plt.figure(figsize=(9.5, 3.8 + (1.15 * k if k else 0)))
    outer = fig.add_gridspec(2 if k else 1, 1, height_ratios=[1.15 * k, 3.8] if k else [1], hspace=0.3)
    if k:
        middle = outer[0].subgridspec(1, 3, width_ratios=[1, 1.1, 1])[1]
        top = middle.subgridspec(k, 3, wspace=0.05, hspace=0.05)
        for i in range(k):
            for j, key in enumerate(("masked", "reconstruction", "original")):
                ax = fig.add_subplot(top[i, j])
                ax.imshow(np.clip(strip[key][i], 0, 1), interpolation="nearest")
                bare_axes(ax)
                if i == 0:
                    ax.set_title(key, fontsize=9)
    bottom = outer[-1].subgridspec(1, 2, width_ratios=[max(depth, 1) + 1, max(len(dec), 2)], wspace=0.08)
    ax_e = fig.add_subplot(bottom[0])
    ax_d = fig.add_subplot(bottom[1], sharey=ax_e)
    mae_kw = plot_kwargs("mae", label="MAE encoder (full images)", linestyle="-")
    ax_e.plot(range(depth + 1), enc, **mae_kw)
    if simmim_encoder is not None:
        ax_e.plot(range(len(simmim_encoder)), list(simmim_encoder),
                  **plot_kwargs("simmim", label="SimMIM encoder (full images)", linestyle="--", markerfacecolor="none"))
    ax_e.set_xticks(range(0, depth + 1, max(1, (depth + 1) // 8)))
    ax_e.set(xlabel="encoder depth", ylabel="Δ log amplitude (highest freq.)")
    ax_e.legend(fontsize=8)
    xs = [depth + j for j in range(len(dec))]
    ax_d.plot(xs, dec, **plot_kwargs("mae", label="MAE decoder", linestyle="-"))
    ax_d.axvspan(depth - 0.3, depth + 0.3, color="#1f77b4", alpha=0.08)
    ax_d.set_xticks(xs, [f"{depth}\n(input emb.)"] + [str(x) for x in xs[1:]])
    ax_d.set_xlabel("decoder depth")
    ax_d.tick_params(labelleft=False)
    ax_d.legend(fontsize=8)
    ax_d.set_title(f"decoder: masked input ({fourier['mask_ratio']:.0%})\n+ mask tokens", fontsize=9)
    ax_e.set_title("encoder: full images (no masking)", fontsize=9)
    return fig
