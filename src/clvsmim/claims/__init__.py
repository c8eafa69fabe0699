"""The paper's findings as checked claims: a statistic, a comparison and a verdict each.

Every claim is a function of one :class:`Measurements` bundle — the cached analyses
(:func:`clvsmim.book.report.model_analysis`) and evaluations (:func:`clvsmim.train.zoo.evaluations`) of
the CL model (MoCo v3), the MIM model (SimMIM), the randomly initialised **control** of the
same architecture and the λ sweep of hybrids — and returns a :class:`Claim`: the statistic
for CL, MIM and the control, a signed ``value`` (positive = the ordering the paper states),
and a verdict. :func:`claims_table` repeats this for several training seeds and aggregates.

The claims
----------
======  ==================  ===========================================================  ==========
id      row                 statistic                                                    direction
======  ==================  ===========================================================  ==========
C1      self-attention      mean attention distance (px), mean over the last third of    CL > MIM
                            the blocks (the last ``ceil(L/3)`` blocks)
C2      self-attention      attention NMI, same blocks                                   CL < MIM
C3      representation      token cosine similarity within an image, mean over the       CL > MIM
                            block outputs 1..L (depth 0, the embeddings, left out)
C4      representation      Fourier Δ log amplitude of the highest frequency, mean       CL < MIM
                            over every depth 0..L
C5      representation      silhouette (cosine) of the patch tokens grouped by image     CL > MIM
                            id, at the last depth L, on the analysis images
C6      self-attention      shape bias on the cue-conflict split (shape decisions /      CL > MIM
                            (shape + texture decisions)), final-depth linear probe
C7      architecture        depth of the best linear probe: the last block for CL         see below
                            (within the margin), and MIM's accuracy drops over its last
                            blocks (``max_{d<L} acc_d − acc_L`` > margin)
C8      CL + MIM            ``max_{0<λ<1} min(Δ linear probe, Δ fine-tune)`` where Δ is  ≥ 0
                            the hybrid's accuracy minus the better of λ = 0 and λ = 1
C9      behaviour           final-depth linear-probe accuracy                            CL > MIM
C10     behaviour           fine-tuning accuracy                                         CL < MIM
C11     behaviour           fine-tuning gain from the smallest to the largest size of    CL < MIM
                            ``profile.sizes`` (needs two sizes; "inconclusive" without)
======  ==================  ===========================================================  ==========

The control
-----------
An untrained ViT already sits at one end of several scales (its attention is nearly uniform:
global and collapsed, NMI ≈ 0). An ordering "CL > MIM" is therefore only evidence for the
paper when the trained models moved away from the control **in the stated direction**. With
``s = +1`` for "CL > MIM" and ``−1`` for "CL < MIM", margin ``m`` (:data:`MARGINS`):

* *ordered*: ``s·(CL − MIM) > m`` (this signed difference is the claim's ``value``);
* *CL moved*: ``s·(CL − control) > m`` — CL went further to its own side than the control;
* *MIM moved*: ``s·(control − MIM) > m`` — MIM went further to its own side.

Each claim says which movement it needs (:data:`CONTROL_RULE`):

* C1, C2 — ``"mim"``: the control already has global, collapsed attention, so these claims
  hold only if MIM moved away from it towards local attention / high NMI *and* CL stays on
  the global / collapsed side of MIM (the ordering). A CL that is merely as global as an
  untrained net is fine; a MIM that never left the control is not a finding.
* C9 — ``"cl"``: CL's linear-probe accuracy must beat the control's (a random net is a
  linear-probe baseline); C10, C11 — ``"mim"``: MIM's fine-tuning accuracy (of the largest
  size for C11) must beat fine-tuning the control from scratch.
* C3, C4, C5, C6 — ``"either"``: where the control lies is not known a priori, so at least one
  of the two trained models must have moved away from it towards its own side.
* C7 — CL's last-block probe must beat the control's last-block probe, and MIM's best
  probe must beat the control's probe at that depth (the profile of accuracies over depth is
  learned, not inherited from the initialisation).
* C8 — the winning hybrid must beat the control on both linear probing and fine-tuning.

Uncertainty and verdicts
------------------------
Every statistic carries a standard error (:mod:`clvsmim.uncertainty`): a paired bootstrap over
the analysis images for C1–C5 (per-image values from :func:`clvsmim.uncertainty.per_image_statistics`),
the binomial SE of a rate for C6–C11 (accuracies on the ``num_eval`` evaluation images, the
shape bias on its decided images). A seed's verdict, with ``t = max(margin, 2·SE)`` of the
difference at hand:

* ``"holds"``: ``s·(CL − MIM) > t`` and the control rule is met beyond its own ``t``;
* ``"reversed"``: ``s·(CL − MIM) < −t`` (the opposite ordering, beyond noise);
* ``"tie"``: anything else — the ordering is within noise or the margin, or it is there but the
  model the rule names did not leave the control beyond noise (no effect of training);
* ``"not measurable"``: a precondition fails (C6: both cue probes of CL and MIM must reach
  twice chance before a bias ratio is read), with the reason;
* ``"inconclusive"``: a number is missing or not finite.

Without an SE (old caches, hand-made inputs) ``t`` is the margin alone and the reason says so.
Tables recorded before this rule carry ``"fails"`` (ordered the wrong way *or* not at all) and
no SEs; they load and print as recorded. Across seeds (:func:`aggregate`): the same verdict on
every seed → that verdict; anything else → ``inconclusive``.

Seeds
-----
The seed of a claim is the zoo's *training* seed: :func:`seed_profile` replaces
``profile.train.seed`` (and any per-objective override of it); the data, and so the
analysis images and the evaluation splits, stay fixed. The control is re-initialised from
the same seed. The profile's own seed reuses the book's zoo.

Command line: ``clvsmim claims --profile P [--seeds N] [--data PATH] [--out FILE.json]``;
``clvsmim claims --show FILE.json [--markdown]`` prints a saved table again.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from clvsmim.cache import cached_json, json_safe as _json_safe, write_json_atomic
from clvsmim.config import Profile, config_key, seed_profile

__all__ = [
    "VERDICTS", "MARGINS", "CONTROL_RULE", "ROWS", "ClaimInfo", "Claim", "with_claim", "ClaimSummary", "ClaimsTable",
    "Measurements",
    "CLAIMS", "evaluate_claims", "evaluate_claim", "claim_markdown", "aggregate", "last_third", "seed_profile",
    "seeds_for",
    "model_names", "measure", "claims_table", "model_cache_path", "cached_json", "token_cluster_scores",
]

VERDICTS = ("holds", "tie", "reversed", "not measurable", "fails", "inconclusive")  # "fails": old tables only
VERDICT_MARKS = {"holds": "✓", "tie": "=", "reversed": "✗", "not measurable": "–", "fails": "✗",
                 "inconclusive": "?"}
#: C6's precondition: each cue probe (shape / texture hits on the cue-conflict images) of CL and
#: MIM must reach this multiple of chance (1 / number of classes) before a bias ratio is read.
C6_MIN_CUE_OVER_CHANCE = 2.0

#: Margin of every claim, in the unit of its statistic: a difference smaller than this is no
#: difference (neither for the ordering nor for "moved from the control"). C1's margin is
#: relative: a fraction of the control's mean attention distance (pixels scale with the image).
MARGINS: dict[str, float] = {
    "C1": 0.02,  # × control distance
    "C2": 0.01,  # NMI
    "C3": 0.01,  # cosine similarity
    "C4": 0.02,  # log amplitude
    "C5": 0.01,  # silhouette
    "C6": 0.02,  # shape bias (fraction)
    "C7": 0.01,  # accuracy
    "C8": 0.01,  # accuracy (control only; "at least as good" needs >= 0)
    "C9": 0.01,  # accuracy
    "C10": 0.01,  # accuracy
    "C11": 0.01,  # accuracy
}

#: Which trained model must have moved away from the control (see the module docstring).
CONTROL_RULE: dict[str, str] = {
    "C1": "mim", "C2": "mim", "C3": "either", "C4": "either", "C5": "either", "C6": "either",
    "C7": "both", "C8": "hybrid", "C9": "cl", "C10": "mim", "C11": "mim",
}

#: Rows of the CL-vs-MIM table (F10) and the claims backing each, in display order.
ROWS: dict[str, tuple[str, ...]] = {
    "behaviour": ("C9", "C10", "C11"),
    "self-attention": ("C1", "C2", "C6"),
    "representation": ("C5", "C3", "C4"),
    "architecture": ("C7",),
    "CL + MIM": ("C8",),
}


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class ClaimInfo:
    """What a claim says, independent of any measurement (:data:`INFO`)."""

    row: str
    statement: str
    statistic: str
    comparison: str
    cl_label: str
    mim_label: str


@dataclass(frozen=True)
class Claim(ClaimInfo):
    """One claim measured on one seed: its :class:`ClaimInfo` plus the numbers.

    ``cl`` / ``mim`` / ``control``: the statistic of each model (``None`` when not measured);
    ``value``: the signed margin in the claim's direction (positive = as the paper says);
    ``verdict`` in :data:`VERDICTS`; ``reason``: one line saying why; ``details``: the other
    numbers the verdict used; ``se``: the standard error of ``value`` (None: not available).
    """

    id: str
    cl: float | None
    mim: float | None
    control: float | None
    value: float | None
    verdict: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    se: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Claim":
        """Inverse of :meth:`to_dict` (extra keys, such as a table's ``seed``, are ignored)."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d and n not in ("details", "se")]
        if missing:
            raise KeyError(f"claim {d.get('id', '?')}: missing key(s) {missing}")
        wording = {}
        if d["id"] in INFO:  # the claim's wording is a definition: a recorded table shows the current one
            info = INFO[d["id"]]
            wording = {"statement": info.statement, "cl_label": info.cl_label, "mim_label": info.mim_label}
        return cls(**{n: d[n] for n in names if n in d} | wording)


INFO: dict[str, ClaimInfo] = {
    "C1": ClaimInfo("self-attention", "CL attends more globally than MIM, especially in the later blocks.",
                "mean attention distance (px), last third of the blocks", "CL > MIM",
                "global attention", "local attention"),
    "C2": ClaimInfo("self-attention", "CL's attention collapses to the same map for every query and head, "
                "especially in the later blocks; MIM's does not.",
                "attention NMI, last third of the blocks", "CL < MIM",
                "collapsed (query-independent)", "query-dependent"),
    "C3": ClaimInfo("representation", "CL's tokens are homogeneous within an image.",
                "token cosine similarity, mean over blocks 1..L", "CL > MIM",
                "homogeneous tokens", "diverse tokens"),
    "C4": ClaimInfo("representation", "CL captures low frequencies, MIM high frequencies.",
                "Fourier Δ log amplitude (highest frequency), mean over depths 0..L", "CL < MIM",
                "low-frequency", "high-frequency"),
    "C5": ClaimInfo("representation", "CL separates images: the tokens of one image cluster together; MIM's intermingle.",
                "silhouette of tokens by image id (cosine), last depth", "CL > MIM",
                "distinguishes images", "distinguishes tokens"),
    "C6": ClaimInfo("self-attention", "CL is shape-biased, MIM texture-biased.",
                "shape bias on cue-conflict images", "CL > MIM",
                "shape-oriented", "texture-oriented"),
    "C7": ClaimInfo("architecture", "CL relies on the later layers, MIM on the earlier ones: CL's best linear probe "
                "is at the last block, MIM's is earlier and its accuracy drops over the last blocks.",
                "depth of the best linear probe (MIM: accuracy drop over the last blocks)",
                "CL best = L; MIM best < L",
                "later layers matter", "early layers matter"),
    "C8": ClaimInfo("CL + MIM", "Some hybrid 0 < λ < 1 is at least as good as both λ = 0 (MIM) and λ = 1 (CL) "
                "on linear probing and on fine-tuning.",
                "max over 0<λ<1 of min(Δ linear probe, Δ fine-tune) vs the better endpoint",
                "≥ 0",
                "λ = 1", "λ = 0"),
    "C9": ClaimInfo("behaviour", "CL is better than MIM at linear probing.",
                "linear-probe accuracy (last depth)", "CL > MIM",
                "better at linear probing", "worse at linear probing"),
    "C10": ClaimInfo("behaviour", "MIM is better than CL at fine-tuning.",
                 "fine-tuning accuracy", "CL < MIM",
                 "worse at fine-tuning", "better at fine-tuning"),
    "C11": ClaimInfo("behaviour", "MIM gains more than CL from a larger model (in the paper CL suits small "
                 "models, MIM large ones).",
                 "fine-tuning gain, smallest → largest size", "CL < MIM",
                 "gains less with size", "gains more with size"),
}


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _claim(cid: str, cl=None, mim=None, control=None, value=None, verdict="inconclusive", reason="",
           se=None, **details) -> Claim:
    f = lambda v: None if v is None or not _finite(v) else float(v)  # noqa: E731
    return Claim(**dataclasses.asdict(INFO[cid]), id=cid, cl=f(cl), mim=f(mim), control=f(control), value=f(value), verdict=verdict, reason=reason,
                 details=_json_safe(details), se=f(se))


def _missing(cid: str, what: str, **values) -> Claim:
    return _claim(cid, verdict="inconclusive", reason=f"not measured: {what}", **values)


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
    ``per_image``: ``{"cl" | "mim" | "control": uncertainty.per_image_statistics dict}`` (SEs of C1–C5);
    ``num_eval``: images behind every accuracy (binomial SEs of C7–C11); None: no SEs.
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


def _mean(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def _get(d: dict | None, *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        try:
            d = d[p]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def _q(v: float, kind: str | None = None, signed: bool = False) -> str:
    """A number in a reason: unitless (3 significant digits), or an accuracy (``kind="percent"``)
    or accuracy difference (``"points"``) in the book's unit (:mod:`clvsmim.book.units`)."""
    from clvsmim.book.units import percent, points

    if kind == "percent":
        return percent(v)
    if kind == "points":
        return points(v, signed=signed)
    return f"{v:+.3g}" if signed else f"{v:.3g}"


def _se_text(se: float | None, kind: str | None = None) -> str:
    if not _finite(se):
        return "no standard error available"
    return f"SE {_q(se, kind)}" if kind else f"SE {se:.2g}"


def _ordered_verdict(cid: str, cl, mim, control, direction: int, margin: float, rule: str,
                     ses: dict[str, float | None] | None = None, **details) -> Claim:
    """The generic "CL > MIM" (``direction=+1``) / "CL < MIM" (``-1``) check with a control.

    ``ses``: standard errors of the differences ``"value"`` (CL − MIM), ``"cl_control"`` and
    ``"mim_control"`` (missing ones: the margin alone decides). See the module docstring.
    Accuracies (:data:`clvsmim.book.units.ACCURACY_CLAIMS`) are written in percent / points."""
    from clvsmim.uncertainty import threshold, three_way

    from clvsmim.book.units import claim_value_kind

    ses = ses or {}
    se = ses.get("value")
    acc = claim_value_kind(cid, "value") is not None  # accuracies: percent / points
    diff, level = ("points", "percent") if acc else (None, None)
    if not _finite(cl, mim):
        return _missing(cid, "CL or MIM statistic", cl=cl, mim=mim, control=control)
    value = direction * (cl - mim) + 0.0  # + 0.0: no "-0" in the reasons
    if not _finite(control):
        return _claim(cid, cl, mim, control, value, "inconclusive", "no control measured", se=se, **details)
    t = threshold(margin, se)
    order = three_way(value, se, margin)
    cl_moved = direction * (cl - control) > threshold(margin, ses.get("cl_control"))
    mim_moved = direction * (control - mim) > threshold(margin, ses.get("mim_control"))
    moved = {"mim": mim_moved, "cl": cl_moved, "either": cl_moved or mim_moved}[rule]
    sign, other = (">", "<") if direction > 0 else ("<", ">")
    noise = f"threshold max(margin {_q(margin, diff)}, 2 SE) = {_q(t, diff)}; {_se_text(se, diff)}"
    if order == "reversed":
        verdict, reason = "reversed", (f"CL {other} MIM beyond noise (signed difference "
                                       f"{_q(value, diff, signed=True)}; {noise})")
    elif order == "tie":
        verdict, reason = "tie", (f"CL and MIM do not differ beyond noise (signed difference "
                                  f"{_q(value, diff, signed=True)}; {noise})")
    elif not moved:
        who = {"mim": "MIM has", "cl": "CL has", "either": "neither model has"}[rule]
        verdict, reason = "tie", (f"CL {sign} MIM by {_q(value, diff)}, but {who} moved away from the control "
                                  f"({_q(control, level)}) towards its side beyond noise ({noise})")
    else:
        verdict, reason = "holds", f"CL {sign} MIM by {_q(value, diff)} ({noise}); " + (
            "both moved from the control" if cl_moved and mim_moved else
            ("CL" if cl_moved else "MIM") + " moved away from the control")
    return _claim(cid, cl, mim, control, value, verdict, reason, se=se,
                  margin=margin, rule=rule, cl_moved=cl_moved, mim_moved=mim_moved,
                  ses={k: v for k, v in ses.items() if _finite(v)}, **details)


def _image_ses(m: Measurements, metric: str, depths: Sequence[int], direction: int) -> dict[str, float]:
    """Paired bootstrap SEs (over the analysis images) of CL − MIM, CL − control and control −
    MIM for the per-image mean of ``metric`` over ``depths``; {} without per-image values."""
    from clvsmim.uncertainty import paired_bootstrap_se, per_image_values

    vals = {r: per_image_values(m.per_image.get(r), metric, depths) for r in ("cl", "mim", "control")}
    if any(v is None for v in vals.values()) or len({len(v) for v in vals.values()}) != 1:
        return {}
    return {"value": paired_bootstrap_se(vals["cl"], vals["mim"]),
            "cl_control": paired_bootstrap_se(vals["cl"], vals["control"]),
            "mim_control": paired_bootstrap_se(vals["control"], vals["mim"])}


def _rate_ses(m: Measurements, cl, mim, control) -> dict[str, float]:
    """Binomial SEs of the differences of three accuracies on ``m.num_eval`` images; {} without it."""
    from clvsmim.uncertainty import rate_difference_se

    if not m.num_eval or not _finite(cl, mim, control) or not all(0 <= v <= 1 for v in (cl, mim, control)):
        return {}
    n = [m.num_eval] * 2
    return {"value": rate_difference_se([cl, mim], n), "cl_control": rate_difference_se([cl, control], n),
            "mim_control": rate_difference_se([control, mim], n)}


# --------------------------------------------------------------------------- the claims

CLAIMS: dict[str, Callable[[Measurements], Claim]] = {}


def _register(cid: str):
    def deco(fn):
        CLAIMS[cid] = fn
        fn.claim_id = cid
        return fn
    return deco


def _last_third_mean(analysis: dict | None, metric: str) -> tuple[float | None, list[int]]:
    curve = _get(analysis, metric, "mean")
    if not curve:
        return None, []
    idx = last_third(len(curve))
    return _mean([curve[i] for i in idx]), [i + 1 for i in idx]


@_register("C1")
def c1_attention_distance(m: Measurements) -> Claim:
    """Mean attention distance over the last third of the blocks: CL > MIM; MIM must have
    moved towards local attention (below the control by 2 % of the control's distance)."""
    cl, blocks = _last_third_mean(m.analyses.get("cl"), "attention_distance")
    mim, _ = _last_third_mean(m.analyses.get("mim"), "attention_distance")
    control, _ = _last_third_mean(m.analyses.get("control"), "attention_distance")
    margin = MARGINS["C1"] * abs(control) if _finite(control) else MARGINS["C1"]
    ses = _image_ses(m, "attention_distance", [b - 1 for b in blocks], +1)
    return _ordered_verdict("C1", cl, mim, control, +1, margin, CONTROL_RULE["C1"], ses, blocks=blocks)


@_register("C2")
def c2_nmi(m: Measurements) -> Claim:
    """NMI over the last third of the blocks: CL < MIM; MIM must have moved up from the control."""
    cl, blocks = _last_third_mean(m.analyses.get("cl"), "nmi")
    mim, _ = _last_third_mean(m.analyses.get("mim"), "nmi")
    control, _ = _last_third_mean(m.analyses.get("control"), "nmi")
    ses = _image_ses(m, "nmi", [b - 1 for b in blocks], -1)
    return _ordered_verdict("C2", cl, mim, control, -1, MARGINS["C2"], CONTROL_RULE["C2"], ses, blocks=blocks)


def _blocks_mean(analysis: dict | None, key: str, include_embeddings: bool) -> float | None:
    curve = _get(analysis, *key.split("."))
    if not curve:
        return None
    return _mean(curve if include_embeddings else curve[1:])


@_register("C3")
def c3_token_cosine(m: Measurements) -> Claim:
    """Token cosine similarity, mean over block outputs 1..L: CL > MIM."""
    vals = [_blocks_mean(m.analyses.get(r), "token_cosine", False) for r in ("cl", "mim", "control")]
    depth = len(_get(m.analyses.get("cl"), "token_cosine") or [])
    ses = _image_ses(m, "token_cosine", range(1, depth), +1)
    return _ordered_verdict("C3", *vals, +1, MARGINS["C3"], CONTROL_RULE["C3"], ses)


@_register("C4")
def c4_fourier(m: Measurements) -> Claim:
    """Fourier Δ log amplitude (highest frequency), mean over depths 0..L: CL < MIM."""
    vals = [_blocks_mean(m.analyses.get(r), "fourier.delta_log_amplitude", True) for r in ("cl", "mim", "control")]
    depth = len(_get(m.analyses.get("cl"), "fourier", "delta_log_amplitude") or [])
    ses = _image_ses(m, "fourier_delta", range(depth), -1)
    return _ordered_verdict("C4", *vals, -1, MARGINS["C4"], CONTROL_RULE["C4"], ses)


@_register("C5")
def c5_image_clusters(m: Measurements) -> Claim:
    """Silhouette of tokens by image id at the last depth: CL > MIM."""
    vals = [_get(m.cluster.get(r), "score", -1) for r in ("cl", "mim", "control")]
    depth = _get(m.cluster.get("cl"), "depths", -1)
    ses = _image_ses(m, "silhouette", [], +1)
    return _ordered_verdict("C5", *vals, +1, MARGINS["C5"], CONTROL_RULE["C5"], ses, depth=depth)


@_register("C6")
def c6_shape_bias(m: Measurements) -> Claim:
    """Shape bias on the cue-conflict split: CL > MIM; binomial SEs over the decided images.
    Not measurable unless both cue probes (shape hits, texture hits) of CL and MIM reach
    :data:`C6_MIN_CUE_OVER_CHANCE` × chance: a ratio of two near-chance hit rates is noise."""
    from clvsmim.data import SHAPES
    from clvsmim.uncertainty import rate_difference_se

    roles = ("cl", "mim", "control")
    vals = [_get(m.evaluations.get(r), "shape_texture", "shape_bias") for r in roles]
    decided = [_get(m.evaluations.get(r), "shape_texture", "num_decided") for r in roles]
    cues = {r: (_get(m.evaluations.get(r), "shape_texture", "shape_acc"),
                _get(m.evaluations.get(r), "shape_texture", "texture_acc")) for r in ("cl", "mim")}
    chance = 1.0 / len(SHAPES)
    floor = C6_MIN_CUE_OVER_CHANCE * chance
    if _finite(*vals[:2]) and all(_finite(*c) for c in cues.values()):
        low = [f"{r.upper()} {what} {v:.3f}" for r, c in cues.items() for what, v in zip(("shape", "texture"), c)
               if v < floor]
        if low:
            return _claim("C6", *vals, None, "not measurable",
                          f"cue probes near chance: {', '.join(low)} < {C6_MIN_CUE_OVER_CHANCE:g} × chance "
                          f"({floor:.3f}); a bias ratio of near-chance hit rates is noise",
                          cue_accuracy={r: list(c) for r, c in cues.items()}, chance=chance)
    ses: dict[str, float] = {}
    extra: dict[str, Any] = {}
    if _finite(*vals[:2], *decided[:2]) and min(decided[:2]) > 0:
        n = [int(k) for k in decided[:2]]
        ses = {"value": rate_difference_se(vals[:2], n)}
        extra = {"difference_se": ses["value"], "num_decided": n}
        if _finite(vals[2], decided[2]) and decided[2] > 0:
            ses["cl_control"] = rate_difference_se([vals[0], vals[2]], [n[0], int(decided[2])])
            ses["mim_control"] = rate_difference_se([vals[2], vals[1]], [int(decided[2]), n[1]])
    if all(_finite(*c) for c in cues.values()):
        extra["cue_accuracy"] = {r: list(c) for r, c in cues.items()}
    claim = _ordered_verdict("C6", *vals, +1, MARGINS["C6"], CONTROL_RULE["C6"], ses, **extra)
    if "num_decided" not in extra:
        return claim
    return dataclasses.replace(claim, reason=f"{claim.reason}; binomial SEs over {extra['num_decided'][0]} and "
                                             f"{extra['num_decided'][1]} decided images")


def _best_depth(acc: Sequence[float]) -> int:
    """Index of the best accuracy; ties go to the deepest."""
    return max(range(len(acc)), key=lambda d: (acc[d], d))


@_register("C7")
def c7_layers(m: Measurements) -> Claim:
    """CL's best probe is at the last block (within the margin) and MIM's accuracy drops over
    its last blocks (best earlier depth − last depth > margin); both above the control."""
    cid, margin = "C7", MARGINS["C7"]
    acc = {r: _get(m.evaluations.get(r), "linear_probe", "per_layer") for r in ("cl", "mim", "control")}
    if not acc["cl"] or not acc["mim"] or not all(_finite(*acc[r]) for r in ("cl", "mim")):
        return _missing(cid, "per-layer linear probes of CL and MIM")
    if len(acc["cl"]) != len(acc["mim"]) or len(acc["cl"]) < 2:
        return _missing(cid, "CL and MIM probes of the same depth (≥ 1 block)")
    from clvsmim.uncertainty import rate_difference_se, threshold

    cl_acc, mim_acc = acc["cl"], acc["mim"]
    L = len(cl_acc) - 1
    best_cl, best_mim = _best_depth(cl_acc), _best_depth(mim_acc)
    best_mim_early = _best_depth(mim_acc[:L])
    drop = mim_acc[best_mim_early] - mim_acc[L]
    n = [m.num_eval] * 2 if m.num_eval else None
    se_drop = rate_difference_se([mim_acc[best_mim_early], mim_acc[L]], n) if n else None
    se_gap = rate_difference_se([max(cl_acc), cl_acc[L]], n) if n else None
    cl_last_best = cl_acc[L] >= max(cl_acc) - threshold(margin, se_gap)
    mim_drops = drop > threshold(margin, se_drop)
    ctrl = acc["control"]
    details = {"L": L, "cl_per_layer": cl_acc, "mim_per_layer": mim_acc, "control_per_layer": ctrl,
               "mim_drop": drop, "cl_last_gap": max(cl_acc) - cl_acc[L], "margin": margin,
               "se_drop": se_drop, "se_gap": se_gap}
    best_ctrl = _best_depth(ctrl) if ctrl and _finite(*ctrl) else None
    if best_ctrl is None or len(ctrl) != len(cl_acc):
        return _claim(cid, best_cl, best_mim, None, drop, "inconclusive", "no control probe", se=se_drop, **details)
    se_cl_ctrl = rate_difference_se([cl_acc[L], ctrl[L]], n) if n else None
    se_mim_ctrl = rate_difference_se([mim_acc[best_mim_early], ctrl[best_mim_early]], n) if n else None
    cl_moved = cl_acc[L] - ctrl[L] > threshold(margin, se_cl_ctrl)
    mim_moved = mim_acc[best_mim_early] - ctrl[best_mim_early] > threshold(margin, se_mim_ctrl)
    details.update(cl_moved=cl_moved, mim_moved=mim_moved)
    problems = []
    if not cl_last_best:
        problems.append(f"CL's last block is {_q(max(cl_acc) - cl_acc[L], 'points', signed=False)} below its best "
                        f"(depth {best_cl})")
    if not mim_drops:
        problems.append(f"MIM's accuracy does not drop over its last blocks (drop {_q(drop, 'points', True)})")
    if not cl_moved:
        problems.append("CL's last-block probe does not beat the control's")
    if not mim_moved:
        problems.append(f"MIM's best probe (depth {best_mim_early}) does not beat the control's there")
    # the opposite picture beyond noise: CL's last block below its best AND MIM's last block above
    # its best earlier depth
    opposite = (max(cl_acc) - cl_acc[L] > threshold(margin, se_gap)) and (-drop > threshold(margin, se_drop))
    verdict = "holds" if not problems else ("reversed" if opposite else "tie")
    noise = f"2 SE = {_q(2 * se_drop, 'points')}" if se_drop is not None else "no standard error available"
    reason = "; ".join(problems) + f" ({noise})" if problems else (
        f"CL best at the last block ({L}); MIM best at depth {best_mim_early}, drop {_q(drop, 'points')} to block {L} "
        f"({noise})")
    if opposite:
        reason = "the opposite picture beyond noise: " + reason
    return _claim(cid, best_cl, best_mim, best_ctrl, drop, verdict, reason, se=se_drop, **details)


def _acc_pair(result: dict | None) -> tuple[float | None, float | None]:
    return _get(result, "linear_probe", "final"), _get(result, "finetune")


@_register("C8")
def c8_hybrid(m: Measurements) -> Claim:
    """Some 0<λ<1 is at least as good as both endpoints on linear probing AND fine-tuning, and
    beats the control on both. ``cl`` / ``mim`` / ``control``: mean of (linear probe,
    fine-tune) of λ = 1, λ = 0 and the control; ``value``: the best hybrid's worse margin."""
    cid, margin = "C8", MARGINS["C8"]
    sweep = {float(k): v for k, v in m.sweep.items()}
    ends = {lam: _acc_pair(sweep.get(lam)) for lam in (0.0, 1.0)}
    inner = sorted(lam for lam in sweep if 0.0 < lam < 1.0)
    if not all(_finite(*pair) for pair in ends.values()) or not inner:
        return _missing(cid, "linear probe and fine-tuning of λ = 0, λ = 1 and a hybrid 0 < λ < 1")
    ctrl = _acc_pair(m.evaluations.get("control"))
    lp_best, ft_best = max(ends[0.0][0], ends[1.0][0]), max(ends[0.0][1], ends[1.0][1])
    per_lam = {}
    for lam in inner:
        lp, ft = _acc_pair(sweep[lam])
        if not _finite(lp, ft):
            continue
        score = min(lp - lp_best, ft - ft_best)
        moved = _finite(*ctrl) and lp - ctrl[0] > margin and ft - ctrl[1] > margin
        per_lam[lam] = {"linear_probe": lp, "finetune": ft, "score": score, "beats_control": moved}
    mean2 = lambda pair: (pair[0] + pair[1]) / 2 if _finite(*pair) else None  # noqa: E731
    details = {"sweep": {f"{lam:g}": {"linear_probe": _acc_pair(sweep[lam])[0], "finetune": _acc_pair(sweep[lam])[1]}
                         for lam in sorted(sweep)},
               "per_lam": {f"{k:g}": v for k, v in per_lam.items()}, "control_linear_probe": ctrl[0],
               "control_finetune": ctrl[1], "margin": margin}
    if not per_lam:
        return _missing(cid, "finite hybrid accuracies")
    from clvsmim.uncertainty import rate_difference_se, three_way, threshold

    best = max(per_lam, key=lambda lam: (per_lam[lam]["score"] >= 0 and per_lam[lam]["beats_control"],
                                         per_lam[lam]["score"]))
    value = per_lam[best]["score"]
    details["best_lam"] = best
    se = None
    if m.num_eval:  # SE of the binding difference (the hybrid's worse metric vs the better endpoint)
        lp, ft = per_lam[best]["linear_probe"], per_lam[best]["finetune"]
        pair = (lp, lp_best) if lp - lp_best <= ft - ft_best else (ft, ft_best)
        se = rate_difference_se(list(pair), [m.num_eval] * 2)
    args = (mean2(ends[1.0]), mean2(ends[0.0]), mean2(ctrl), value)
    if not _finite(*ctrl):
        return _claim(cid, *args, "inconclusive", "no control measured", se=se, **details)
    order = three_way(value, se, 0.0)
    noise = (f"threshold 2 SE = {_q(threshold(0.0, se), 'points')}" if se is not None else "no standard error available")
    if order == "holds" and per_lam[best]["beats_control"]:
        verdict, reason = "holds", (f"λ = {best:g} beats both endpoints on both metrics beyond noise "
                                    f"(worse margin {_q(value, 'points', True)}; {noise}) and beats the control")
    elif order == "reversed":
        verdict, reason = "reversed", (f"every hybrid is worse than the better endpoint beyond noise on some "
                                       f"metric (best: λ = {best:g}, worse margin {_q(value, 'points', True)}; {noise})")
    else:
        verdict = "tie"
        reason = (f"λ = {best:g} is within noise of the better endpoint (worse margin {_q(value, 'points', True)}; {noise})"
                  if order == "tie" else f"λ = {best:g} beats both endpoints but not the control")
    return _claim(cid, *args, verdict, reason, se=se, **details)


@_register("C9")
def c9_linear_probe(m: Measurements) -> Claim:
    """Final-depth linear-probe accuracy: CL > MIM; CL must beat the control's probe."""
    vals = [_get(m.evaluations.get(r), "linear_probe", "final") for r in ("cl", "mim", "control")]
    return _ordered_verdict("C9", *vals, +1, MARGINS["C9"], CONTROL_RULE["C9"], _rate_ses(m, *vals))


@_register("C10")
def c10_finetune(m: Measurements) -> Claim:
    """Fine-tuning accuracy: CL < MIM; MIM must beat fine-tuning the control from scratch."""
    vals = [_get(m.evaluations.get(r), "finetune") for r in ("cl", "mim", "control")]
    return _ordered_verdict("C10", *vals, -1, MARGINS["C10"], CONTROL_RULE["C10"], _rate_ses(m, *vals))


@_register("C11")
def c11_scaling(m: Measurements) -> Claim:
    """Fine-tuning gain from the smallest to the largest size (``cl`` / ``mim``): CL < MIM; the
    large MIM model must beat fine-tuning the large control from scratch by the margin
    (``control``: the large control's fine-tuning accuracy, an accuracy, not a gain)."""
    cid, margin = "C11", MARGINS["C11"]
    ft = {r: _get(m.evaluations.get(r), "finetune")
          for r in ("cl-small", "cl-large", "mim-small", "mim-large", "control-large")}
    if not _finite(ft["cl-small"], ft["cl-large"], ft["mim-small"], ft["mim-large"]):
        return _missing(cid, "fine-tuning of CL and MIM at two sizes")
    cl_gain = ft["cl-large"] - ft["cl-small"]
    mim_gain = ft["mim-large"] - ft["mim-small"]
    value = mim_gain - cl_gain + 0.0
    details = {"finetune": ft, "models": {r: m.names.get(r) for r in ft}, "margin": margin, "rule": "mim"}
    from clvsmim.uncertainty import rate_difference_se, three_way, threshold

    control = ft["control-large"]
    four = [ft[r] for r in ("cl-small", "cl-large", "mim-small", "mim-large")]
    se = rate_difference_se(four, [m.num_eval] * 4) if m.num_eval and all(0 <= v <= 1 for v in four) else None
    if not _finite(control):
        return _claim(cid, cl_gain, mim_gain, None, value, "inconclusive", "no control measured", se=se, **details)
    order = three_way(value, se, margin)
    se_ctrl = rate_difference_se([ft["mim-large"], control], [m.num_eval] * 2) if m.num_eval else None
    mim_moved = ft["mim-large"] - control > threshold(margin, se_ctrl)
    details["mim_moved"] = mim_moved
    noise = f"threshold {_q(threshold(margin, se), 'points')}; {_se_text(se, 'points')}"
    if order == "reversed":
        verdict, reason = "reversed", f"CL gains more than MIM beyond noise (difference {_q(value, 'points', True)}; {noise})"
    elif order == "tie":
        verdict, reason = "tie", f"the gains do not differ beyond noise (difference {_q(value, 'points', True)}; {noise})"
    elif not mim_moved:
        verdict, reason = "tie", "MIM gains more, but its large model does not beat fine-tuning the control from scratch"
    else:
        verdict, reason = "holds", f"MIM gains {_q(value, 'points')} more than CL ({noise}) and its large model beats the control"
    return _claim(cid, cl_gain, mim_gain, control, value, verdict, reason, se=se, **details)


def _num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def with_claim(text: str, claim: Claim | None) -> str:
    """``text`` followed by the claim's :func:`claim_markdown` paragraph (unchanged without a claim)."""
    return text if claim is None else text + "\n\n" + claim_markdown(claim)


def claim_markdown(claim: Claim, cl_name: str = "CL", mim_name: str = "MIM") -> str:
    """One Markdown paragraph: the claim, the measured numbers, the verdict and, where it does
    not hold, that this differs from the paper. Accuracies are in percent, accuracy differences
    in points (:mod:`clvsmim.book.units`)."""
    from clvsmim.book.units import claim_value_kind, percent, points

    def num(which: str, v: float | None = None, kind: str | None = None) -> str:
        v = getattr(claim, which) if v is None and which else v
        kind = kind or claim_value_kind(claim.id, which)
        if v is None or not math.isfinite(v):
            return "n/a"
        return percent(v) if kind == "percent" else points(v, signed=False) if kind == "points" else _num(v)

    head = f"**{claim.id} — {claim.verdict}.** {claim.statement}"
    if claim.id == "C8" and claim.details.get("best_lam") is not None:
        numbers = (f" Measured: the best hybrid, λ = {claim.details['best_lam']:g}, is "
                   f"{points(claim.value)} from the better endpoint on its worse metric (linear probe or "
                   f"fine-tune); mean of the two accuracies: λ = 1 (CL) {num('cl')}, λ = 0 (MIM) {num('mim')}, "
                   f"random-init control {num('control')}.")
    elif claim.id == "C11" and isinstance(claim.details.get("finetune"), dict):
        ft = claim.details["finetune"]
        numbers = (f" Measured ({claim.statistic}): {cl_name} {num('cl')}, {mim_name} {num('mim')}; "
                   f"the largest {mim_name} model fine-tunes to {num('', ft.get('mim-large'), 'percent')}, the "
                   f"untrained control of that size (fine-tuned from scratch) to {num('control')}.")
    else:
        numbers = (f" Measured ({claim.statistic}): {cl_name} {num('cl')}, {mim_name} {num('mim')}, "
                   f"random-init control {num('control')}.")
    if claim.verdict == "holds":
        tail = f" As in the paper ({claim.reason})."
    elif claim.verdict in ("fails", "reversed"):
        tail = f" **This differs from the paper:** {claim.reason}."
    elif claim.verdict == "tie":
        tail = f" **No difference this evaluation resolves:** {claim.reason}."
    elif claim.verdict == "not measurable":
        tail = f" **Not measurable at this scale:** {claim.reason}."
    else:
        tail = f" Inconclusive: {claim.reason}."
    return head + numbers + tail


def evaluate_claim(cid: str, m: Measurements) -> Claim:
    """One claim of ``m``; a claim whose inputs are absent comes back "inconclusive"."""
    return CLAIMS[cid](m)


def evaluate_claims(m: Measurements, ids: Iterable[str] | None = None) -> list[Claim]:
    """Every claim (or those of ``ids``) of one seed's measurements, in C1… order."""
    return [CLAIMS[cid](m) for cid in (ids or CLAIMS)]


# --------------------------------------------------------------------------- seeds

def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    finite = [float(v) for v in values if _finite(v)]
    mean = sum(finite) / len(finite) if finite else None
    std = statistics.stdev(finite) if len(finite) >= 2 else None
    return {"per_seed": [None if not _finite(v) else float(v) for v in values], "mean": mean, "std": std}


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
    from clvsmim.book.units import ACCURACY_DIGITS, to_percent

    if stat["mean"] is None:
        return "—"
    if kind in ("percent", "points"):
        mean, std = to_percent(stat["mean"]), to_percent(stat["std"])
        unit = " %" if kind == "percent" else " points"
        return (f"{mean:.{ACCURACY_DIGITS}f}" + (f" ± {std:.{ACCURACY_DIGITS}f}" if std is not None else "")
                + unit)
    text = f"{stat['mean']:.{digits}g}"
    return text + (f" ± {stat['std']:.2g}" if stat["std"] is not None else "")


def _num_of(cid: str, which: str, v: float | None) -> str:
    """One seed's statistic: accuracies in percent / points, other statistics unitless."""
    from clvsmim.book.units import claim_value_kind, percent, points

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
        from clvsmim.book.units import claim_value_kind

        return [{"id": s.id, "verdict": s.verdict, "comparison": s.comparison, "statistic": s.statistic,
                 **{label: _fmt(s.stat(k), kind=claim_value_kind(s.id, k))
                    for label, k in (("CL", "cl"), ("MIM", "mim"), ("control", "control"), ("value", "value"))},
                 "seeds": " ".join(c.verdict for c in s.per_seed)} for s in self.summaries]

    def to_frame(self):
        import pandas as pd

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
                row.append(" / ".join(_num(c.value) + ("" if c.se is None else f" ± {c.se:.2g}") for c in s.per_seed))
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


# --------------------------------------------------------------------------- measuring

def model_cache_path(profile: Profile, name: str, stem: str, content: Any, source: str = "zoo",
                     data_root: str | None = None) -> Path:
    """``<model folder>/<stem>-<hash>.json``: a per-model cache file next to the checkpoint (zoo)
    or under ``cache_dir("official", name)``; the hash covers ``content``, the data and the source."""
    from clvsmim.paths import cache_dir

    key = config_key({"stem": stem, "content": content, "data": profile.with_data_root(data_root).data, "source": source})
    if source == "zoo":
        from clvsmim.train.zoo import model_dir

        return model_dir(profile, name, data_root=data_root) / f"{stem}-{key}.json"
    from clvsmim.book.paperbook import cache_name

    return cache_dir("official", cache_name(profile, name)) / f"{stem}-{key}.json"


#: Bump when :func:`token_cluster_scores` changes its recipe.
CLUSTER_FORMAT = 1


def token_cluster_scores(profile: Profile, name: str, source: str = "zoo", data_root: str | None = None,
                         device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """:func:`clvsmim.analysis.image_cluster_score` (silhouette of the patch tokens grouped by
    image id, cosine) of every depth, on :func:`clvsmim.book.report.analysis_images`; cached as
    JSON next to the model. ``{"depths": [0..L], "score": [...], "num_images": n}``."""
    n = n or profile.eval.num_analysis_images
    path = model_cache_path(profile, name, "cluster", {"format": CLUSTER_FORMAT, "n": n}, source, data_root)

    def compute() -> dict[str, Any]:
        import torch

        from clvsmim.analysis import PatchTokens, analyze, image_cluster_score
        from clvsmim.book.report import analysis_images, backbone, normalised_batches, resolve_device

        dev = resolve_device(device)
        model = backbone(profile, name, source, data_root, dev)
        images, _ = analysis_images(profile, data_root, n)
        batches = normalised_batches(images, profile.eval.batch_size, dev)
        per_depth = analyze(model, batches, {"tokens": PatchTokens(depths=None)}, device=dev)["tokens"]
        ids = torch.arange(len(images))
        scores = [image_cluster_score(z, ids, num_prefix_tokens=0) for z in per_depth]
        return {"depths": list(range(len(scores))), "score": scores, "num_images": len(images)}

    return cached_json(path, compute)


def _size_extremes(profile: Profile) -> tuple[str, str] | None:
    if len(profile.sizes) < 2:
        return None
    cost = lambda item: (item[1].embed_dim ** 2 * item[1].depth, item[1].embed_dim)  # noqa: E731
    ordered = sorted(profile.sizes.items(), key=cost)
    return ordered[0][0], ordered[-1][0]


def model_names(profile: Profile, scaling: bool | None = None, cl: str = "moco", mim: str = "simmim",
                control: str = "random") -> dict[str, str]:
    """Role -> zoo name of every model the claims read (hybrids excepted: see :func:`measure`).
    ``scaling`` (default: when the profile has two sizes or more) adds the C11 roles."""
    names = {"cl": cl, "mim": mim, "control": control}
    ends = _size_extremes(profile)
    if (scaling is None or scaling) and ends is not None:
        small, large = ends
        names.update({"cl-small": f"{cl}-{small}", "cl-large": f"{cl}-{large}", "mim-small": f"{mim}-{small}",
                      "mim-large": f"{mim}-{large}", "control-large": f"{control}-{large}"})
    return names


def _num_eval(profile: Profile, data_root: str | None) -> int | None:
    """Images behind every accuracy: the synthetic evaluation split (None for an ImageFolder,
    whose size is not known without opening it)."""
    return int(profile.data.num_eval) if data_root is None and profile.data.root is None else None


def measure(profile: Profile, data_root: str | None = None, device: str = "auto", *, build: bool = True,
            jobs: int | None = None, progress: bool = False, scaling: bool | None = None,
            cl: str = "moco", mim: str = "simmim", control: str = "random", missing: str = "raise") -> Measurements:
    """Everything the claims read, for one profile (one training seed): builds the missing
    models when ``build``, evaluates them (cached), analyses CL / MIM / control (cached).

    ``missing="skip"`` (with ``build=False``) leaves unbuilt models out: the claims reading them
    are inconclusive ("not measured"). The hybrid sweep counts only when every λ of the
    profile is built — C8 is never decided on part of it. CL, MIM and the control must exist.
    """
    from clvsmim.train import zoo
    from clvsmim.book.report import model_analysis

    names = model_names(profile, scaling, cl, mim, control)
    sweep_specs = zoo.hybrid_sweep(profile, data_root)
    wanted = list(dict.fromkeys([*names.values(), *(spec.key for _, spec in sweep_specs)]))
    if build:
        zoo.build(profile, data_root, only=wanted, jobs=jobs, progress=progress)
    results = zoo.evaluations(profile, data_root, only=wanted, jobs=jobs, missing=missing, progress=progress)
    key = {n: zoo.resolve(profile, n, data_root=data_root).key for n in names.values()}
    core = ("cl", "mim", "control")
    absent = [n for n in names.values() if key[n] not in results]
    absent += [spec.name for _, spec in sweep_specs if spec.key not in results and spec.name not in absent]
    sweep = {lam: results[spec.key] for lam, spec in sweep_specs if spec.key in results}
    from clvsmim.uncertainty import per_image_statistics

    return Measurements(
        analyses={r: model_analysis(profile, names[r], "zoo", data_root, device) for r in core},
        per_image={r: per_image_statistics(profile, names[r], "zoo", data_root, device) for r in core},
        num_eval=_num_eval(profile, data_root),
        evaluations={r: results[key[n]] for r, n in names.items() if key[n] in results},
        cluster={r: token_cluster_scores(profile, names[r], "zoo", data_root, device) for r in core},
        sweep=sweep if len(sweep) == len(sweep_specs) else {},
        names={**names, **{f"lam={lam:g}": spec.name for lam, spec in sweep_specs}},
        missing=absent,
    )


def claims_table(profile: Profile, seeds: Sequence[int] = (0, 1, 2), data_root: str | None = None,
                 device: str = "auto", *, build: bool = True, jobs: int | None = None, progress: bool = False,
                 scaling: bool | None = None, measurements: dict[int, Measurements] | None = None,
                 missing: str = "raise") -> ClaimsTable:
    """Every claim on every training seed (:func:`seed_profile`), aggregated (:func:`aggregate`).

    Trains (``build``) or reuses the zoo of each seed; ``missing="skip"`` (see :func:`measure`)
    leaves a seed's unbuilt models out. ``measurements`` (seed -> bundle) skips the measuring,
    for hand-made inputs.
    """
    start = time.perf_counter()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("claims_table: no seeds")
    bundles = dict(measurements or {})
    for s in seeds:
        if s not in bundles:
            bundles[s] = measure(seed_profile(profile, s), data_root, device, build=build, jobs=jobs,
                                 progress=progress, scaling=scaling, missing=missing)
    per_seed = {s: evaluate_claims(bundles[s]) for s in seeds}
    summaries = [aggregate([per_seed[s][i] for s in seeds], seeds) for i in range(len(CLAIMS))]
    return ClaimsTable(profile=profile.name, seeds=seeds, summaries=summaries,
                       models={str(s): bundles[s].names for s in seeds},
                       missing_models={str(s): bundles[s].missing for s in seeds if bundles[s].missing},
                       wall_time_s=round(time.perf_counter() - start, 2))
