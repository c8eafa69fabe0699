"""A claim as the book writes it: one Markdown paragraph with the claim, its numbers and verdict."""
from __future__ import annotations

import math

from clvsmim.book.units import claim_value_kind, percent, points
from clvsmim.claims.definitions import Claim


def _num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def with_claim(text: str, claim: Claim | None) -> str:
    """``text`` followed by the claim's :func:`claim_markdown` paragraph (unchanged without a claim)."""
    return text if claim is None else text + "\n\n" + claim_markdown(claim)


def claim_markdown(claim: Claim, cl_name: str = "CL", mim_name: str = "MIM") -> str:
    """One Markdown paragraph: the claim, the measured numbers, the verdict and, where it does
    not hold, that this differs from the paper. Accuracies are in percent, accuracy differences
    in points (:mod:`clvsmim.book.units`)."""

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
