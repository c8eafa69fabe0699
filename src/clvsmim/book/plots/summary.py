"""F10: the CL-vs-MIM table, every cell with its measured numbers and the claims' verdicts,
drawn with matplotlib (from :func:`clvsmim.book.chapters.summary.summary_grid`)."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt

from clvsmim.book.figures import FAMILY_COLOR

__all__ = ["VERDICT_COLOR", "plot_summary_table"]

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
