"""Figures of the *hybrid* chapter: F9 (λ sweep, fine-tune vs linear probe) and the hybrids'
attention distance / NMI / Fourier curves coloured by λ (:func:`clvsmim.book.figures.lam_color`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt

from clvsmim.book.figures import FAMILY_COLOR, lam_color
from clvsmim.book.plots.representation import CONTROL_STYLE

__all__ = ["plot_sweep", "plot_hybrid_curves"]


def plot_sweep(points: Sequence[Mapping[str, Any]], *, scale: float = 100.0,
               literature: Sequence[Mapping[str, Any]] | None = None):
    """F9: fine-tune (y) vs linear-probe (x) accuracy in percent (``points`` times ``scale``:
    100 for fractions, 1 for percent), one point per λ, joined in λ order and annotated ``λ=…``
    (the endpoints also ``(MIM)`` / ``(CL)``). ``literature`` (percent, e.g. the paper's ViT-B
    end points): drawn the same way in a second panel on its own axes."""

    if literature:
        fig, (ax, right) = plt.subplots(1, 2, figsize=(9.6, 3.8))
        _draw_sweep(ax, points, scale, "measured: L = λ·L_CL + (1 − λ)·L_MIM")
        _draw_sweep(right, literature, 1.0, "the paper (literature, ViT-B/16)")
    else:
        fig, ax = plt.subplots(figsize=(5.0, 3.8))
        _draw_sweep(ax, points, scale, "CL + MIM: L = λ·L_CL + (1 − λ)·L_MIM")
    fig.tight_layout()
    return fig


def _draw_sweep(ax, points: Sequence[Mapping[str, Any]], scale: float, title: str) -> None:
    pts = sorted(points, key=lambda p: p["lam"])
    xs = [scale * p["linear_probe"] for p in pts]
    ys = [scale * p["finetune"] for p in pts]
    ax.plot(xs, ys, color=FAMILY_COLOR["hybrid"], linewidth=1.3, zorder=1)
    span_x = (max(xs) - min(xs)) or 0.1
    span_y = (max(ys) - min(ys)) or 0.1
    groups: list[tuple[float, float, list[float]]] = []  # coincident points share one label
    for p, x, y in zip(pts, xs, ys):
        lam = p["lam"]
        ax.scatter([x], [y], s=46, color=lam_color(lam), edgecolor="black", linewidth=0.5, zorder=2)
        for gx, gy, lams in groups:
            if abs(gx - x) <= 1e-9 and abs(gy - y) <= 1e-9:
                lams.append(lam)
                break
        else:
            groups.append((x, y, [lam]))
    for x, y, lams in groups:
        tags = [f"{lam:g}" + (" (MIM)" if lam == 0 else " (CL)" if lam == 1 else "") for lam in lams]
        dx, dy = _away_from_nearest(x, y, [(gx, gy) for gx, gy, _ in groups], span_x, span_y)
        dx = 1 if x - min(xs) < 0.1 * span_x else dx  # the left margin is too narrow for a label
        ax.annotate("λ=" + ", ".join(tags), (x, y), xytext=(6 * dx, 6 * dy),
                    textcoords="offset points", fontsize=8, ha="left" if dx > 0 else "right",
                    va="bottom" if dy > 0 else "top")
    ax.set_xlim(min(xs) - 0.15 * span_x, max(xs) + 0.35 * span_x)
    ax.set_ylim(min(ys) - 0.15 * span_y, max(ys) + 0.2 * span_y)
    ax.set_xlabel("linear-probe accuracy (%)")
    ax.set_ylabel("fine-tuning accuracy (%)")
    ax.set_title(title)


def _away_from_nearest(x: float, y: float, others: Sequence[tuple[float, float]],
                       span_x: float, span_y: float) -> tuple[int, int]:
    """Signs (±1, ±1) of the label offset that points away from the nearest other point (distances
    in units of the axis spans), so that neighbouring labels do not overlap; (1, 1) when alone."""
    near = min((((ox - x) / span_x, (oy - y) / span_y) for ox, oy in others if (ox, oy) != (x, y)),
               key=lambda d: d[0] ** 2 + d[1] ** 2, default=(-1.0, -1.0))
    return (1 if near[0] <= 0 else -1), (1 if near[1] <= 0 else -1)


def plot_hybrid_curves(curves: Mapping[str, Any]):
    """Three panels — attention distance and NMI per block, Δ log amplitude per depth — one line
    per λ coloured from MIM blue (λ = 0) to CL red (λ = 1); the control grey and dashed."""

    panels = [("attention_distance", "blocks", "attention distance (px)", "block"),
              ("nmi", "blocks", "NMI", "block"),
              ("fourier", "depth", "Δ log amplitude (highest freq.)", "depth (0 = embeddings)")]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
    for ax, (key, xkey, ylabel, xlabel) in zip(axes, panels):
        xs = curves[xkey]
        for name, values in curves[key].items():
            if name == "control":
                ax.plot(xs, values, label="random init", **{**CONTROL_STYLE, "markersize": 4})
                continue
            lam = float(name)
            suffix = " (MIM)" if lam == 0 else " (CL)" if lam == 1 else ""
            ax.plot(xs, values, color=lam_color(lam), marker="o", markersize=4, label=f"λ={name}{suffix}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Hybrids across depth, coloured by λ")
    fig.tight_layout()
    return fig
