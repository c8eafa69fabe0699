"""Across training seeds: each claim's summary (:func:`aggregate`) and the table of record
(:class:`ClaimsTable`)."""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from clvsmim.book.units import ACCURACY_DIGITS, claim_value_kind, percent, points, to_percent
from clvsmim.cache import json_safe as _json_safe
from clvsmim.cache import write_json_atomic
from clvsmim.claims.definitions import CONTROL_RULE, MARGINS, VERDICT_MARKS, VERDICTS, Claim, is_finite
from clvsmim.claims.markdown import _num
from clvsmim.config import Profile

# --------------------------------------------------------------------------- seeds

def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    finite = [float(v) for v in values if is_finite(v)]
    mean = sum(finite) / len(finite) if finite else None
    std = statistics.stdev(finite) if len(finite) >= 2 else None
    return {"per_seed": [None if not is_finite(v) else float(v) for v in values], "mean": mean, "std": std}


@dataclass
class ClaimSummary:
    """One claim over several seeds: the per-seed claims, mean ± std and the overall verdict."""

    id: str
    seeds: list[int]
    per_seed: list[Claim]
    verdict: str

    def _first(self) -> Claim:
        return self.per_seed[0]

    row = property(lambda self: self._first().row)
    statement = property(lambda self: self._first().statement)
    statistic = property(lambda self: self._first().statistic)
    comparison = property(lambda self: self._first().comparison)
    cl_label = property(lambda self: self._first().cl_label)
    mim_label = property(lambda self: self._first().mim_label)

    def stat(self, which: str) -> dict[str, Any]:
        """``{"per_seed", "mean", "std"}`` of ``cl`` / ``mim`` / ``control`` / ``value``."""
        return _stat([getattr(c, which) for c in self.per_seed])

    def to_dict(self) -> dict[str, Any]:
        c = self._first()
        return _json_safe({
            "id": self.id, "row": c.row, "statement": c.statement, "statistic": c.statistic,
            "comparison": c.comparison, "control_rule": CONTROL_RULE[self.id], "cl_label": c.cl_label,
            "mim_label": c.mim_label, "verdict": self.verdict, "seeds": self.seeds,
            "cl": self.stat("cl"), "mim": self.stat("mim"), "control": self.stat("control"),
            "value": self.stat("value"),
            "per_seed": [{"seed": s, **claim.to_dict()} for s, claim in zip(self.seeds, self.per_seed)],
        })


def aggregate(per_seed: Sequence[Claim], seeds: Sequence[int] | None = None) -> ClaimSummary:
    """Verdict over seeds: the same verdict on every seed → that verdict; else inconclusive."""
    if not per_seed:
        raise ValueError("aggregate: no seeds")
    ids = {c.id for c in per_seed}
    if len(ids) != 1:
        raise ValueError(f"aggregate: claims of different ids {sorted(ids)}")
    verdicts = {c.verdict for c in per_seed}
    verdict = verdicts.pop() if len(verdicts) == 1 else "inconclusive"
    seeds = list(seeds) if seeds is not None else list(range(len(per_seed)))
    return ClaimSummary(id=per_seed[0].id, seeds=seeds, per_seed=list(per_seed), verdict=verdict)


def _fmt(stat: dict[str, Any], digits: int = 3, kind: str | None = None) -> str:
    """``mean ± std``; accuracies (``kind`` "percent" / "points") in the book's unit."""

    if stat["mean"] is None:
        return "—"
    if kind in ("percent", "points"):
        mean, std = to_percent(stat["mean"]), to_percent(stat["std"])
        unit = " %" if kind == "percent" else " points"
        return (f"{mean:.{ACCURACY_DIGITS}f}" + (f" ± {std:.{ACCURACY_DIGITS}f}" if std is not None else "")
                + unit)
    text = f"{stat['mean']:.{digits}g}"
    return text + (f" ± {stat['std']:.2g}" if stat["std"] is not None else "")


def _difference_text(cid: str, value: float | None, se: float | None) -> str:
    """One seed's signed difference ± SE: accuracy differences in points (``+5.5 ± 0.6 points``),
    other statistics unitless."""
    if claim_value_kind(cid, "value") != "points" or value is None or not math.isfinite(value):
        return _num(value) + ("" if se is None else f" ± {se:.2g}")
    if se is None or not math.isfinite(se):
        return points(value)
    return points(value).removesuffix(" points") + " ± " + points(se, signed=False)


def _num_of(cid: str, which: str, v: float | None) -> str:
    """One seed's statistic: accuracies in percent / points, other statistics unitless."""

    kind = claim_value_kind(cid, which)
    if kind is None or v is None or not math.isfinite(v):
        return _num(v)
    return percent(v) if kind == "percent" else points(v, signed=False)


@dataclass
class ClaimsTable:
    """The claims over seeds: ``summaries`` in C1… order, plus provenance."""

    profile: str
    seeds: list[int]
    summaries: list[ClaimSummary]
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # seed -> role -> zoo name
    wall_time_s: float | None = None
    missing_models: dict[str, list[str]] = field(default_factory=dict)  # seed -> names not built (skipped)

    def __getitem__(self, cid: str) -> ClaimSummary:
        for s in self.summaries:
            if s.id == cid:
                return s
        raise KeyError(cid)

    def counts(self) -> dict[str, int]:
        return {v: sum(s.verdict == v for s in self.summaries) for v in VERDICTS}

    @property
    def has_standard_errors(self) -> bool:
        """Whether the claims carry standard errors (tables recorded before them do not)."""
        return any(c.se is not None for s in self.summaries for c in s.per_seed)

    def note(self) -> str:
        """One line on how the verdicts were reached ("" for a table with standard errors)."""
        if self.has_standard_errors:
            return ""
        if any(c.verdict == "fails" for s in self.summaries for c in s.per_seed):
            return ("recorded without standard errors (before verdicts carried uncertainty): 'fails' means "
                    "'not ordered as the paper says by more than the margin', noise not taken into account")
        return "no standard errors available: verdicts use the claims' margins alone"

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({"profile": self.profile, "seeds": self.seeds, "margins": MARGINS,
                           "counts": self.counts(), "models": self.models, "missing_models": self.missing_models,
                           "wall_time_s": self.wall_time_s,
                           "claims": [s.to_dict() for s in self.summaries]})

    def rows(self) -> list[dict[str, str]]:
        """Display rows: id, verdict, statistic, CL, MIM, control, value, per-seed verdicts
        (accuracies in percent, accuracy differences in points)."""

        return [{"id": s.id, "verdict": s.verdict, "comparison": s.comparison, "statistic": s.statistic,
                 **{label: _fmt(s.stat(k), kind=claim_value_kind(s.id, k))
                    for label, k in (("CL", "cl"), ("MIM", "mim"), ("control", "control"), ("value", "value"))},
                 "seeds": " ".join(c.verdict for c in s.per_seed)} for s in self.summaries]

    def to_frame(self):
        import pandas as pd  # lazy: `clvsmim claims` prints text; only a notebook asks for a DataFrame

        return pd.DataFrame(self.rows()).set_index("id")

    def format(self) -> str:
        """A plain-text table (what ``clvsmim claims`` prints)."""
        rows = self.rows()
        cols = ["id", "verdict", "comparison", "CL", "MIM", "control", "value", "seeds", "statistic"]
        table = [cols] + [[r[c] for c in cols] for r in rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(cols))]
        lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
        counts = self.counts()
        lines.append(f"profile {self.profile}, seeds {self.seeds}: " +
                     ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v] or v in ("holds", "inconclusive")))
        if self.note():
            lines.append(f"note: {self.note()}")
        lines += [f"seed {seed}: not built, left out: {', '.join(names)}" for seed, names in self.missing_models.items()]
        return "\n".join(lines)

    def markdown(self, per_seed: bool = False) -> str:
        """A Markdown table (no extra dependency).

        ``per_seed=True``: one column of verdict marks (✓ holds, ✗ fails, ? inconclusive) and the
        CL / MIM / control statistic of every seed (``a / b / c``) instead of mean ± std.
        """
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        if per_seed:
            cols, body = self.per_seed_rows()
            body = [[row[0], f"**{row[1]}**", *row[2:]] for row in body]
        else:
            cols = ["id", "verdict", "comparison", "CL", "MIM", "control", "seeds", "statistic"]
            body = [[r[c] for c in cols] for r in self.rows()]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in body]
        return "\n".join(lines)

    def per_seed_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows: claim, verdict, the seeds' verdict marks (✓ ✗ ?), and the CL / MIM /
        control statistic of every seed as ``a / b / c``."""
        seeds = "/".join(str(s) for s in self.seeds)
        cols = ["claim", "verdict", "per seed", f"CL (seeds {seeds})", "MIM", "control"]
        body = [[f"{s.id} {s.statistic} ({s.comparison})", s.verdict,
                 " ".join(VERDICT_MARKS[c.verdict] for c in s.per_seed),
                 *(" / ".join(_num_of(s.id, k, v) for v in s.stat(k)["per_seed"]) for k in ("cl", "mim", "control"))]
                for s in self.summaries]
        if self.has_standard_errors:  # the signed difference and its SE, per seed
            cols.append("signed difference ± SE")
            for row, s in zip(body, self.summaries):
                row.append(" / ".join(_difference_text(s.id, c.value, c.se) for c in s.per_seed))
        return cols, body

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClaimsTable":
        """Inverse of :meth:`to_dict`; the stored verdicts must agree with :func:`aggregate`."""
        for key in ("profile", "seeds", "claims"):
            if key not in d:
                raise KeyError(f"claims table: missing key {key!r} (found {sorted(d)})")
        seeds = [int(s) for s in d["seeds"]]
        summaries = []
        for c in d["claims"]:
            got = [int(p["seed"]) for p in c["per_seed"]]
            if got != seeds:
                raise ValueError(f"claims table: {c['id']} has seeds {got}, the table {seeds}")
            summary = aggregate([Claim.from_dict(p) for p in c["per_seed"]], seeds)
            if summary.verdict != c["verdict"]:
                raise ValueError(f"claims table: {c['id']} is stored as {c['verdict']!r} but its seeds give "
                                 f"{summary.verdict!r}")
            summaries.append(summary)
        return cls(profile=d["profile"], seeds=seeds, summaries=summaries, models=d.get("models", {}),
                   wall_time_s=d.get("wall_time_s"), missing_models=d.get("missing_models", {}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClaimsTable":
        """Read a table written by :meth:`save` (``clvsmim claims --out``)."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error})") from None
        except (KeyError, ValueError) as error:
            raise type(error)(f"{path}: {error.args[0] if error.args else error}") from None

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, self.to_dict(), indent=1, allow_nan=False)


def seeds_for(profile: Profile, n: int, first: int | None = None) -> list[int]:
    """``n`` training seeds from ``first`` (default: the profile's own, whose zoo the book uses)."""
    if n < 1:
        raise ValueError(f"need at least one seed, got {n}")
    start = profile.train.seed if first is None else int(first)
    return [start + i for i in range(n)]
