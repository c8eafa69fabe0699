"""What a claim reads (:class:`Measurements`) and the shared verdict rule: an ordering CL vs MIM
beyond noise, with the control."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from clvsmim.book.units import claim_value_kind, percent, points
from clvsmim.claims.definitions import POOL_WORDS, PROBE_KEY, Claim, is_finite, make_claim, missing_claim
from clvsmim.uncertainty import accuracy_contrast_se, paired_bootstrap_se, per_image_values, three_way, threshold

# --------------------------------------------------------------------------- inputs

@dataclass
class Measurements:
    """What the claims read, by role.

    ``analyses``: ``{"cl" | "mim" | "control": report.model_analysis dict}``;
    ``evaluations``: ``{role: zoo evaluation dict}`` with roles ``cl``, ``mim``, ``control`` and,
    for C11, ``cl-small``, ``cl-large``, ``mim-small``, ``mim-large``, ``control-large``;
    ``cluster``: ``{role: token_cluster_scores dict}`` (``{"depths": [...], "score": [...]}``);
    ``sweep``: ``{λ: evaluation dict}`` with λ = 0 (MIM) … 1 (CL);
    ``names``: the zoo names behind the roles (provenance only);
    ``missing``: zoo names left out because they were not built (``missing="skip"``);
    ``per_image``: ``{"cl" | "mim" | "control": claims.per_image.per_image_statistics dict}`` (SEs of C1–C5);
    ``num_eval``: images behind every accuracy (the binomial SEs of C7–C11 where an evaluation has
    no per-image correctness, :func:`accuracy_contrast_se`); None: no such SEs.
    """

    analyses: dict[str, dict] = field(default_factory=dict)
    evaluations: dict[str, dict] = field(default_factory=dict)
    cluster: dict[str, dict] = field(default_factory=dict)
    sweep: dict[float, dict] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    per_image: dict[str, dict] = field(default_factory=dict)
    num_eval: int | None = None


def last_third(num_blocks: int) -> list[int]:
    """0-based indices (into an ``L``-long per-block list) of the last ``ceil(L/3)`` blocks."""
    if num_blocks < 1:
        raise ValueError(f"need at least one block, got {num_blocks}")
    k = max(1, math.ceil(num_blocks / 3))
    return list(range(num_blocks - k, num_blocks))


def mean_or_none(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def dig(d: dict | None, *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        try:
            d = d[p]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def fmt_value(v: float, kind: str | None = None, signed: bool = False) -> str:
    """A number in a reason: unitless (3 significant digits), or an accuracy (``kind="percent"``)
    or accuracy difference (``"points"``) in the book's unit (:mod:`clvsmim.book.units`)."""

    if kind == "percent":
        return percent(v)
    if kind == "points":
        return points(v, signed=signed)
    return f"{v:+.3g}" if signed else f"{v:.3g}"


def se_text(se: float | None, kind: str | None = None, se_kind: str | None = None) -> str:
    """``SE <value>`` in the claim's unit, with how it was computed (:data:`SE_KIND_WORDS`) if given."""
    if not is_finite(se):
        return "no standard error available"
    how = f", {SE_KIND_WORDS[se_kind]}" if se_kind else ""
    return (f"SE {fmt_value(se, kind)}" if kind else f"SE {se:.2g}") + how


def ordered_verdict(cid: str, cl, mim, control, direction: int, margin: float, rule: str,
                     ses: dict[str, float | None] | None = None, se_kind: str | None = None, **details) -> Claim:
    """The generic "CL > MIM" (``direction=+1``) / "CL < MIM" (``-1``) check with a control.

    ``ses``: standard errors of the differences ``"value"`` (CL − MIM), ``"cl_control"`` and
    ``"mim_control"`` (missing ones: the margin alone decides); ``se_kind``: how they were computed
    (:func:`accuracy_contrast_se`; recorded and named in the reason). See the module docstring.
    Accuracies (:data:`clvsmim.book.units.ACCURACY_CLAIMS`) are written in percent / points."""


    ses = ses or {}
    se = ses.get("value")
    acc = claim_value_kind(cid, "value") is not None  # accuracies: percent / points
    diff, level = ("points", "percent") if acc else (None, None)
    if not is_finite(cl, mim):
        return missing_claim(cid, "CL or MIM statistic", cl=cl, mim=mim, control=control)
    value = direction * (cl - mim) + 0.0  # + 0.0: no "-0" in the reasons
    if not is_finite(control):
        return make_claim(cid, cl, mim, control, value, "inconclusive", "no control measured", se=se, **details)
    t = threshold(margin, se)
    order = three_way(value, se, margin)
    cl_moved = direction * (cl - control) > threshold(margin, ses.get("cl_control"))
    mim_moved = direction * (control - mim) > threshold(margin, ses.get("mim_control"))
    moved = {"mim": mim_moved, "cl": cl_moved, "either": cl_moved or mim_moved}[rule]
    sign, other = (">", "<") if direction > 0 else ("<", ">")
    noise = f"threshold max(margin {fmt_value(margin, diff)}, 2 SE) = {fmt_value(t, diff)}; {se_text(se, diff, se_kind)}"
    if order == "reversed":
        verdict, reason = "reversed", (f"CL {other} MIM beyond noise (signed difference "
                                       f"{fmt_value(value, diff, signed=True)}; {noise})")
    elif order == "tie":
        verdict, reason = "tie", (f"CL and MIM do not differ beyond noise (signed difference "
                                  f"{fmt_value(value, diff, signed=True)}; {noise})")
    elif not moved:
        who = {"mim": "MIM has not", "cl": "CL has not", "either": "neither model has"}[rule]
        verdict, reason = "tie", (f"CL {sign} MIM by {fmt_value(value, diff)}, but {who} moved away from the control "
                                  f"({fmt_value(control, level)}) towards its side beyond noise ({noise})")
    else:
        verdict, reason = "holds", f"CL {sign} MIM by {fmt_value(value, diff)} ({noise}); " + (
            "both moved from the control" if cl_moved and mim_moved else
            ("CL" if cl_moved else "MIM") + " moved away from the control")
    return make_claim(cid, cl, mim, control, value, verdict, reason, se=se,
                  margin=margin, rule=rule, cl_moved=cl_moved, mim_moved=mim_moved,
                  ses={k: v for k, v in ses.items() if is_finite(v)}, **({"se_kind": se_kind} if se_kind else {}),
                  **details)


def image_ses(m: Measurements, metric: str, depths: Sequence[int], direction: int) -> dict[str, float]:
    """Paired bootstrap SEs (over the analysis images) of CL − MIM, CL − control and control −
    MIM for the per-image mean of ``metric`` over ``depths``; {} without per-image values."""

    vals = {r: per_image_values(m.per_image.get(r), metric, depths) for r in ("cl", "mim", "control")}
    if any(v is None for v in vals.values()) or len({len(v) for v in vals.values()}) != 1:
        return {}
    return {"value": paired_bootstrap_se(vals["cl"], vals["mim"]),
            "cl_control": paired_bootstrap_se(vals["cl"], vals["control"]),
            "mim_control": paired_bootstrap_se(vals["control"], vals["mim"])}


def own_control_role(m: Measurements, role: str) -> tuple[str, str]:
    """The role of the untrained control ``role``'s fine-tuning is measured against:
    ``control-<role>`` (the control of that model's own architecture) when it was measured, else
    the shared ``control`` (``control-large`` for a ``-large`` role), and a note for the reason."""
    own, shared = f"control-{role}", "control-large" if role.endswith("-large") else "control"
    who = "MIM" if role.startswith("mim") else "CL"
    if own in m.evaluations:
        return own, f"{who}'s control is the untrained encoder of its own architecture ({m.names.get(own, own)})"
    if own in m.names:
        return shared, (f"the untrained control of {who}'s own architecture ({m.names[own]}) was not "
                        f"measured: {who} is compared with the shared control")
    return shared, ""


#: How :func:`accuracy_contrast_se` computed an SE, as a reason says it.
SE_KIND_WORDS = {"paired": "paired over the evaluation images",
                 "paired+runs": "paired over the evaluation images, plus the fine-tuning runs' variance",
                 "binomial": "binomial, as if the accuracies came from different images"}


def rate_ses(m: Measurements, cl, mim, control, correct: Sequence[dict | None] = (None, None, None)
             ) -> tuple[dict[str, float], str | None]:
    """SEs of the differences ``value`` (CL − MIM), ``cl_control`` and ``mim_control`` of three
    accuracies (``correct``: their per-image records, in the same order) and how the CL − MIM one
    was computed (:func:`accuracy_contrast_se`)."""
    terms = dict(zip(("cl", "mim", "control"), zip((cl, mim, control), correct)))
    ses, kinds = {}, {}
    for name, (a, b) in {"value": ("cl", "mim"), "cl_control": ("cl", "control"),
                         "mim_control": ("control", "mim")}.items():
        se, kinds[name] = accuracy_contrast_se([(1.0, *terms[a]), (-1.0, *terms[b])], m.num_eval)
        if se is not None:
            ses[name] = se
    return ses, kinds["value"]


def probe_correct(probe: dict | None, depth: int) -> dict | None:
    """The per-image correctness record of ``probe``'s depth ``depth`` (None: not recorded)."""
    records = dig(probe, "correct_per_layer")
    return records[depth] if isinstance(records, list) and -len(records) <= depth < len(records) else None


# --------------------------------------------------------------------------- probes by pooling

def probe_of(m: Measurements, role: str, pool: str) -> tuple[dict | None, str]:
    """``role``'s linear probe with ``pool`` (:data:`~clvsmim.claims.definitions.PROBE_KEY`) and the
    pooling actually read: the mean-pooled probe when the evaluation has none with ``pool``."""
    ev = m.evaluations.get(role)
    probe = dig(ev, PROBE_KEY[pool])
    if isinstance(probe, dict) and probe.get("per_layer"):
        return probe, pool
    return dig(ev, PROBE_KEY["mean"]), "mean"


_PROBE_LABELS = {"cl": "CL", "mim": "MIM", "control": "the control", "control_vs_cl": "the control vs CL",
                 "control_vs_mim": "the control vs MIM"}


def pool_note(wanted: dict[str, str], used: dict[str, str]) -> str:
    """The clause a probe claim's reason ends with: which representation each model was read on
    (``used``: role -> pooling, roles ``cl``, ``mim``, ``control``, ``control_vs_cl``,
    ``control_vs_mim``), and each fallback from ``wanted``."""
    by_pool: dict[str, list[str]] = {}
    for role, pool in used.items():
        by_pool.setdefault(pool, []).append(_PROBE_LABELS[role])
    if len(by_pool) == 1:
        text = f"probes: every model on {POOL_WORDS[next(iter(by_pool))]}"
    else:
        text = "probes: " + "; ".join(f"{', '.join(labels)} on {POOL_WORDS[pool]}" for pool, labels in by_pool.items())
    missing = [_PROBE_LABELS[role] for role, pool in wanted.items() if used.get(role) != pool]
    if missing:
        text += f" (no normed-CLS probe measured for {', '.join(missing)}: mean-pooled read instead)"
    return text
