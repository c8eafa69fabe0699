"""The book's one convention for accuracies: **percent with one decimal** ("22.7 %"), and
differences of accuracies in **percentage points** ("+2.3 points").

Evaluations and claims store accuracies as fractions in [0, 1] (that is what the JSON files
hold); every sentence, table cell and axis label of the book converts them here, so no chapter
shows 0.227 where another shows 22.7 %. Ratios that are not accuracies (shape bias, NMI,
cosine similarity, silhouette) stay unitless numbers.

:data:`ACCURACY_CLAIMS` says which claims of :mod:`clvsmim.claims` measure an accuracy
(shown in percent) or a difference of accuracies (shown in points).
"""
from __future__ import annotations

import math

import numpy as np

from clvsmim.uncertainty import binomial_se

__all__ = ["ACCURACY_DIGITS", "ACCURACY_CLAIMS", "to_percent", "percent", "points", "claim_value_kind", "accuracy_se_points"]

#: Decimals of every accuracy (in percent) and accuracy difference (in points) the book shows.
ACCURACY_DIGITS = 1
#: Claim id -> ``{"cl" | "mim" | "control" | "value": "percent" | "points"}`` for the claims whose
#: statistic is an accuracy (C9, C10), a gain in accuracy (C11) or a margin of accuracies (C8).
ACCURACY_CLAIMS: dict[str, dict[str, str]] = {
    "C7": {"value": "points"},  # the drop of MIM's probe over its last blocks (CL / MIM: depths)
    "C8": {"cl": "percent", "mim": "percent", "control": "percent", "value": "points"},
    "C9": {"cl": "percent", "mim": "percent", "control": "percent", "value": "points"},
    "C10": {"cl": "percent", "mim": "percent", "control": "percent", "value": "points"},
    # C11: CL / MIM are gains (points), the control is the large control's fine-tuning accuracy
    "C11": {"cl": "points", "mim": "points", "control": "percent", "value": "points"},
}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def to_percent(fraction: float | None) -> float | None:
    """``0.227`` -> ``22.7``; ``None`` / NaN stay ``None``."""
    return 100.0 * float(fraction) if _finite(fraction) else None


def percent(fraction: float | None, digits: int = ACCURACY_DIGITS) -> str:
    """An accuracy given as a fraction, in the book's unit: ``percent(0.2271) == "22.7 %"``."""
    v = to_percent(fraction)
    return "n/a" if v is None else f"{v:.{digits}f} %"


def points(difference: float | None, digits: int = ACCURACY_DIGITS, signed: bool = True) -> str:
    """A difference of two accuracies given as fractions, in percentage points:
    ``points(-0.0234) == "−2.3 points"`` (``signed``: always a sign, a true minus sign)."""
    v = to_percent(difference)
    if v is None:
        return "n/a"
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return text.replace("-", "−") + " points"


def claim_value_kind(cid: str, which: str) -> str | None:
    """``"percent"`` / ``"points"`` when ``which`` (cl, mim, control, value) of claim ``cid`` is an
    accuracy or an accuracy difference, else ``None`` (a unitless statistic)."""
    return ACCURACY_CLAIMS.get(cid, {}).get(which)


def accuracy_se_points(accuracy_percent, num_images: int) -> np.ndarray:
    """Binomial standard error, in points, of accuracies given in percent over ``num_images``
    images (same shape as the input; accuracies are clipped to [0, 100])."""
    p = np.clip(np.asarray(accuracy_percent, dtype=float) / 100.0, 0.0, 1.0)
    return 100.0 * np.array([binomial_se(float(q), num_images) for q in p.ravel()]).reshape(p.shape)
