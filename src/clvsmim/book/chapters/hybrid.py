"""Data behind the *hybrid* chapter: the λ sweep ``L = λ·L_CL + (1 − λ)·L_MIM`` (F9) and the
hybrids' attention distance, NMI and Fourier curves (A-hybrid-curves).

λ = 0 is the SimMIM model and λ = 1 the MoCo v3 model of the zoo (:func:`clvsmim.train.zoo.hybrid_sweep`);
the verdict quoted in the prose is :mod:`clvsmim.claims`' C8 on the same numbers.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from clvsmim.book import report
from clvsmim.book.units import percent
from clvsmim.claims import MARGINS, Measurements, last_third, with_claim
from clvsmim.methods import CONTROL, ModelRef
from clvsmim.train import zoo

__all__ = ["CONTROL", "sweep_models", "sweep_points", "sweep_record", "sweep_analyses",
           "hybrid_curves", "measurements",
           "branches_markdown", "sweep_paragraph", "curves_paragraph", "spearman", "mim_to_cl_position"]



def sweep_models(profile) -> list[tuple[float, str]]:
    """``[(λ, zoo name)]`` in increasing λ (0 = SimMIM, 1 = MoCo v3)."""
    return [(lam, spec.name) for lam, spec in zoo.hybrid_sweep(profile)]


def sweep_points(profile) -> tuple[list[dict[str, Any]], dict | None]:
    """One row per λ — ``lam``, ``name``, ``linear_probe`` (last depth), ``finetune`` — and the
    control's evaluation (or ``None`` when it is not built)."""

    models = sweep_models(profile)
    names = [n for _, n in models]
    control = CONTROL if any(s.name.split("-")[0] == CONTROL for s in zoo.zoo_specs(profile)) else None
    results = zoo.evaluations(profile, only=names + ([control] if control else []), progress=False)
    key = lambda n: zoo.resolve(profile, n).key  # noqa: E731
    rows = [{"lam": lam, "name": n, "linear_probe": results[key(n)]["linear_probe"]["final"],
             "finetune": results[key(n)]["finetune"], "evaluation": results[key(n)]} for lam, n in models]
    return rows, (results[key(control)] if control else None)


def sweep_record(points: Sequence[Mapping[str, Any]], claim) -> dict[str, Any]:
    """F9's figure record: per λ its model and accuracies (fractions), the control's accuracies
    and C8 (``claim``: a :class:`clvsmim.claims.Claim`)."""
    return {"points": [{k: pt[k] for k in ("lam", "name", "linear_probe", "finetune")} for pt in points],
            "control": {"linear_probe": claim.details.get("control_linear_probe"),
                        "finetune": claim.details.get("control_finetune")},
            "claim": claim.to_dict()}


def sweep_analyses(profile, models: Sequence[tuple[float, str]], device: str = "auto") -> dict[float, dict]:
    """``{λ: report.model_analysis}`` of every zoo model of the sweep ``[(λ, name)]``."""
    return {lam: report.model_analysis(ModelRef(profile, name), device) for lam, name in models}


def hybrid_curves(analyses: Mapping[float, dict], control: dict | None = None) -> dict[str, Any]:
    """Per-λ curves: ``attention_distance`` and ``nmi`` per block (1..L), ``fourier`` per depth (0..L);
    keys of the inner dicts are ``f"{λ:g}"`` (and ``"control"``)."""
    items = [(f"{lam:g}", a) for lam, a in sorted(analyses.items())]
    if control is not None:
        items.append(("control", control))
    first = items[0][1]
    return {
        "lams": [float(lam) for lam in sorted(analyses)],
        "blocks": list(range(1, first["depth"] + 1)),
        "depth": list(range(first["depth"] + 1)),
        "attention_distance": {k: a["attention_distance"]["mean"] for k, a in items},
        "nmi": {k: a["nmi"]["mean"] for k, a in items},
        "fourier": {k: a["fourier"]["delta_log_amplitude"] for k, a in items},
    }


def measurements(points: Sequence[Mapping[str, Any]], control: dict | None):
    """The :class:`clvsmim.claims.Measurements` that C8 reads."""

    return Measurements(evaluations={"control": control} if control else {},
                        sweep={float(p["lam"]): p["evaluation"] for p in points},
                        names={f"lam={p['lam']:g}": p["name"] for p in points})


def branches_markdown(profile) -> str:
    """What each branch of the hybrid sees, with the profile's settings
    (:mod:`clvsmim.objectives.hybrid`)."""
    mo, sm = profile.moco, profile.simmim
    return (
        "Both branches share **one** encoder and see the same batch of raw images, each through its own "
        "augmentation drawn from separate random streams of the same per-image seeds:\n\n"
        f"- **CL branch (MoCo v3)** — two *unmasked* views per image (random resized crop with scale ≥ "
        f"{mo.crop_min_scale:g}, colour jitter, grayscale, blur, solarize) go through the shared encoder, the "
        f"projector ({mo.proj_hidden}→{mo.proj_out}) and the predictor; the keys come from the momentum copy "
        f"of the shared encoder (momentum {mo.momentum:g} → 1); InfoNCE with τ = {mo.tau:g}.\n"
        f"- **MIM branch (SimMIM)** — its own crop of the same images (scale ≥ {sm.crop_min_scale:g}, a flip, "
        f"no colour augmentation), {sm.mask_ratio:.0%} of it hidden in {sm.mask_patch_size}-px blocks "
        f"replaced by a mask token, through the same encoder and a linear pixel head; ℓ1 loss on the masked "
        f"pixels.\n\n"
        "The loss is λ·L_CL + (1 − λ)·L_MIM. When the CL branch is present the patch projection is frozen "
        "(MoCo v3's trick), and a branch with weight 0 is not computed, so λ = 0 is exactly SimMIM and λ = 1 "
        "exactly MoCo v3 — the zoo reuses those two models as the sweep's endpoints."
    )


def sweep_paragraph(points: Sequence[Mapping[str, Any]], claim=None) -> str:
    """F9 on these models (accuracies in percent, :mod:`clvsmim.book.units`): the best λ for each
    metric, and C8's verdict."""

    lp = {p["lam"]: p["linear_probe"] for p in points}
    ft = {p["lam"]: p["finetune"] for p in points if p["finetune"] is not None}
    best_lp = max(lp, key=lambda k: lp[k])
    best_ft = max(ft, key=lambda k: ft[k]) if ft else None
    text = ("Linear probe / fine-tune accuracy per λ: "
            + "; ".join(f"λ = {p['lam']:g}: {percent(p['linear_probe'])} / {percent(p['finetune'])}" for p in points)
            + f". The best linear probe is at λ = {best_lp:g}"
            + (f", the best fine-tuning at λ = {best_ft:g}." if best_ft is not None else ".")
            + " In the paper λ = 0.2 is best at fine-tuning and the hybrids match or beat CL at linear probing.")
    return with_claim(text, claim)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when a side is constant."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for val in np.unique(v):  # average ties
            sel = v == val
            r[sel] = r[sel].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def mim_to_cl_position(curve: Sequence[float], mim: Sequence[float], cl: Sequence[float],
                       min_gap: float) -> list[float | None]:
    """Per depth, where a hybrid's value lies between MIM's (0) and CL's (1):
    ``(x − x_MIM) / (x_CL − x_MIM)``; ``None`` where ``|x_CL − x_MIM| < min_gap``."""
    out = []
    for x, a, b in zip(curve, mim, cl):
        out.append(None if abs(b - a) < min_gap else (x - a) / (b - a))
    return out


def curves_paragraph(curves: Mapping[str, Any]) -> str:
    """How the hybrids' late attention distance, late NMI and mean Fourier value follow λ, and
    whether their early layers look like MIM's and their late layers like CL's."""

    lams = curves["lams"]
    keys = [f"{lam:g}" for lam in lams]
    L = len(curves["blocks"])
    late = last_third(L)
    distance = [float(np.mean([curves["attention_distance"][k][i] for i in late])) for k in keys]
    # (values, expected sign of the correlation with λ, smallest range that counts: the claims' margins)
    stats = {
        "late attention distance (px)": (distance, +1, MARGINS["C1"] * max(map(abs, distance))),
        "late NMI": ([float(np.mean([curves["nmi"][k][i] for i in late])) for k in keys], -1, MARGINS["C2"]),
        "mean Δ log amplitude": ([float(np.mean(curves["fourier"][k])) for k in keys], -1, MARGINS["C4"]),
    }
    lines = []
    for label, (values, expected, min_range) in stats.items():
        rho = spearman(lams, values)
        if max(values) - min(values) < min_range:
            verdict = f"varies by less than {min_range:.3g} across λ: no trend to speak of"
        elif not math.isfinite(rho):
            verdict = "does not vary with λ"
        elif rho * expected > 0.5:
            verdict = f"follows λ as the inference from the paper's account predicts (ρ = {rho:+.2f})"
        elif rho * expected < -0.5:
            verdict = f"follows λ the opposite way to that inference (ρ = {rho:+.2f})"
        else:
            verdict = f"shows no clear trend with λ (ρ = {rho:+.2f})"
        lines.append(f"- {label}: " + ", ".join(f"λ={k} {v:.3g}" for k, v in zip(keys, values)) + f" — {verdict}.")
    text = ("The paper does not measure these statistics along λ; inferred from its account (CL: global, "
            "collapsed attention and low-frequency representations; MIM: the opposite), the more weight on CL "
            "(larger λ), the more global the late attention (distance ↑), the more collapsed (NMI ↓) and the "
            "lower the frequencies (Δ log amplitude ↓). Measured, with the Spearman correlation ρ between λ "
            "and the statistic:\n\n" + "\n".join(lines))
    inner = [k for lam, k in zip(lams, keys) if 0 < lam < 1]
    if inner and "0" in curves["attention_distance"] and "1" in curves["attention_distance"]:
        mim, cl = curves["attention_distance"]["0"], curves["attention_distance"]["1"]
        gap = 0.02 * max(max(map(abs, mim)), max(map(abs, cl)), 1e-12)
        half = max(1, L // 2)
        parts = []
        for k in inner:
            pos = mim_to_cl_position(curves["attention_distance"][k], mim, cl, gap)
            early = [p for p in pos[:half] if p is not None]
            later = [p for p in pos[half:] if p is not None]
            if early and later:
                parts.append(f"λ={k}: early blocks {np.mean(early):.2f}, late blocks {np.mean(later):.2f}")
        if parts:
            text += ("\n\nWhere each hybrid's attention distance lies between SimMIM's (0) and MoCo v3's (1), "
                     "averaged over the first and the second half of the blocks (blocks where the two differ by "
                     "less than 2 % are left out): " + "; ".join(parts) + ". The paper's account — CL shapes "
                     "the later layers, MIM the earlier ones — suggests (it does not measure this) larger "
                     "values late than early.")
        else:
            text += ("\n\nSimMIM's and MoCo v3's attention distances differ by less than 2 % at every block, so "
                     "where the hybrids lie between them cannot be told.")
    return text
