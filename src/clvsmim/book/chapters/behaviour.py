"""Data behind the *behaviour* chapter (F1–F4), and the sentences that compare it with the paper.

F1  literature numbers (``book/data/literature.csv``:
    :func:`~clvsmim.book.chapters.common.read_literature`, :func:`literature_panels`) next to
    the same three comparisons measured on the zoo
    (:func:`~clvsmim.book.chapters.common.evaluations_by_name`, :func:`measured_behaviour`).
F2  attention maps of two query patches of one image
    (:mod:`clvsmim.book.chapters.attention_maps`, re-exported here).
A-own-architecture  fine-tuning of CL and MIM against fine-tuning the untrained control of each
    one's own architecture (:func:`own_architecture_pairs`, :func:`finetune_over_own_architecture`,
    :func:`own_architecture_sentences`): how much of a fine-tuning difference is the pretraining.
F3 / F4  attention distance and NMI per depth from :func:`clvsmim.book.report.model_analysis`
    (:func:`depth_curves`, :func:`late_value`).

Every statement the chapter makes about a measurement is built by
:func:`~clvsmim.book.chapters.common.compare_sentence`, which says whether the measured order
agrees with the paper's.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from clvsmim.book.chapters.attention_maps import (foreground_fractions,  # noqa: F401  (F2: read as ch.*)
                                                  local_mass, map_cosine, pick_image, pick_queries,
                                                  query_attention_data, query_attention_maps,
                                                  query_attention_record)
from clvsmim.book.chapters.common import (FAMILIES,  # noqa: F401  (also read as attributes of this module)
                                          LITERATURE_COLUMNS, PAPER_RUN_MARK, SIZE_ORDER, STATUSES, compare_sentence,
                                          eval_size, evaluations_by_name, fmt_number, read_literature, verdict)
from clvsmim.claims import last_third
from clvsmim.methods import display_name
from clvsmim.train import zoo
from clvsmim.uncertainty import accuracy_contrast_se, finetune_record

__all__ = [
    "is_verified", "literature_panels", "literature_citations", "measured_behaviour",
    "late_blocks", "late_value", "depth_curves", "pick_image",
    "pick_queries", "foreground_fractions", "query_attention_maps", "query_attention_data",
    "map_cosine", "local_mass", "query_attention_record", "behaviour_sentences", "attention_sentences",
    "paper_own_runs", "dense_probe_sentence", "size_crossover_sentence", "own_architecture_pairs",
    "finetune_over_own_architecture", "own_architecture_sentences", "eval_size",
]


# --------------------------------------------------------------------------- F1: literature

def is_verified(status: str | Iterable[str]) -> bool:
    """Only numbers read in a stored source (``verified``) get filled markers."""
    if isinstance(status, str):
        return status == "verified"
    return all(s == "verified" for s in status)


def _worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUSES.index)


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def literature_panels(df) -> dict[str, list[dict[str, Any]]]:
    """The three F1 comparisons as lists of JSON-able records (no NaN).

    ``linear_vs_finetune``: ViT-B rows with both numbers; ``size``: every row with a
    fine-tuning number (method, size, params); ``detection``: rows with a COCO box AP, their
    ImageNet fine-tuning number taken from the same row or else from the row of the same
    method and size that has one (the status is then the worse of the two).
    """
    panels: dict[str, list[dict[str, Any]]] = {"linear_vs_finetune": [], "size": [], "detection": []}
    for _, r in df.iterrows():
        base = {"method": r["method"], "family": r["family"], "size": r["size"], "status": r["status"]}
        lp, ft, ap = _num(r["linear_probe"]), _num(r["finetune"]), _num(r["coco_ap_box"])
        if r["size"] == "B" and lp is not None and ft is not None:
            panels["linear_vs_finetune"].append({**base, "linear_probe": lp, "finetune": ft})
        if ft is not None:
            panels["size"].append({**base, "params_m": _num(r["params_m"]), "finetune": ft})
        if ap is not None:
            status = r["status"]
            if ft is None:
                same = df[(df["method"] == r["method"]) & (df["size"] == r["size"]) & df["finetune"].notna()]
                if len(same):
                    ft = float(same["finetune"].iloc[0])
                    status = _worst([status, same["status"].iloc[0]])
            if ft is not None:
                panels["detection"].append({**base, "status": status, "coco_ap_box": ap, "finetune": ft})
    panels["size"].sort(key=lambda d: (d["method"], SIZE_ORDER.index(d["size"])))
    return panels


def literature_citations(df) -> str:
    """A markdown list: every literature number with its source and status."""
    lines = []
    for _, r in df.iterrows():
        nums = [f"{label} {r[col]:g}" for col, label in
                (("linear_probe", "linear"), ("finetune", "fine-tune"), ("coco_ap_box", "COCO AP"))
                if not math.isnan(r[col])]
        lines.append(f"- {r['method']} ViT-{r['size']} ({', '.join(nums)}): {r['source']} — *{r['status']}*")
    return "\n".join(lines)


def paper_own_runs(df) -> dict[str, dict[str, float]]:
    """Fine-tuning of the paper's own runs (rows whose method ends in :data:`PAPER_RUN_MARK`)
    by zoo name and size: ``{"moco": {"Ti": 69.0, …}, "simmim": {…}}``."""
    short = {"MoCo v3": "moco", "SimMIM": "simmim", "MAE": "mae", "DINO": "dino", "BEiT": "beit"}
    out: dict[str, dict[str, float]] = {}
    for _, r in df.iterrows():
        method = str(r["method"])
        if not method.endswith(PAPER_RUN_MARK) or _num(r["finetune"]) is None:
            continue
        name = short.get(method[:-len(PAPER_RUN_MARK)].strip(), method[:-len(PAPER_RUN_MARK)].strip().lower())
        out.setdefault(name, {})[r["size"]] = float(r["finetune"])
    return out


# --------------------------------------------------------------------------- F1: measured

def _pct(value) -> float | None:
    return None if value is None else 100.0 * float(value)


def measured_behaviour(evals: Mapping[str, Mapping[str, Any]], sizes: Sequence[str],
                       methods: Sequence[str] = ("moco", "simmim", "mae"),
                       size_methods: Sequence[str] = ("moco", "simmim")) -> dict[str, list[dict[str, Any]]]:
    """The three F1 comparisons on the zoo, in percent, as JSON-able records.

    ``evals`` maps short names (``moco``, ``moco-Ti`` …) to :func:`clvsmim.train.zoo.evaluations`
    results. ``linear_vs_finetune`` / ``detection``: the default-size ``methods``
    (final-depth linear probe, fine-tuning, dense-probe mIoU); ``size``: ``size_methods``
    at every size of ``sizes`` that was evaluated. Missing numbers leave a record out.
    """
    out: dict[str, list[dict[str, Any]]] = {"linear_vs_finetune": [], "size": [], "detection": []}
    for name in methods:
        res = evals.get(name)
        if not res:
            continue
        lp = _pct((res.get("linear_probe") or {}).get("final"))
        ft = _pct(res.get("finetune"))
        dense = _pct((res.get("dense_probe") or {}).get("miou"))
        if lp is not None and ft is not None:
            out["linear_vs_finetune"].append({"model": name, "linear_probe": lp, "finetune": ft})
        if dense is not None and ft is not None:
            out["detection"].append({"model": name, "dense_miou": dense, "finetune": ft})
    ordered = sorted(sizes, key=lambda s: SIZE_ORDER.index(s) if s in SIZE_ORDER else len(SIZE_ORDER))
    for name in size_methods:
        for size in ordered:
            res = evals.get(f"{name}-{size}")
            ft = _pct(res.get("finetune")) if res else None
            if ft is not None:
                out["size"].append({"model": name, "size": size, "finetune": ft})
    return out


# --------------------------------------------------------------------------- own architecture

def own_architecture_pairs(profile, sizes: Sequence[str], methods: Sequence[str] = ("moco", "simmim")) -> dict[str, str]:
    """``{zoo name: zoo name of the untrained control of its architecture}`` for ``methods`` at
    every size of ``sizes`` the profile's zoo has (:func:`clvsmim.train.zoo.architecture_control`:
    ``random-simmim-S`` where the families give SimMIM its own encoder, else ``random-S``)."""
    pairs = {}
    for method in methods:
        for size in sizes:
            try:
                spec = zoo.resolve(profile, f"{method}-{size}")
                pairs[spec.name] = zoo.architecture_control(profile, spec.objective, spec.size).name
            except KeyError:
                continue  # a size (or a control) this profile's zoo does not have
    return pairs


def finetune_over_own_architecture(evals: Mapping[str, Mapping[str, Any]], pairs: Mapping[str, str],
                                   num_images: int | None = None) -> list[dict[str, Any]]:
    """One record per model of ``pairs`` with both evaluations: fine-tuning accuracy (%) of the
    trained model and of its untrained architecture, and the ``gain`` (points) pretraining gives.
    Each carries the standard errors (points) of both bars and of the gain
    (:func:`clvsmim.uncertainty.accuracy_contrast_se`): over the evaluation images — paired for the
    gain —, plus the fine-tuning runs' variance where the fine-tune was repeated
    (``eval.finetune_repeats``); binomial over ``num_images`` where no per-image record exists;
    ``se_kind`` says which (None: no SE)."""
    rows = []
    for model, control in pairs.items():
        ev, ev_control = evals.get(model) or {}, evals.get(control) or {}
        trained, untrained = _pct(ev.get("finetune")), _pct(ev_control.get("finetune"))
        if trained is None or untrained is None:
            continue
        terms = [(ev["finetune"], finetune_record(ev)), (ev_control["finetune"], finetune_record(ev_control))]
        bar_ses = [accuracy_contrast_se([(1.0, *term)], num_images)[0] for term in terms]
        gain_se, kind = accuracy_contrast_se([(1.0, *terms[0]), (-1.0, *terms[1])], num_images)
        rows.append({"model": model, "control": control, "finetune": trained, "untrained": untrained,
                     "gain": trained - untrained, "finetune_se": _pct(bar_ses[0]), "untrained_se": _pct(bar_ses[1]),
                     "gain_se": _pct(gain_se), "se_kind": kind,
                     "runs": [len(e.get("finetune_runs") or [None]) for e in (ev, ev_control)]})
    return rows


def own_architecture_sentences(rows: Sequence[Mapping[str, Any]], cl: str = "moco", mim: str = "simmim") -> list[str]:
    """Per size with both CL and MIM: the fine-tuning difference MIM − CL split into what the
    untrained architectures already differ by and what pretraining adds (MIM's gain − CL's gain)."""
    by = {r["model"]: r for r in rows}
    out = []
    for size in [m.rpartition("-")[2] for m in by if m.startswith(f"{cl}-")]:
        a, b = by.get(f"{cl}-{size}"), by.get(f"{mim}-{size}")
        if a is None or b is None:
            continue
        total, start = b["finetune"] - a["finetune"], b["untrained"] - a["untrained"]
        same = " (the same untrained encoder)" if a["control"] == b["control"] else ""
        cl_name, mim_name = display_name(cl), display_name(mim)
        out.append(f"{size}: fine-tuning {mim_name} − {cl_name} = {total:+.1f} points, of which {start:+.1f} lie "
                   f"between their untrained architectures{same} and {b['gain'] - a['gain']:+.1f} come from "
                   f"pretraining ({mim_name} gains {b['gain']:+.1f} points over its own untrained encoder, "
                   f"{cl_name} {a['gain']:+.1f}).")
    return out


# --------------------------------------------------------------------------- F3 / F4

def late_blocks(depth: int) -> list[int]:
    """The "late" blocks (1-based) of an ``L``-block ViT: the last third, the same blocks the
    claims use (:func:`clvsmim.claims.last_third`)."""

    return [i + 1 for i in last_third(depth)]


def late_value(per_block: Sequence[float]) -> float:
    """Mean of a per-block curve (entry ``l − 1`` = block ``l``) over :func:`late_blocks`."""
    blocks = late_blocks(len(per_block))
    return float(np.mean([per_block[b - 1] for b in blocks]))


def depth_curves(analyses: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """``{name: {"depth": [1..L], "mean": [L], "per_head": [L][H]}}`` of ``attention_distance``
    or ``nmi`` from :func:`clvsmim.analysis.analyze` results."""
    if metric not in ("attention_distance", "nmi"):
        raise ValueError(f"metric must be 'attention_distance' or 'nmi', got {metric!r}")
    out = {}
    for name, res in analyses.items():
        values = res[metric]
        out[name] = {"depth": list(range(1, len(values["mean"]) + 1)), "mean": list(values["mean"]),
                     "per_head": [list(h) for h in values["per_head"]]}
    return out


# --------------------------------------------------------------------------- prose

def _by_model(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {r["model"]: r for r in rows}


def dense_probe_sentence(simmim: float | None, moco: float | None) -> str:
    """The dense-probe measurement (mIoU in %), described and deliberately **not** scored against
    the paper: the paper's dense-prediction evidence (its Fig. 1c, from the MAE paper) is
    fine-tuned Mask R-CNN box AP on COCO, without SimMIM, and a frozen linear per-token probe
    is a different test (with a linear head MIM can come out behind CL)."""
    return (f"dense probe (linear, frozen last block, foreground/background mIoU): SimMIM "
            f"{fmt_number(simmim, 1, '%')} vs MoCo v3 {fmt_number(moco, 1, '%')}. This is a different test from "
            f"the paper's: its dense-prediction result (Fig. 1c, taken from the MAE paper) is COCO object "
            f"detection with a fine-tuned Mask R-CNN (box AP: MAE and BEiT above MoCo v3; SimMIM is not in it), "
            f"and with a frozen linear head MIM can come out behind CL (iBOT's ADE20K linear-head comparison), "
            f"so this measurement is not scored against the paper.")


def size_crossover_sentence(largest: str, paper_runs: Mapping[str, Mapping[str, float]]) -> str | None:
    """What the paper's own runs (†) show at ``largest``, the largest size measured here: who
    fine-tunes better there, and the first size at which MIM overtakes CL. ``None`` when the
    paper has no own run of both methods at ``largest``."""
    moco, simmim = paper_runs.get("moco", {}), paper_runs.get("simmim", {})
    if largest not in moco or largest not in simmim:
        return None
    ahead = "CL is still ahead" if moco[largest] > simmim[largest] else "MIM is already ahead"
    cross = next((s for s in SIZE_ORDER if s in moco and s in simmim and simmim[s] > moco[s]), None)
    text = (f"In the paper's own runs (†, read off its Fig. 1b) {ahead} at {largest}: MoCo v3† "
            f"{fmt_number(moco[largest], 1, '%')} vs SimMIM† {fmt_number(simmim[largest], 1, '%')} fine-tuning")
    if cross is not None and SIZE_ORDER.index(cross) > SIZE_ORDER.index(largest):
        text += (f"; MIM overtakes only at {cross}. With {largest} the largest model here, only the direction of "
                 f"the gain is comparable with the paper, not its claim that MIM wins at large sizes.")
    else:
        text += "."
    return text


def behaviour_sentences(measured: Mapping[str, Sequence[Mapping[str, Any]]],
                        paper_runs: Mapping[str, Mapping[str, float]] | None = None) -> list[str]:
    """The F1 findings of the paper, each checked on the measured numbers (:func:`compare_sentence`;
    accuracies in percent, gains in points). The dense probe is described, not scored
    (:func:`dense_probe_sentence`). ``paper_runs`` (:func:`paper_own_runs`) adds what the
    paper's own runs show at the largest size measured here (:func:`size_crossover_sentence`)."""
    out = []
    lvf = _by_model(measured.get("linear_vs_finetune", []))
    if "moco" in lvf and "simmim" in lvf:
        out.append(compare_sentence("linear probing (last block)", "MoCo v3", lvf["moco"]["linear_probe"],
                                    "SimMIM", lvf["simmim"]["linear_probe"], ">", "%", 1))
        out.append(compare_sentence("fine-tuning", "SimMIM", lvf["simmim"]["finetune"], "MoCo v3",
                                    lvf["moco"]["finetune"], ">", "%", 1))
    if "moco" in lvf and "mae" in lvf:
        out.append(compare_sentence("fine-tuning", "MAE", lvf["mae"]["finetune"], "MoCo v3",
                                    lvf["moco"]["finetune"], ">", "%", 1))
    sizes: dict[str, dict[str, float]] = {}
    for r in measured.get("size", []):
        sizes.setdefault(r["model"], {})[r["size"]] = r["finetune"]
    if "moco" in sizes and "simmim" in sizes:
        common = [s for s in SIZE_ORDER if s in sizes["moco"] and s in sizes["simmim"]]
        common += sorted(set(sizes["moco"]) & set(sizes["simmim"]) - set(common))
        if common:
            small = common[0]
            out.append(compare_sentence(f"fine-tuning of the smallest model ({small})", "MoCo v3",
                                        sizes["moco"][small], "SimMIM", sizes["simmim"][small], ">", "%", 1))
        if len(common) > 1:
            lo, hi = common[0], common[-1]
            gain = {m: sizes[m][hi] - sizes[m][lo] for m in ("moco", "simmim")}
            text = compare_sentence(f"fine-tuning gain from {lo} to {hi}", "SimMIM", gain["simmim"], "MoCo v3",
                                    gain["moco"], ">", "points", 1)
            extra = size_crossover_sentence(hi, paper_runs or {})
            out.append(text + (f" {extra}" if extra else ""))
    dense = _by_model(measured.get("detection", []))
    if "moco" in dense and "simmim" in dense:
        out.append(dense_probe_sentence(dense["simmim"]["dense_miou"], dense["moco"]["dense_miou"]))
    return out


def attention_sentences(f2: Mapping[str, Any] | None, distance: Mapping[str, Mapping[str, Any]] | None,
                        nmi: Mapping[str, Mapping[str, Any]] | None, cl: str = "moco", mim: str = "simmim",
                        control: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """The F2–F4 findings of the paper checked on the measurements: CL's maps of different
    queries are alike (higher cosine) and less local; CL attends farther (late blocks) and
    has a lower NMI (collapse). ``distance`` / ``nmi`` are :func:`depth_curves` results;
    ``control`` optionally ``{"attention_distance": curve, "nmi": curve}`` of the untrained model."""

    a, b = display_name(cl), display_name(mim)
    out = []
    if f2 is not None and cl in f2["stats"] and mim in f2["stats"]:
        sa, sb = f2["stats"][cl], f2["stats"][mim]
        out.append(compare_sentence("cosine similarity of the two queries' attention maps", a,
                                    sa["cosine_between_queries"], b, sb["cosine_between_queries"], ">", "", 2))
        la = float(np.mean(list(sa["local_mass"].values())))
        lb = float(np.mean(list(sb["local_mass"].values())))
        out.append(compare_sentence("attention within one patch of the query (mean of both queries)", b, lb, a, la,
                                    ">", "", 2))
    for curves, quantity, unit, expected, key in ((distance, "attention distance", "px", ">", "attention_distance"),
                                                  (nmi, "NMI", "", "<", "nmi")):
        if curves is None or cl not in curves or mim not in curves:
            continue
        blocks = late_blocks(len(curves[cl]["mean"]))
        span = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {blocks[0]}–{blocks[-1]}"
        va, vb = late_value(curves[cl]["mean"]), late_value(curves[mim]["mean"])
        text = compare_sentence(f"late-layer {quantity} ({span})", a, va, b, vb, expected, unit,
                                1 if unit == "px" else 3)
        if control is not None and key in control:
            ctrl = fmt_number(late_value(control[key]["mean"]), 1 if unit == "px" else 3, unit)
            text += f" (untrained control: {ctrl})"
        out.append(text)
    return out
