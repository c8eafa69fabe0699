"""The eleven claims as data: verdicts, margins, control rules, the F10 rows, and the claim records
(:class:`ClaimInfo`, :class:`Claim`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from clvsmim.cache import json_safe as _json_safe



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

#: The linear probe each role of C7 / C9 reads: the representation its method was trained for.
#: MoCo v3 (CL) trains and evaluates the normed CLS token (its final LayerNorm on token 0);
#: SimMIM's (MIM) classifier mean-pools the patch tokens (BEiT ``use_mean_pooling``). The
#: control is read with the pooling of the role it is compared with; a model whose evaluation
#: has no probe of that pooling (an old cache, the paper book's official models) is read
#: mean-pooled, and the claim says so. C8's hybrids (trained with both objectives) keep the mean.
PROBE_POOL: dict[str, str] = {"cl": "cls_norm", "mim": "mean"}
#: The evaluation key of each pooling's probe (:func:`clvsmim.evaluation.evaluate_model`).
PROBE_KEY: dict[str, str] = {"mean": "linear_probe", "cls_norm": "linear_probe_cls"}
#: How a reason names a pooling.
POOL_WORDS: dict[str, str] = {"mean": "mean-pooled patch tokens", "cls_norm": "the normed CLS token"}

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


def is_finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def make_claim(cid: str, cl=None, mim=None, control=None, value=None, verdict="inconclusive", reason="",
           se=None, **details) -> Claim:
    f = lambda v: None if v is None or not is_finite(v) else float(v)  # noqa: E731
    return Claim(**dataclasses.asdict(INFO[cid]), id=cid, cl=f(cl), mim=f(mim), control=f(control), value=f(value), verdict=verdict, reason=reason,
                 details=_json_safe(details), se=f(se))


def missing_claim(cid: str, what: str, **values) -> Claim:
    return make_claim(cid, verdict="inconclusive", reason=f"not measured: {what}", **values)
