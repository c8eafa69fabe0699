"""Figures of the *behaviour* chapter: F1 (literature vs measured behaviour), F2 (query
attention maps), F3 (attention distance per depth), F4 (NMI per depth).

Every function takes plain data (lists / dicts as built by :mod:`clvsmim.book.chapters.behaviour`)
and returns a matplotlib Figure; nothing is read from disk or the model zoo here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from clvsmim.book.chapters.common import PAPER_RUN_MARK
from clvsmim.book.units import accuracy_se_points
from clvsmim.book.figures import FAMILY_COLOR, bare_axes, plot_kwargs, set_depth_ticks, style_for
from clvsmim.methods import display_name

__all__ = ["FAMILY_MARKER", "LITERATURE_PROBE_NOTE", "family_of", "plot_behaviour", "plot_query_attention",
           "plot_depth_metric", "plot_nmi", "plot_per_head", "plot_own_architecture", "CONTROL_STYLE"]

#: The literature's MIM linear probes are not last-block probes (F1a says so on the panel).
LITERATURE_PROBE_NOTE = ("MIM linear probes as published: BEiT block 9,\nSimMIM block 8 (average pooling);\n"
                         "this project (below): last block")
#: Paper's convention: CL red squares, MIM blue triangles (supervised: grey pentagons).
FAMILY_MARKER = {"CL": "s", "MIM": "^", "supervised": "p", "hybrid": "o"}
#: The untrained control: grey dashed, no markers.
CONTROL_STYLE = {"color": "#7f7f7f", "linestyle": "--", "marker": None, "linewidth": 1.3}
_SIZE_PARAMS = {"Ti": 5.7, "S": 22, "B": 86, "L": 304, "H": 632}
_SIZES = ("Ti", "S", "B", "L", "H")
QUERY_COLORS = {"object": "#ff7f0e", "background": "#17becf"}


def family_of(name: str) -> str:
    """``moco`` / ``dino`` -> CL, ``simmim`` / ``mae`` / ``beit`` -> MIM, ``hybrid-…`` -> hybrid."""
    key = name.lower().replace(" ", "").split("-")[0]
    if key.startswith(("moco", "dino")):
        return "CL"
    if key.startswith(("simmim", "mae", "beit")):
        return "MIM"
    if key.startswith("hybrid"):
        return "hybrid"
    return "supervised"


def _label(name: str) -> str:

    return display_name(name)


def _point(ax, x, y, family: str, filled: bool = True, text: str | None = None, size: float = 55):
    color = FAMILY_COLOR.get(family, "#7f7f7f")
    ax.scatter([x], [y], marker=FAMILY_MARKER.get(family, "o"), s=size, zorder=3,
               facecolors=color if filled else "none", edgecolors=color, linewidths=1.4)
    if text:
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8, color=color)


def _size_line(ax, xs, ys, label: str, family: str, verified: Sequence[bool], style_key: str | None = None,
               linestyle: str = "-") -> None:
    """One method across model sizes: family colour, the method's own marker (hollow where unverified)."""

    color = FAMILY_COLOR.get(family, "#7f7f7f")
    try:
        marker = style_for(style_key or label)["marker"]
    except KeyError:
        marker = FAMILY_MARKER.get(family, "o")
    ax.plot(xs, ys, color=color, lw=1.2, zorder=2, linestyle=linestyle)
    ax.scatter(xs, ys, marker=marker, s=40, zorder=3, linewidths=1.4, edgecolors=color,
               facecolors=[color if v else "none" for v in verified])
    ax.plot([], [], color=color, marker=marker, lw=1.2, label=label, linestyle=linestyle)


def _pad(ax, xs: Sequence[float], ys: Sequence[float], frac: float = 0.15) -> None:
    """Room around a few scattered points (and for their labels)."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        if not len(values):
            continue
        lo, hi = float(min(values)), float(max(values))
        span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
        setter(lo - frac * span, hi + (2 if setter == ax.set_xlim else 1) * frac * span)


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="#7f7f7f")


def _literature_point(r: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(family, verified, label) of a literature row."""
    return r["family"], r["status"] == "verified", r["method"]


def _measured_point(r: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(family, verified, label) of a measured row (always verified: we measured it)."""
    return family_of(r["model"]), True, _label(r["model"])


def _scatter_panel(ax, rows, x_key: str, describe, xlabel: str, ylabel: str, title: str, missing: str) -> None:
    """One F1 scatter panel: fine-tuning (y) against ``row[x_key]`` (x), a labelled marker per row."""
    for r in rows:
        _point(ax, r[x_key], r["finetune"], *describe(r))
    _pad(ax, [r[x_key] for r in rows], [r["finetune"] for r in rows])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if not rows:
        _empty(ax, missing)


def plot_behaviour(literature: Mapping[str, list[dict[str, Any]]], measured: Mapping[str, list[dict[str, Any]]]):
    """F1: a 2×3 grid. Top row: literature numbers (:func:`~clvsmim.book.chapters.behaviour.literature_panels`),
    hollow markers for numbers that are not verified; bottom row: the zoo
    (:func:`~clvsmim.book.chapters.behaviour.measured_behaviour`). Columns: (a) fine-tuning vs
    linear probing, (b) fine-tuning vs model size, (c) fine-tuning vs dense prediction
    (COCO box AP in the literature, the dense probe's mIoU on the zoo)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.2))
    # ---- literature
    _scatter_panel(axes[0, 0], literature.get("linear_vs_finetune", []), "linear_probe", _literature_point,
                   "linear probing (%)", "fine-tuning (%)", "(a) literature, ViT-B", "numbers")
    if literature.get("linear_vs_finetune"):
        axes[0, 0].text(0.02, 0.02, LITERATURE_PROBE_NOTE, transform=axes[0, 0].transAxes, fontsize=6.5,
                        color="#555555", va="bottom", ha="left", style="italic")

    ax = axes[0, 1]
    rows = [r for r in literature.get("size", []) if r["family"] in ("CL", "MIM")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:  # the paper's own runs (†) are their own series, dashed, never joined to official ones
        pts = [r for r in rows if r["method"] == method]
        pts.sort(key=lambda r: _SIZES.index(r["size"]))
        own = method.endswith(PAPER_RUN_MARK)
        _size_line(ax, [r["params_m"] or _SIZE_PARAMS[r["size"]] for r in pts], [r["finetune"] for r in pts],
                   f"{method} (paper's own runs)" if own else method, pts[0]["family"],
                   [r["status"] == "verified" for r in pts], style_key=method.rstrip(PAPER_RUN_MARK),
                   linestyle="--" if own else "-")
    if methods:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xscale("log")
    ax.set_xticks([_SIZE_PARAMS[s] for s in _SIZES], list(_SIZES))
    ax.minorticks_off()
    ax.set(xlabel="model size (ViT)", ylabel="fine-tuning (%)", title="(b) literature, scaling")
    if not rows:
        _empty(ax, "numbers")

    _scatter_panel(axes[0, 2], literature.get("detection", []), "coco_ap_box", _literature_point,
                   "COCO box AP", "ImageNet fine-tuning (%)", "(c) literature, detection", "numbers")

    # ---- measured
    _scatter_panel(axes[1, 0], measured.get("linear_vs_finetune", []), "linear_probe", _measured_point,
                   "linear probing, last block (%)", "fine-tuning (%)", "(a) this project", "evaluations")

    ax = axes[1, 1]
    rows = measured.get("size", [])
    sizes = [s for s in _SIZES if any(r["size"] == s for r in rows)]
    sizes += sorted({r["size"] for r in rows} - set(sizes))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r for r in rows if r["model"] == model), key=lambda r: sizes.index(r["size"]))
        _size_line(ax, [sizes.index(r["size"]) for r in pts], [r["finetune"] for r in pts], _label(model),
                   family_of(model), [True] * len(pts), style_key=model)
    if rows:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks(range(len(sizes)), sizes)
    if sizes:
        ax.set_xlim(-0.3, len(sizes) - 0.4)
    ax.set(xlabel="model size (this profile)", ylabel="fine-tuning (%)", title="(b) this project")
    if not rows:
        _empty(ax, "evaluations")

    _scatter_panel(axes[1, 2], measured.get("detection", []), "dense_miou", _measured_point,
                   "dense probe mIoU (%)", "fine-tuning (%)", "(c) this project: linear dense probe,\nnot the paper's COCO test",
                   "evaluations")

    handles = [Line2D([], [], ls="", marker="s", color=FAMILY_COLOR["CL"], label="CL"),
               Line2D([], [], ls="", marker="^", color=FAMILY_COLOR["MIM"], label="MIM"),
               Line2D([], [], ls="", marker="p", color=FAMILY_COLOR["supervised"], label="supervised"),
               Line2D([], [], ls="", marker="o", color="k", label="verified number"),
               Line2D([], [], ls="", marker="o", color="k", markerfacecolor="none",
                      label="approximate / recalled / partly verified")]
    fig.legend(handles=handles, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_query_attention(data: Mapping[str, Any], names: Sequence[str] | None = None):
    """F2: the image with its two query patches, then per model (columns) and query (rows) the
    head-averaged attention map of the query over the image (data of
    :func:`~clvsmim.book.chapters.behaviour.query_attention_data`)."""
    names = list(names or data["models"])
    queries = list(data["queries"])
    image = np.asarray(data["image"], dtype=float)
    size_px = image.shape[0]
    p = data["patch_size"]
    fig = plt.figure(figsize=(2.3 * (1 + len(names)) + 0.6, 2.2 * len(queries) + 0.5))
    gs = fig.add_gridspec(len(queries), 1 + len(names), width_ratios=[1.25] + [1] * len(names), wspace=0.12,
                          hspace=0.12)
    ax = fig.add_subplot(gs[:, 0])
    ax.imshow(image, interpolation="nearest")
    for q in queries:
        r, c = data["queries"][q]
        ax.add_patch(Rectangle((c * p - 0.5, r * p - 0.5), p, p, fill=False, lw=2.2, ec=QUERY_COLORS.get(q, "k")))
    ax.set_title(f"image {data['image_index']}", fontsize=9)
    ax.axis("off")
    ax.set_anchor("W")
    vmax = max(float(np.max(data["maps"][n][q])) for n in names for q in queries) or 1.0
    im = None
    for j, name in enumerate(names):
        for i, q in enumerate(queries):
            ax = fig.add_subplot(gs[i, 1 + j])
            amap = np.asarray(data["maps"][name][q], dtype=float)
            extent = (-0.5, size_px - 0.5, size_px - 0.5, -0.5)
            ax.imshow(image.mean(-1), cmap="gray", interpolation="nearest", extent=extent)
            im = ax.imshow(amap, cmap="inferno", alpha=0.75, vmin=0, vmax=vmax, interpolation="nearest",
                           extent=extent)
            r, c = data["queries"][q]
            ax.add_patch(Rectangle((c * p - 0.5, r * p - 0.5), p, p, fill=False, lw=1.8, ec=QUERY_COLORS.get(q, "w")))
            bare_axes(ax)
            if i == 0:
                ax.set_title(_label(name), fontsize=10, color=plot_kwargs(name)["color"])
            if j == 0:
                ax.set_ylabel(f"query: {q}", color=QUERY_COLORS.get(q, "k"))
    if im is not None:
        fig.colorbar(im, ax=fig.axes[1:], shrink=0.8, label="attention (head mean)")
    fig.suptitle(f"self-attention of two queries, block {data['block']}", fontsize=10)
    return fig


def _bar_ses(row: Mapping[str, Any], num_images: int | None) -> np.ndarray | None:
    """SEs (points) of a row's two bars (untrained, pretrained): the row's own (images and runs,
    :func:`clvsmim.book.chapters.behaviour.finetune_over_own_architecture`), else binomial over
    ``num_images``, else None."""
    own = [row.get("untrained_se"), row.get("finetune_se")]
    if all(se is not None for se in own):
        return np.asarray(own, dtype=float)
    return accuracy_se_points([row["untrained"], row["finetune"]], num_images) if num_images else None


def plot_own_architecture(rows: Sequence[Mapping[str, Any]], num_images: int | None = None):
    """Fine-tuning accuracy of each model (filled bar, its family's colour) next to its untrained
    architecture's (hollow bar, named below), the gain written above (± 2 SE where the row has its
    ``gain_se``): A-own-architecture. Each bar carries ± 2 standard errors: the row's own
    (``finetune_se`` / ``untrained_se``: evaluation images plus the fine-tuning runs' variance), else
    binomial over ``num_images`` (the evaluation images)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.25 * len(rows) + 1.5), 3.6))
    if not rows:
        _empty(ax, "fine-tuning of a model and of its untrained architecture")
        return fig
    width = 0.38
    tops = []
    for i, r in enumerate(rows):
        color = FAMILY_COLOR.get(family_of(r["model"]), "#7f7f7f")
        ax.bar(i - width / 2, r["untrained"], width, facecolor="none", edgecolor=color, hatch="//", linewidth=1.2)
        ax.bar(i + width / 2, r["finetune"], width, color=color)
        top = max(r["untrained"], r["finetune"])
        ses = _bar_ses(r, num_images)
        if ses is not None:
            err = 2.0 * ses
            ax.errorbar([i - width / 2, i + width / 2], [r["untrained"], r["finetune"]], yerr=err, fmt="none",
                        ecolor="#333333", elinewidth=0.9, capsize=3)
            top += float(err.max())
        tops.append(top)
        gain = f"{r['gain']:+.1f}" + (f" ± {2 * r['gain_se']:.1f}" if r.get("gain_se") is not None else "")
        ax.annotate(gain, (i, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8, color=color)
    ax.set_xticks(range(len(rows)), [f"{_label(r['model'])}\nvs {_label(r['control'])}" for r in rows], fontsize=7)
    ax.set_ylim(0, 1.45 * max(tops))  # room for the legend
    ax.set(ylabel="fine-tuning accuracy (%)")
    runs = max((n for r in rows for n in r.get("runs", [1])), default=1)
    title = (f"error bars: ± 2 SE over the evaluation images and {runs} fine-tuning runs" if runs > 1
             else f"error bars: ± 2 SE over {num_images} images" if num_images
             else "error bars: ± 2 SE over the evaluation images" if any(_bar_ses(r, None) is not None for r in rows)
             else None)
    ax.legend(handles=[Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="#555555", hatch="//"),
                       Rectangle((0, 0), 1, 1, color="#555555")],
              labels=["untrained, same architecture", "pretrained"], fontsize=7, loc="upper left", ncol=2,
              title=title, title_fontsize=6)
    fig.tight_layout()
    return fig


def _control_label(name: str) -> str:
    return f"{_label(name)} (control)"


def plot_depth_metric(curves: Mapping[str, Mapping[str, Any]], ylabel: str, control: Mapping[str, Any] | None = None,
                      control_name: str = "random", title: str | None = None, key: str = "mean"):
    """One line per model of ``curves[name][key]`` against ``curves[name]["depth"]``; the
    untrained control (``control``, same structure) as a grey dashed line. F3 / F7."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, c in curves.items():
        ax.plot(c["depth"], c[key], **plot_kwargs(name, label=_label(name)))
    if control is not None:
        ax.plot(control["depth"], control[key], label=_control_label(control_name), **CONTROL_STYLE)
    set_depth_ticks(ax, (d for c in curves.values() for d in c["depth"]))
    ax.set(xlabel="depth (block)", ylabel=ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_per_head(curves: Mapping[str, Mapping[str, Any]], ylabel: str, control: Mapping[str, Any] | None = None,
                  control_name: str = "random", seed: int = 0, title: str | None = None, ylim_zero: bool = False):
    """A per-head metric per depth: per-head values (``curves[name]["per_head"]``, depth × heads)
    as small points, jittered sideways per model, the head mean as a line; the untrained control
    grey dashed."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    names = list(curves)
    offsets = np.linspace(-0.15, 0.15, len(names)) if len(names) > 1 else [0.0]
    rng = np.random.default_rng(seed)
    for off, name in zip(offsets, names):
        c = curves[name]
        kw = plot_kwargs(name, label=_label(name))
        for d, heads in zip(c["depth"], c["per_head"]):
            xs = d + off + rng.uniform(-0.03, 0.03, len(heads))
            ax.scatter(xs, heads, s=12, color=kw["color"], marker=kw["marker"], alpha=0.45, linewidths=0)
        ax.plot(c["depth"], c["mean"], **kw)
    if control is not None:
        ax.plot(control["depth"], control["mean"], label=_control_label(control_name), **CONTROL_STYLE)
    set_depth_ticks(ax, (d for c in curves.values() for d in c["depth"]))
    ax.set(xlabel="depth (block)", ylabel=ylabel)
    if title:
        ax.set_title(title)
    if ylim_zero:
        ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_nmi(curves: Mapping[str, Mapping[str, Any]], control: Mapping[str, Any] | None = None,
             control_name: str = "random", seed: int = 0):
    """F4: NMI per depth (:func:`plot_per_head`: points = heads, line = mean, control dashed)."""
    return plot_per_head(curves, "NMI (points: heads, line: mean)", control, control_name, seed, ylim_zero=True)
