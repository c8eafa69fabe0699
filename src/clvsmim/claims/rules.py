"""The claims C1–C11 themselves, each a function of :class:`~clvsmim.claims.verdict.Measurements`
(their Markdown: :mod:`clvsmim.claims.markdown`)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence

from clvsmim.claims.definitions import (C6_MIN_CUE_OVER_CHANCE, CONTROL_RULE, MARGINS, PROBE_POOL, Claim, is_finite,
                                        make_claim, missing_claim)
from clvsmim.claims.verdict import (SE_KIND_WORDS, Measurements, dig, fmt_value, image_ses, last_third, mean_or_none,
                                    own_control_role, ordered_verdict, pool_note, probe_correct, probe_of, rate_ses,
                                    se_text)
from clvsmim.data import SHAPES
from clvsmim.uncertainty import accuracy_contrast_se, finetune_record, rate_difference_se, three_way, threshold

# --------------------------------------------------------------------------- the claims

CLAIMS: dict[str, Callable[[Measurements], Claim]] = {}


def _register(cid: str):
    def deco(fn):
        CLAIMS[cid] = fn
        fn.claim_id = cid
        return fn
    return deco


def _last_third_mean(analysis: dict | None, metric: str) -> tuple[float | None, list[int]]:
    curve = dig(analysis, metric, "mean")
    if not curve:
        return None, []
    idx = last_third(len(curve))
    return mean_or_none([curve[i] for i in idx]), [i + 1 for i in idx]


@_register("C1")
def c1_attention_distance(m: Measurements) -> Claim:
    """Mean attention distance over the last third of the blocks: CL > MIM; MIM must have
    moved towards local attention (below the control by 2 % of the control's distance)."""
    cl, blocks = _last_third_mean(m.analyses.get("cl"), "attention_distance")
    mim, _ = _last_third_mean(m.analyses.get("mim"), "attention_distance")
    control, _ = _last_third_mean(m.analyses.get("control"), "attention_distance")
    margin = MARGINS["C1"] * abs(control) if is_finite(control) else MARGINS["C1"]
    ses = image_ses(m, "attention_distance", [b - 1 for b in blocks], +1)
    return ordered_verdict("C1", cl, mim, control, +1, margin, CONTROL_RULE["C1"], ses, blocks=blocks)


@_register("C2")
def c2_nmi(m: Measurements) -> Claim:
    """NMI over the last third of the blocks: CL < MIM; MIM must have moved up from the control."""
    cl, blocks = _last_third_mean(m.analyses.get("cl"), "nmi")
    mim, _ = _last_third_mean(m.analyses.get("mim"), "nmi")
    control, _ = _last_third_mean(m.analyses.get("control"), "nmi")
    ses = image_ses(m, "nmi", [b - 1 for b in blocks], -1)
    return ordered_verdict("C2", cl, mim, control, -1, MARGINS["C2"], CONTROL_RULE["C2"], ses, blocks=blocks)


def _blocks_mean(analysis: dict | None, key: str, include_embeddings: bool) -> float | None:
    curve = dig(analysis, *key.split("."))
    if not curve:
        return None
    return mean_or_none(curve if include_embeddings else curve[1:])


@_register("C3")
def c3_token_cosine(m: Measurements) -> Claim:
    """Token cosine similarity, mean over block outputs 1..L: CL > MIM."""
    vals = [_blocks_mean(m.analyses.get(r), "token_cosine", False) for r in ("cl", "mim", "control")]
    depth = len(dig(m.analyses.get("cl"), "token_cosine") or [])
    ses = image_ses(m, "token_cosine", range(1, depth), +1)
    return ordered_verdict("C3", *vals, +1, MARGINS["C3"], CONTROL_RULE["C3"], ses)


@_register("C4")
def c4_fourier(m: Measurements) -> Claim:
    """Fourier Δ log amplitude (highest frequency), mean over depths 0..L: CL < MIM."""
    vals = [_blocks_mean(m.analyses.get(r), "fourier.delta_log_amplitude", True) for r in ("cl", "mim", "control")]
    depth = len(dig(m.analyses.get("cl"), "fourier", "delta_log_amplitude") or [])
    ses = image_ses(m, "fourier_delta", range(depth), -1)
    return ordered_verdict("C4", *vals, -1, MARGINS["C4"], CONTROL_RULE["C4"], ses)


@_register("C5")
def c5_image_clusters(m: Measurements) -> Claim:
    """Silhouette of tokens by image id at the last depth: CL > MIM."""
    vals = [dig(m.cluster.get(r), "score", -1) for r in ("cl", "mim", "control")]
    depth = dig(m.cluster.get("cl"), "depths", -1)
    ses = image_ses(m, "silhouette", [], +1)
    return ordered_verdict("C5", *vals, +1, MARGINS["C5"], CONTROL_RULE["C5"], ses, depth=depth)


@_register("C6")
def c6_shape_bias(m: Measurements) -> Claim:
    """Shape bias on the cue-conflict split: CL > MIM; binomial SEs over the decided images.
    Not measurable unless both cue probes (shape hits, texture hits) of CL and MIM reach
    :data:`C6_MIN_CUE_OVER_CHANCE` × chance: a ratio of two near-chance hit rates is noise."""

    roles = ("cl", "mim", "control")
    vals = [dig(m.evaluations.get(r), "shape_texture", "shape_bias") for r in roles]
    decided = [dig(m.evaluations.get(r), "shape_texture", "num_decided") for r in roles]
    cues = {r: (dig(m.evaluations.get(r), "shape_texture", "shape_acc"),
                dig(m.evaluations.get(r), "shape_texture", "texture_acc")) for r in ("cl", "mim")}
    chance = 1.0 / len(SHAPES)
    floor = C6_MIN_CUE_OVER_CHANCE * chance
    if is_finite(*vals[:2]) and all(is_finite(*c) for c in cues.values()):
        low = [f"{r.upper()} {what} {v:.3f}" for r, c in cues.items() for what, v in zip(("shape", "texture"), c)
               if v < floor]
        if low:
            return make_claim("C6", *vals, None, "not measurable",
                          f"cue probes near chance: {', '.join(low)} < {C6_MIN_CUE_OVER_CHANCE:g} × chance "
                          f"({floor:.3f}); a bias ratio of near-chance hit rates is noise",
                          cue_accuracy={r: list(c) for r, c in cues.items()}, chance=chance)
    ses: dict[str, float] = {}
    extra: dict[str, Any] = {}
    if is_finite(*vals[:2], *decided[:2]) and min(decided[:2]) > 0:
        n = [int(k) for k in decided[:2]]
        ses = {"value": rate_difference_se(vals[:2], n)}
        extra = {"difference_se": ses["value"], "num_decided": n}
        if is_finite(vals[2], decided[2]) and decided[2] > 0:
            ses["cl_control"] = rate_difference_se([vals[0], vals[2]], [n[0], int(decided[2])])
            ses["mim_control"] = rate_difference_se([vals[2], vals[1]], [int(decided[2]), n[1]])
    if all(is_finite(*c) for c in cues.values()):
        extra["cue_accuracy"] = {r: list(c) for r, c in cues.items()}
    claim = ordered_verdict("C6", *vals, +1, MARGINS["C6"], CONTROL_RULE["C6"], ses, **extra)
    if "num_decided" not in extra:
        return claim
    return dataclasses.replace(claim, reason=f"{claim.reason}; binomial SEs over {extra['num_decided'][0]} and "
                                             f"{extra['num_decided'][1]} decided images")


def _best_depth(acc: Sequence[float]) -> int:
    """Index of the best accuracy; ties go to the deepest."""
    return max(range(len(acc)), key=lambda d: (acc[d], d))


def _probes(m: Measurements, like: dict[str, str]) -> tuple[dict[str, dict | None], dict[str, str], str]:
    """The probe of each label (``cl``, ``mim`` or a ``control…`` label) read with the pooling of the
    role in ``like`` (:data:`PROBE_POOL`; a model: itself, the control: the model it is compared
    with, whose fallback it follows); returns the probes, the poolings read and the reason's note."""
    probes: dict[str, dict | None] = {}
    used: dict[str, str] = {}
    for label, role in like.items():
        model = "control" if label.startswith("control") else label
        probes[label], used[label] = probe_of(m, model, used.get(role, PROBE_POOL[role]))
    return probes, used, pool_note({label: PROBE_POOL[role] for label, role in like.items()}, used)


@_register("C7")
def c7_layers(m: Measurements) -> Claim:
    """CL's best probe is at the last block (within the margin) and MIM's accuracy drops over
    its last blocks (best earlier depth − last depth > margin); both above the control. Each
    model is read on the representation its method was trained for (:data:`PROBE_POOL`: CL the
    normed CLS token, MIM mean-pooled), the control on the pooling of the model it is compared with."""
    cid, margin = "C7", MARGINS["C7"]
    probes, pool, note = _probes(m, {"cl": "cl", "mim": "mim", "control_vs_cl": "cl", "control_vs_mim": "mim"})
    acc = {r: dig(p, "per_layer") for r, p in probes.items()}
    if not acc["cl"] or not acc["mim"] or not all(is_finite(*acc[r]) for r in ("cl", "mim")):
        return missing_claim(cid, "per-layer linear probes of CL and MIM")
    if len(acc["cl"]) != len(acc["mim"]) or len(acc["cl"]) < 2:
        return missing_claim(cid, "CL and MIM probes of the same depth (≥ 1 block)")

    cl_acc, mim_acc = acc["cl"], acc["mim"]
    L = len(cl_acc) - 1
    best_cl, best_mim = _best_depth(cl_acc), _best_depth(mim_acc)
    best_mim_early = _best_depth(mim_acc[:L])
    drop = mim_acc[best_mim_early] - mim_acc[L]

    def se(a: tuple[str, int], b: tuple[str, int]) -> tuple[float | None, str | None]:
        """SE of probe ``a`` − probe ``b`` ((label, depth) each: the same images, paired if recorded)
        and how it was computed (:func:`accuracy_contrast_se`)."""
        return accuracy_contrast_se([(w, acc[label][d], probe_correct(probes[label], d))
                                     for w, (label, d) in ((1.0, a), (-1.0, b))], m.num_eval)

    se_drop, se_kind = se(("mim", best_mim_early), ("mim", L))  # the SE the verdict and its noise read
    se_gap, _ = se(("cl", _best_depth(cl_acc)), ("cl", L))
    cl_last_best = cl_acc[L] >= max(cl_acc) - threshold(margin, se_gap)
    mim_drops = drop > threshold(margin, se_drop)
    ctrl, ctrl_mim = acc["control_vs_cl"], acc["control_vs_mim"]  # the control in CL's / MIM's pooling
    details = {"L": L, "cl_per_layer": cl_acc, "mim_per_layer": mim_acc, "control_per_layer": ctrl,
               "control_mim_per_layer": ctrl_mim, "mim_drop": drop, "cl_last_gap": max(cl_acc) - cl_acc[L],
               "margin": margin, "se_drop": se_drop, "se_gap": se_gap, "pool": pool}
    curves = [c for c in (ctrl, ctrl_mim) if c and is_finite(*c) and len(c) == len(cl_acc)]
    if len(curves) < 2:
        return make_claim(cid, best_cl, best_mim, None, drop, "inconclusive", f"no control probe; {note}",
                          se=se_drop, **details)
    best_ctrl = _best_depth(ctrl)
    se_cl_ctrl, _ = se(("cl", L), ("control_vs_cl", L))
    se_mim_ctrl, _ = se(("mim", best_mim_early), ("control_vs_mim", best_mim_early))
    cl_moved = cl_acc[L] - ctrl[L] > threshold(margin, se_cl_ctrl)
    mim_moved = mim_acc[best_mim_early] - ctrl_mim[best_mim_early] > threshold(margin, se_mim_ctrl)
    details.update(cl_moved=cl_moved, mim_moved=mim_moved)
    problems = []
    if not cl_last_best:
        problems.append(f"CL's last block is {fmt_value(max(cl_acc) - cl_acc[L], 'points', signed=False)} below its best "
                        f"(depth {best_cl})")
    if not mim_drops:
        problems.append(f"MIM's accuracy does not drop over its last blocks (drop {fmt_value(drop, 'points', True)})")
    if not cl_moved:
        problems.append("CL's last-block probe does not beat the control's")
    if not mim_moved:
        problems.append(f"MIM's best probe (depth {best_mim_early}) does not beat the control's there")
    # the opposite picture beyond noise: CL's last block below its best AND MIM's last block above
    # its best earlier depth
    opposite = (max(cl_acc) - cl_acc[L] > threshold(margin, se_gap)) and (-drop > threshold(margin, se_drop))
    verdict = "holds" if not problems else ("reversed" if opposite else "tie")
    details["se_kind"] = se_kind
    noise = (f"2 SE = {fmt_value(2 * se_drop, 'points')}, {SE_KIND_WORDS[se_kind]}" if se_drop is not None
             else "no standard error available")
    reason = "; ".join(problems) + f" ({noise})" if problems else (
        f"CL best at the last block ({L}); MIM best at depth {best_mim_early}, drop {fmt_value(drop, 'points')} to block {L} "
        f"({noise})")
    if opposite:
        reason = "the opposite picture beyond noise: " + reason
    return make_claim(cid, best_cl, best_mim, best_ctrl, drop, verdict, f"{reason}; {note}", se=se_drop, **details)


def _acc_pair(result: dict | None) -> tuple[float | None, float | None]:
    return dig(result, "linear_probe", "final"), dig(result, "finetune")


def _probe_record(result: dict | None) -> dict | None:
    """Per-image correctness of the last-depth mean-pooled probe (the accuracy C8 reads)."""
    return probe_correct(dig(result, "linear_probe"), -1)


@_register("C8")
def c8_hybrid(m: Measurements) -> Claim:
    """Some 0<λ<1 is at least as good as both endpoints on linear probing AND fine-tuning, and
    beats the control on both. ``cl`` / ``mim`` / ``control``: mean of (linear probe,
    fine-tune) of λ = 1, λ = 0 and the control; ``value``: the best hybrid's worse margin.
    Every λ (the endpoints and the control too) is probed mean-pooled: a hybrid is trained with
    both objectives, so no one representation is its own (:data:`PROBE_POOL` is for C7 / C9)."""
    cid, margin = "C8", MARGINS["C8"]
    sweep = {float(k): v for k, v in m.sweep.items()}
    ends = {lam: _acc_pair(sweep.get(lam)) for lam in (0.0, 1.0)}
    inner = sorted(lam for lam in sweep if 0.0 < lam < 1.0)
    if not all(is_finite(*pair) for pair in ends.values()) or not inner:
        return missing_claim(cid, "linear probe and fine-tuning of λ = 0, λ = 1 and a hybrid 0 < λ < 1")
    ctrl = _acc_pair(m.evaluations.get("control"))
    lp_best, ft_best = max(ends[0.0][0], ends[1.0][0]), max(ends[0.0][1], ends[1.0][1])
    per_lam = {}
    for lam in inner:
        lp, ft = _acc_pair(sweep[lam])
        if not is_finite(lp, ft):
            continue
        score = min(lp - lp_best, ft - ft_best)
        moved = is_finite(*ctrl) and lp - ctrl[0] > margin and ft - ctrl[1] > margin
        per_lam[lam] = {"linear_probe": lp, "finetune": ft, "score": score, "beats_control": moved}
    mean2 = lambda pair: (pair[0] + pair[1]) / 2 if is_finite(*pair) else None  # noqa: E731
    details = {"sweep": {f"{lam:g}": {"linear_probe": _acc_pair(sweep[lam])[0], "finetune": _acc_pair(sweep[lam])[1]}
                         for lam in sorted(sweep)},
               "per_lam": {f"{k:g}": v for k, v in per_lam.items()}, "control_linear_probe": ctrl[0],
               "control_finetune": ctrl[1], "margin": margin}
    if not per_lam:
        return missing_claim(cid, "finite hybrid accuracies")

    best = max(per_lam, key=lambda lam: (per_lam[lam]["score"] >= 0 and per_lam[lam]["beats_control"],
                                         per_lam[lam]["score"]))
    value = per_lam[best]["score"]
    details["best_lam"] = best
    # SE of the binding difference: the hybrid's worse metric against the better endpoint's
    lp, ft = per_lam[best]["linear_probe"], per_lam[best]["finetune"]
    index, record = (0, _probe_record) if lp - lp_best <= ft - ft_best else (1, finetune_record)
    end = max((0.0, 1.0), key=lambda lam: ends[lam][index])
    se, se_kind = accuracy_contrast_se([(1.0, (lp, ft)[index], record(sweep[best])),
                                        (-1.0, ends[end][index], record(sweep[end]))], m.num_eval)
    details["se_kind"] = se_kind
    args = (mean2(ends[1.0]), mean2(ends[0.0]), mean2(ctrl), value)
    if not is_finite(*ctrl):
        return make_claim(cid, *args, "inconclusive", "no control measured", se=se, **details)
    order = three_way(value, se, 0.0)
    noise = (f"threshold 2 SE = {fmt_value(threshold(0.0, se), 'points')}, {SE_KIND_WORDS[se_kind]}" if se is not None
             else "no standard error available")
    if order == "holds" and per_lam[best]["beats_control"]:
        verdict, reason = "holds", (f"λ = {best:g} beats both endpoints on both metrics beyond noise "
                                    f"(worse margin {fmt_value(value, 'points', True)}; {noise}) and beats the control")
    elif order == "reversed":
        verdict, reason = "reversed", (f"every hybrid is worse than the better endpoint beyond noise on some "
                                       f"metric (best: λ = {best:g}, worse margin {fmt_value(value, 'points', True)}; {noise})")
    else:
        verdict = "tie"
        reason = (f"λ = {best:g} is within noise of the better endpoint (worse margin {fmt_value(value, 'points', True)}; {noise})"
                  if order == "tie" else f"λ = {best:g} beats both endpoints but not the control")
    return make_claim(cid, *args, verdict, reason, se=se, **details)


@_register("C9")
def c9_linear_probe(m: Measurements) -> Claim:
    """Final-depth linear-probe accuracy: CL > MIM; CL must beat the control's probe. CL is read
    on the normed CLS token, MIM mean-pooled (:data:`PROBE_POOL`), the control as CL (the rule
    compares the control with CL)."""
    probes, pool, note = _probes(m, {"cl": "cl", "mim": "mim", "control": "cl"})
    vals = [dig(probes[r], "final") for r in ("cl", "mim", "control")]
    ses, se_kind = rate_ses(m, *vals, [probe_correct(probes[r], -1) for r in ("cl", "mim", "control")])
    claim = ordered_verdict("C9", *vals, +1, MARGINS["C9"], CONTROL_RULE["C9"], ses, se_kind, pool=pool)
    return dataclasses.replace(claim, reason=f"{claim.reason}; {note}")


@_register("C10")
def c10_finetune(m: Measurements) -> Claim:
    """Fine-tuning accuracy: CL < MIM; MIM must beat fine-tuning the control of its own
    architecture from scratch (``control-mim`` where the families give MIM its own encoder); each
    model's gain over its own untrained architecture is recorded (``control-cl`` / ``control-mim``
    where measured, else the shared control)."""
    controls = {r: own_control_role(m, r) for r in ("cl", "mim")}
    ft = {r: dig(m.evaluations.get(r), "finetune") for r in ("cl", "mim")}
    untrained = {r: dig(m.evaluations.get(controls[r][0]), "finetune") for r in ("cl", "mim")}
    gains = {r: ft[r] - untrained[r] if is_finite(ft[r], untrained[r]) else None for r in ("cl", "mim")}
    vals = [ft["cl"], ft["mim"], untrained["mim"]]  # the rule is "mim": MIM against its own control
    records = [finetune_record(m.evaluations.get(r)) for r in ("cl", "mim", controls["mim"][0])]
    ses, se_kind = rate_ses(m, *vals, records)
    claim = ordered_verdict("C10", *vals, -1, MARGINS["C10"], CONTROL_RULE["C10"], ses, se_kind,
                            control_model=m.names.get(controls["mim"][0]), gain_over_own_architecture=gains)
    notes = "; ".join(note for _, note in controls.values() if note)
    return dataclasses.replace(claim, reason=f"{claim.reason}; {notes}") if notes else claim


@_register("C11")
def c11_scaling(m: Measurements) -> Claim:
    """Fine-tuning gain from the smallest to the largest size (``cl`` / ``mim``): CL < MIM; the
    large MIM model must beat fine-tuning the large control from scratch by the margin
    (``control``: the large control's fine-tuning accuracy, an accuracy, not a gain)."""
    cid, margin = "C11", MARGINS["C11"]
    control_role, note = own_control_role(m, "mim-large")
    ft = {r: dig(m.evaluations.get(r), "finetune") for r in ("cl-small", "cl-large", "mim-small", "mim-large")}
    ft["control-large"] = dig(m.evaluations.get(control_role), "finetune")
    if not is_finite(ft["cl-small"], ft["cl-large"], ft["mim-small"], ft["mim-large"]):
        return missing_claim(cid, "fine-tuning of CL and MIM at two sizes")
    cl_gain = ft["cl-large"] - ft["cl-small"]
    mim_gain = ft["mim-large"] - ft["mim-small"]
    value = mim_gain - cl_gain + 0.0
    details = {"finetune": ft, "models": {**{r: m.names.get(r) for r in ft}, "control-large": m.names.get(control_role)},
               "margin": margin, "rule": "mim"}

    control = ft["control-large"]
    record = {r: finetune_record(m.evaluations.get(r)) for r in ("cl-small", "cl-large", "mim-small", "mim-large")}
    record["control-large"] = finetune_record(m.evaluations.get(control_role))
    weights = {"mim-large": 1.0, "mim-small": -1.0, "cl-large": -1.0, "cl-small": 1.0}  # MIM's gain − CL's
    se, se_kind = accuracy_contrast_se([(w, ft[r], record[r]) for r, w in weights.items()], m.num_eval)
    details["se_kind"] = se_kind
    if not is_finite(control):
        return make_claim(cid, cl_gain, mim_gain, None, value, "inconclusive", "no control measured", se=se, **details)
    order = three_way(value, se, margin)
    se_ctrl, _ = accuracy_contrast_se([(1.0, ft["mim-large"], record["mim-large"]),
                                       (-1.0, control, record["control-large"])], m.num_eval)
    mim_moved = ft["mim-large"] - control > threshold(margin, se_ctrl)
    details["mim_moved"] = mim_moved
    noise = f"threshold {fmt_value(threshold(margin, se), 'points')}; {se_text(se, 'points', se_kind)}"
    if order == "reversed":
        verdict, reason = "reversed", f"CL gains more than MIM beyond noise (difference {fmt_value(value, 'points', True)}; {noise})"
    elif order == "tie":
        verdict, reason = "tie", f"the gains do not differ beyond noise (difference {fmt_value(value, 'points', True)}; {noise})"
    elif not mim_moved:
        verdict, reason = "tie", "MIM gains more, but its large model does not beat fine-tuning the control from scratch"
    else:
        verdict, reason = "holds", f"MIM gains {fmt_value(value, 'points')} more than CL ({noise}) and its large model beats the control"
    reason = f"{reason}; {note}" if note else reason
    return make_claim(cid, cl_gain, mim_gain, control, value, verdict, reason, se=se, **details)


def evaluate_claim(cid: str, m: Measurements) -> Claim:
    """One claim of ``m``; a claim whose inputs are absent comes back "inconclusive"."""
    return CLAIMS[cid](m)


def evaluate_claims(m: Measurements, ids: Iterable[str] | None = None) -> list[Claim]:
    """Every claim (or those of ``ids``) of one seed's measurements, in C1… order."""
    return [CLAIMS[cid](m) for cid in (ids or CLAIMS)]
