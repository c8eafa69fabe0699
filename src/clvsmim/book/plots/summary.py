"""F10: the CL-vs-MIM table, every cell with its measured numbers and the claims' verdicts,
drawn with matplotlib (from :func:`clvsmim.book.chapters.summary.summary_grid`); and
A-seed-differences, every seed's signed difference with its standard error
(from :func:`clvsmim.book.chapters.summary.seed_differences`)."""
from __future__ import annotations

from typing import Any, Sequence

import math
import textwrap

import matplotlib.pyplot as plt

from clvsmim.book.figures import FAMILY_COLOR

__all__ = ["VERDICT_COLOR", "plot_summary_table", "plot_seed_differences"]

VERDICT_COLOR = {"holds": "#2ca02c", "fails": "#d62728", "reversed": "#d62728", "tie": "#ff7f0e",
                 "not measurable": "#9467bd", "inconclusive": "#7f7f7f"}
_MARK = {"holds": "✓", "fails": "✗", "reversed": "✗", "tie": "=", "not measurable": "–", "inconclusive": "?"}


def plot_summary_table(grid: Sequence[dict[str, Any]], cl_title: str = "Contrastive learning (MoCo v3)",
                       mim_title: str = "Masked image modeling (SimMIM)",
                       cl_subtitle: str = "learns image-level invariants",
                       mim_subtitle: str = "learns token-level similarities", title: str | None = None):
    """Rows of ``grid`` × (CL, MIM) columns; each claim one line per cell — description,
    statistic, number — followed by a coloured verdict badge ``[C1 ✓]``."""

    line_h = 0.32  # inches per text line
    n_lines = [sum(2 if e["note"] else 1 for e in row["claims"]) or 1 for row in grid]
    header_h, pad = 0.9, 0.18
    height = header_h + sum(n * line_h + 2 * pad for n in n_lines) + (0.35 if title else 0.1)
    width = 13.5
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y downwards, in inches
    ax.axis("off")
    x_row, x_cl, x_mim, x_end = 0.15, 2.05, 7.8, width - 0.1
    y = 0.3 if title else 0.1
    if title:
        ax.text(width / 2, 0.12, title, ha="center", va="top", fontsize=11)
    for x, head, sub in ((x_cl, cl_title, cl_subtitle), (x_mim, mim_title, mim_subtitle)):
        ax.text(x, y + 0.05, head, ha="left", va="top", fontsize=12, fontweight="bold",
                color=FAMILY_COLOR["CL" if x == x_cl else "MIM"])
        ax.text(x, y + 0.42, sub, ha="left", va="top", fontsize=10, style="italic",
                color=FAMILY_COLOR["CL" if x == x_cl else "MIM"])
    y += header_h
    for row, n in zip(grid, n_lines):
        h = n * line_h + 2 * pad
        ax.plot([x_row, x_end], [y, y], color="#bbbbbb", linewidth=0.8)
        ax.text(x_row, y + pad, row["row"].upper(), ha="left", va="top", fontsize=10, fontweight="bold")
        yy = y + pad
        for e in row["claims"]:
            badge = f"[{e['id']} {_MARK[e['verdict']]}]"
            color = VERDICT_COLOR[e["verdict"]]
            for x, text in ((x_cl, e["cl"]), (x_mim, e["mim"])):
                ax.text(x, yy, badge, ha="left", va="top", fontsize=9, fontweight="bold", color=color)
                ax.text(x + 0.72, yy, text, ha="left", va="top", fontsize=9)
            yy += line_h
            if e["note"]:
                ax.text(x_cl + 0.72, yy, f"{e['note']} — {e['verdict']}", ha="left", va="top", fontsize=9,
                        style="italic", color=color)
                yy += line_h
        y += h
    ax.plot([x_row, x_end], [y, y], color="#bbbbbb", linewidth=0.8)
    legend = "   ".join(f"{_MARK[v]} {v}" for v in VERDICT_COLOR)
    ax.text(x_end, y + 0.05, legend, ha="right", va="top", fontsize=8, color="#555555")
    fig.set_size_inches(width, y + 0.35)
    ax.set_ylim(y + 0.35, 0)
    return fig


def plot_seed_differences(rows: Sequence[dict[str, Any]], columns: int = 4, title: str | None = None):
    """One panel per claim: each seed's signed difference in the paper's direction (a dot coloured
    by that seed's verdict) with ± Z SE bars, the claim's margin shaded grey around zero; a claim
    no seed measures shows its first seed's reason instead. Returns the figure."""

    n = len(rows)
    nrows = math.ceil(n / columns)
    fig, axes = plt.subplots(nrows, columns, figsize=(3.4 * columns, 2.1 * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for ax, row in zip(axes.flat, rows):
        seeds = row["seeds"]
        ax.set_title("\n".join(textwrap.wrap(f"{row['id']} {row['name']} ({row['comparison']}) — {row['verdict']}",
                                             48)), fontsize=8, color=VERDICT_COLOR.get(row["verdict"], "black"))
        measured = [s for s in seeds if s["value"] is not None]
        if not measured:
            ax.axis("off")
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f"{seeds[0]['verdict']}: {seeds[0]['reason']}", 44)),
                    ha="center", va="center", fontsize=7, transform=ax.transAxes,
                    color=VERDICT_COLOR.get(seeds[0]["verdict"], "black"))
            continue
        margin = max(s["margin"] for s in measured)
        ax.axvspan(-margin, margin, color="#dddddd", zorder=0)
        ax.axvline(0.0, color="#555555", linewidth=0.8, zorder=1)
        for y, s in enumerate(seeds):
            if s["value"] is None:
                continue
            err = None if s["se"] is None else row["z"] * s["se"]
            ax.errorbar(s["value"], y, xerr=err, fmt="o", markersize=5, capsize=3, zorder=2,
                        color=VERDICT_COLOR.get(s["verdict"], "black"))
        reach = max(abs(s["value"]) + (row["z"] * s["se"] if s["se"] is not None else 0.0) for s in measured)
        reach = max(reach, margin) * 1.15
        ax.set_xlim(-reach, reach)
        ax.set_ylim(len(seeds) - 0.5, -0.5)
        ax.set_yticks(range(len(seeds)), [f"seed {s['seed']}" for s in seeds], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("signed difference" + (f" ({row['unit']})" if row["unit"] else "") + ", > 0: as the paper",
                      fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if n < axes.size:  # the first free panel explains the marks
        key = axes.flat[n]
        for y, verdict in enumerate(("holds", "tie", "reversed")):
            key.errorbar(0.12, 0.8 - 0.18 * y, xerr=0.05, fmt="o", markersize=5, capsize=3,
                         color=VERDICT_COLOR[verdict], transform=key.transAxes)
            key.text(0.22, 0.8 - 0.18 * y, f"seed's verdict: {verdict}", va="center", fontsize=8,
                     transform=key.transAxes)
        key.add_patch(plt.Rectangle((0.07, 0.2), 0.1, 0.1, color="#dddddd", transform=key.transAxes))
        key.text(0.22, 0.25, "the claim's margin (tie below it)", va="center", fontsize=8, transform=key.transAxes)
        z = rows[0]["z"] if rows else 2.0
        key.text(0.07, 0.06, f"bars: ± {z:g} SE (the threshold is max(margin, {z:g} SE))", fontsize=8,
                 transform=key.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
