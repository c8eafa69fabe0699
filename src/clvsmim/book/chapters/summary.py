"""Data behind the *summary* chapter: the CL-vs-MIM table (F10) built from :mod:`clvsmim.claims`.

:func:`summary_grid` turns a :class:`~clvsmim.claims.ClaimsTable` into the table's rows
(behaviour / self-attention / representation / architecture / CL + MIM), each with one line
per claim for the CL and the MIM column: the side's description, the measured number (mean
± std over seeds) and the claim's verdict. :func:`grid_markdown` renders it as Markdown,
:func:`clvsmim.book.plots.summary.plot_summary_table` as a figure.
"""
from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any, Mapping

from clvsmim.book.chapters.common import cluster_strength_note
from clvsmim.book.toc import find_root
from clvsmim.book.units import ACCURACY_DIGITS, claim_value_kind, to_percent
from clvsmim.claims import MARGINS, ROWS, VERDICT_MARKS, ClaimsTable, claim_markdown
from clvsmim.uncertainty import Z, threshold

__all__ = ["SHORT", "VERDICT_MARK", "VERDICT_COLOR", "value_text", "summary_grid", "grid_markdown", "grid_html",
           "table_html", "seeds_table_html", "recorded_table", "table_of_record", "verdict_paragraph",
           "scaling_note", "cluster_note",
           "seed_disagreements", "seed_differences", "claims_paragraphs", "claims_json"]

#: Short name and unit of each claim's statistic, as shown in the table's cells.
SHORT: dict[str, tuple[str, str]] = {
    "C1": ("attention distance", " px"), "C2": ("NMI", ""), "C3": ("token cos. sim.", ""),
    "C4": ("Δ log amplitude", ""), "C5": ("silhouette by image", ""), "C6": ("shape bias", ""),
    "C7": ("best probe depth", ""), "C8": ("mean of lin. probe & fine-tune", ""),
    "C9": ("linear probe", ""), "C10": ("fine-tune", ""), "C11": ("fine-tune gain", ""),
}
#: Where a claim's signed difference is not the cells' statistic: what it is (A-seed-differences).
DIFFERENCE_NAME: dict[str, str] = {"C7": "MIM's probe drop over its last blocks",
                                   "C8": "best hybrid vs the better endpoint"}
VERDICT_MARK = VERDICT_MARKS
#: Where ``clvsmim claims --seeds 3 --out`` tables are kept, relative to the project root.
RECORDED_TABLE = "docs/{profile}-claims-3seeds.json"


def _num(v: float | None, digits: int) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2g}"


def value_text(stat: Mapping[str, Any], digits: int = 3, kind: str | None = None) -> str:
    """``mean`` or ``mean ± std`` of a ``{"mean", "std"}`` dict; ``kind`` ``"percent"`` /
    ``"points"``: an accuracy / accuracy difference stored as a fraction, shown in the book's
    unit (:mod:`clvsmim.book.units`: percent with one decimal)."""
    if kind in ("percent", "points"):
        mean, std = to_percent(stat.get("mean")), to_percent(stat.get("std"))
        text = _num(mean, ACCURACY_DIGITS) + (f" ± {_num(std, ACCURACY_DIGITS)}" if std is not None else "")
        return text + (" %" if kind == "percent" else " points")
    text = _num(stat.get("mean"), digits)
    return text + (f" ± {_num(stat['std'], digits)}" if stat.get("std") is not None else "")


def _digits(cid: str, stat: Mapping[str, Any]) -> int:
    if cid == "C1":
        return 1
    if cid == "C7":
        return 0 if stat.get("std") is None else 1
    mean = stat.get("mean")
    return 4 if mean is not None and abs(mean) < 1e-2 and mean != 0 else 3


#: Model sizes below the paper's crossover: in its own runs (†, Fig. 1b) CL still fine-tunes
#: better than MIM at ViT-Ti and ViT-S; MIM overtakes at ViT-B.
BELOW_CROSSOVER = ("Ti", "S")


def _size_of(name: str | None) -> str | None:
    """``"moco-S"`` -> ``"S"``; ``None`` for a name without a size suffix."""
    if not name or "-" not in name:
        return None
    return name.rsplit("-", 1)[1]


def scaling_note(claim: Mapping[str, Any]) -> str:
    """For C11 (a claim dict of :func:`claims_json`): what the sizes measured here can say. Where
    the largest size is below ViT-B the paper's own runs still have CL ahead there (the crossover
    comes at B), so only the direction of the gain is comparable; empty otherwise."""
    models = (claim.get("per_seed") or [{}])[0].get("details", {}).get("models") or {}
    small, large = _size_of(models.get("mim-small")), _size_of(models.get("mim-large"))
    if large not in BELOW_CROSSOVER:
        return ""
    return (f"sizes {small}→{large}: in the paper's own runs (†) CL is still ahead at {large}, MIM overtakes at B; "
            f"only the gain's direction is comparable")


def cluster_note(claim: Mapping[str, Any]) -> str:
    """For C5: a verdict that holds compares CL with MIM only; say when CL's own silhouette is weak."""
    if claim.get("verdict") != "holds":
        return ""
    note = cluster_strength_note((claim.get("cl") or {}).get("mean"))
    return f"holds relative to MIM only: {note}" if note else ""


def summary_grid(table: Any) -> list[dict[str, Any]]:
    """One entry per table row: ``{"row", "claims": [{"id", "verdict", "cl", "mim", "note"}]}``
    where ``cl`` / ``mim`` are the cell lines (description, statistic, number). Accuracies are in
    percent, accuracy differences in points (:mod:`clvsmim.book.units`)."""

    d = claims_json(table)
    by_id = {c["id"]: c for c in d["claims"]}
    grid = []
    for row, ids in ROWS.items():
        entries = []
        for cid in ids:
            if cid not in by_id:
                continue
            c = by_id[cid]
            short, unit = SHORT.get(cid, (c["statistic"], ""))
            cl, mim = c["cl"], c["mim"]
            kind = {k: claim_value_kind(cid, k) for k in ("cl", "mim", "control", "value")}
            note = ""
            if cid == "C7":
                L = c["per_seed"][0]["details"].get("L")
                of = f" of {L}" if L is not None else ""
                cl_text = f"{c['cl_label']}: {short} {value_text(cl, _digits(cid, cl))}{of}"
                mim_text = (f"{c['mim_label']}: {short} {value_text(mim, _digits(cid, mim))}{of}, "
                            f"drop {value_text(c['value'], 3, kind['value'])}")
            elif cid == "C8":
                lams = [s["details"].get("best_lam") for s in c["per_seed"]]
                lams = sorted({lam for lam in lams if lam is not None})
                best = ", ".join(f"{lam:g}" for lam in lams) or "n/a"
                cl_text = f"λ = 1: {short} {value_text(cl, kind=kind['cl'])}"
                mim_text = f"λ = 0: {short} {value_text(mim, kind=kind['mim'])}"
                note = (f"best hybrid λ = {best}: margin {value_text(c['value'], kind=kind['value'])} "
                        f"over the better endpoint")
            else:
                cl_text = f"{c['cl_label']}: {short} {value_text(cl, _digits(cid, cl), kind['cl'])}{unit}"
                mim_text = f"{c['mim_label']}: {short} {value_text(mim, _digits(cid, mim), kind['mim'])}{unit}"
                note = scaling_note(c) if cid == "C11" else cluster_note(c) if cid == "C5" else ""
            entries.append({"id": cid, "verdict": c["verdict"], "cl": cl_text, "mim": mim_text, "note": note,
                            "comparison": c["comparison"],
                            "control": value_text(c["control"], _digits(cid, c["control"]), kind["control"])})
        grid.append({"row": row, "claims": entries})
    return grid


def grid_markdown(grid: list[dict[str, Any]], cl_title: str = "CL (MoCo v3)", mim_title: str = "MIM (SimMIM)") -> str:
    """The grid as a Markdown table: rows × (CL, MIM), one line per claim with its verdict."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"| | {cl_title} | {mim_title} |", "|---|---|---|"]
    for row in grid:
        cl = "<br>".join(f"{esc(e['cl'])} **[{e['id']} {VERDICT_MARK[e['verdict']]} {e['verdict']}]**"
                         for e in row["claims"])
        mim = "<br>".join(f"{esc(e['mim'])} **[{e['id']} {VERDICT_MARK[e['verdict']]} {e['verdict']}]**"
                          + (f"<br>*{esc(e['note'])}*" if e["note"] else "") for e in row["claims"])
        lines.append(f"| **{row['row']}** | {cl} | {mim} |")
    return "\n".join(lines)


VERDICT_COLOR = {"holds": "#2ca02c", "fails": "#d62728", "reversed": "#d62728", "tie": "#ff7f0e",
                 "not measurable": "#9467bd", "inconclusive": "#7f7f7f"}
_TABLE_STYLE = ("border-collapse:collapse;font-size:0.9em;margin:0.5em 0 1em 0",
                "border-bottom:1px solid #bbb;padding:4px 8px;vertical-align:top;text-align:left")


def _badge(cid: str, verdict: str) -> str:
    return (f'<b style="color:{VERDICT_COLOR[verdict]}">[{cid} {VERDICT_MARK[verdict]} {verdict}]</b>')


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    table_style, cell = _TABLE_STYLE
    head = "".join(f'<th style="{cell}">{h}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{cell}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table style="{table_style}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def grid_html(grid: list[dict[str, Any]], cl_title: str = "CL (MoCo v3)", mim_title: str = "MIM (SimMIM)") -> str:
    """The grid as an HTML table (the book's notebook outputs render Markdown without tables)."""
    rows = []
    for row in grid:
        cells = []
        for side in ("cl", "mim"):
            lines = [f"{_badge(e['id'], e['verdict'])} {escape(e[side])}"
                     + (f"<br><i>{escape(e['note'])}</i>" if side == "mim" and e["note"] else "")
                     for e in row["claims"]]
            cells.append("<br>".join(lines))
        rows.append([f"<b>{escape(row['row'])}</b>", *cells])
    return _html_table(["", escape(cl_title), escape(mim_title)], rows)


def table_html(table: Any) -> str:
    """The claims table (:meth:`clvsmim.claims.ClaimsTable.rows`) as an HTML table, verdicts coloured."""
    cols = ["id", "verdict", "comparison", "CL", "MIM", "control", "seeds", "statistic"]
    rows = []
    for r in table.rows():
        cells = [escape(str(r[c])) for c in cols]
        cells[1] = f'<b style="color:{VERDICT_COLOR[r["verdict"]]}">{escape(r["verdict"])}</b>'
        rows.append(cells)
    return _html_table(cols, rows)


def seeds_table_html(table: Any) -> str:
    """Every seed's verdict and statistics (:meth:`~clvsmim.claims.ClaimsTable.per_seed_rows`) as HTML."""
    cols, body = table.per_seed_rows()
    rows = [[escape(row[0]), f'<b style="color:{VERDICT_COLOR[row[1]]}">{escape(row[1])}</b>',
             *(escape(c) for c in row[2:])] for row in body]
    return _html_table([escape(c) for c in cols], rows)


def recorded_table(profile: str, root: str | Path | None = None) -> Any:
    """The multi-seed claims table recorded for ``profile`` (:data:`RECORDED_TABLE` under the
    project root, default: found from the cwd), loaded with its verdicts re-checked; ``None``
    when none is recorded."""

    if root is None:
        try:
            root = find_root()
        except FileNotFoundError:  # the package without its project (pip install, no checkout)
            return None
    path = Path(root) / RECORDED_TABLE.format(profile=profile)
    if not path.is_file():
        return None
    table = ClaimsTable.load(path)
    if table.profile != profile:
        raise ValueError(f"{path}: recorded for profile {table.profile!r}, not {profile!r}")
    return table


def table_of_record(profile: str, computed: Any, root: str | Path | None = None) -> Any:
    """The one table the summary chapter's verdicts come from — its sentences, F10 and its tables:
    the recorded multi-seed table of ``profile`` (:func:`recorded_table`) when one exists, else
    ``computed`` (the claims of this build's own seeds). ``computed`` must be of ``profile``."""
    if computed is not None and getattr(computed, "profile", profile) != profile:
        raise ValueError(f"the computed claims table is of profile {computed.profile!r}, not {profile!r}")
    recorded = recorded_table(profile, root)
    if recorded is not None:
        return recorded
    if computed is None:
        raise ValueError(f"no claims table for profile {profile!r}: none recorded "
                         f"({RECORDED_TABLE.format(profile=profile)}) and none computed")
    return computed


def verdict_paragraph(table: Any) -> str:
    """How many claims hold / fail / are inconclusive, and which differ from the paper."""
    d = claims_json(table)
    counts = d["counts"]
    n = len(d["claims"])
    seeds = d["seeds"]
    text = (f"On profile **{d['profile']}** with {len(seeds)} training seed{'s' if len(seeds) > 1 else ''} "
            f"({', '.join(map(str, seeds))}), {counts['holds']} of {n} claims hold, "
            + "".join(f"{counts[v]} {label}, " for v, label in (
                ("fails", "fail"), ("reversed", "are reversed (beyond noise)"), ("tie", "tie (no difference beyond "
                 "noise)"), ("not measurable", "are not measurable")) if counts.get(v))
            + f"and {counts['inconclusive']} are inconclusive.")
    fails = [c for c in d["claims"] if c["verdict"] in ("fails", "reversed", "tie", "not measurable")]
    unsure = [c for c in d["claims"] if c["verdict"] == "inconclusive"]
    if fails:
        text += (" Where these models **differ from the paper**: "
                 + "; ".join(f"{c['id']} ({c['statement'].rstrip('.')})" for c in fails) + ".")
    if unsure:
        text += (" Not decided (seeds disagree, or a number is missing): "
                 + ", ".join(c["id"] for c in unsure) + ".")
    if d.get("missing_models"):
        text += (" Models not trained for this table (the claims reading them are not measured on that seed): "
                 + "; ".join(f"seed {seed}: {', '.join(names)}" for seed, names in d["missing_models"].items()) + ".")
    if len(seeds) == 1:
        text += (" With a single seed a verdict says nothing about its stability; `clvsmim claims --seeds 3` "
                 "repeats the training with three seeds and calls a claim inconclusive when they disagree.")
    return text


def _seed_list(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def seed_disagreements(table: Any) -> str:
    """A Markdown list with one item per claim whose seeds give different verdicts: on which
    seeds it holds, and why it does not on the others (each seed's own reason). Empty when
    every claim's seeds agree."""
    d = claims_json(table)
    items = []
    for c in d["claims"]:
        by_verdict: dict[str, list[dict[str, Any]]] = {}
        for s in c["per_seed"]:
            by_verdict.setdefault(s["verdict"], []).append(s)
        if len(by_verdict) < 2:
            continue
        parts = []
        for verdict in ("holds", "tie", "reversed", "not measurable", "fails", "inconclusive"):
            seeds = by_verdict.get(verdict, [])
            if not seeds:
                continue
            label = "not decided" if verdict == "inconclusive" else verdict
            text = f"{label} on {_seed_list([s['seed'] for s in seeds])}"
            if verdict != "holds":
                text += " (" + "; ".join(f"seed {s['seed']}: {s['reason']}" for s in seeds) + ")"
            parts.append(text)
        items.append(f"- **{c['id']}** ({c['statistic']}, {c['comparison']}): " + "; ".join(parts) + ".")
    return "\n".join(items)


def seed_differences(table: Any) -> list[dict[str, Any]]:
    """The data of figure A-seed-differences: per claim, every seed's signed difference in the
    paper's direction (> 0: as the paper), its SE and the threshold the verdict compares it with,
    ``max(margin, Z·SE)`` — accuracy claims in points, the others in their statistic's unit. A seed
    without a value (not measurable, a model missing) keeps its verdict and reason, values ``None``."""
    out = []
    for c in claims_json(table)["claims"]:
        scale = 100.0 if claim_value_kind(c["id"], "value") == "points" else 1.0
        unit = "points" if scale == 100.0 else SHORT[c["id"]][1].strip()
        seeds = []
        for s in c["per_seed"]:
            value, se = s.get("value"), s.get("se")
            margin = (s.get("details") or {}).get("margin", MARGINS[c["id"]])
            finite_se = se if se is not None and math.isfinite(se) else None
            measured = value is not None and math.isfinite(value)
            seeds.append({"seed": s["seed"], "verdict": s["verdict"], "reason": s["reason"],
                          "value": scale * value if measured else None,
                          "se": scale * finite_se if measured and finite_se is not None else None,
                          "margin": scale * margin,
                          "threshold": scale * threshold(margin, finite_se) if measured else None})
        out.append({"id": c["id"], "name": DIFFERENCE_NAME.get(c["id"], SHORT[c["id"]][0]), "statistic": c["statistic"],
                    "comparison": c["comparison"], "unit": unit, "verdict": c["verdict"], "z": Z, "seeds": seeds})
    return out


def claims_paragraphs(table: Any) -> str:
    """One paragraph per claim (:func:`clvsmim.claims.claim_markdown` of the first seed), with
    every seed's verdict when there are several."""

    by_id = {c["id"]: c for c in claims_json(table)["claims"]}
    out = []
    for s in table.summaries:
        text = claim_markdown(s.per_seed[0])
        if len(s.per_seed) > 1:
            text = text.replace(f"**{s.id} — {s.per_seed[0].verdict}.**", f"**{s.id} — {s.verdict}.**", 1)
            text += (f" *Seed {s.seeds[0]} shown; over seeds {', '.join(map(str, s.seeds))}: "
                     f"{', '.join(c.verdict for c in s.per_seed)} → {s.verdict}.*")
        note = {"C11": scaling_note, "C5": cluster_note}.get(s.id, lambda c: "")(by_id[s.id])
        if note:
            text += f" *Note: {note}.*"
        out.append(text)
    return "\n\n".join(out)


def claims_json(table: Any) -> dict[str, Any]:
    """The table as strict JSON (what ``clvsmim claims --out`` writes)."""
    return table.to_dict() if hasattr(table, "to_dict") else dict(table)
