"""Data behind the *representation* chapter, and the sentences that compare it with the paper.

F5  token-level t-SNE of up to 18 images from 3 classes (:func:`tsne_selection`,
    :func:`token_tsne_result`, cached per model), with the silhouette of the tokens by image.
F6  Fourier Δ log amplitude of the highest frequency per depth (:func:`token_depth_curves`).
A-token-similarity  token cosine similarity per depth (:func:`token_depth_curves`).
A-svd  normalised singular-value spectra at the last depth (:func:`svd_spectra`, :func:`effective_rank`).
A-shape-texture / A-noise  shape bias and noise robustness from the zoo's evaluations (official models:
    shape bias only, :mod:`clvsmim.book.paper_shape`) (:func:`evaluation_rows`).

The verdicts quoted in the prose are those of :mod:`clvsmim.claims` (C3, C4, C5, C6), computed
on the same numbers (:func:`measurements`), so the chapter and the summary never disagree.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from clvsmim.analysis import image_cluster_score, token_tsne
from clvsmim.book import report
from clvsmim.book.paper_shape import shape_bias_evaluation
from clvsmim.book.chapters.common import (WEAK_SILHOUETTE, eval_size,  # noqa: F401  (also read as attributes of this module)
                                          cluster_strength_note, fmt_number)
from clvsmim.book.units import points
from clvsmim.cache import cached_json
from clvsmim.claims import C6_MIN_CUE_OVER_CHANCE, Measurements, model_cache_path, token_cluster_scores, with_claim
from clvsmim.data import SHAPES, get_batch, open_dataset
from clvsmim.evaluation import extract_tokens, shape_bias_standard_error
from clvsmim.methods import CONTROL, ModelRef, display_name
from clvsmim.train import zoo
from clvsmim.uncertainty import rate_difference_se

__all__ = [
    "CL", "MIM", "MODELS", "CONTROL", "TSNE_FORMAT", "chapter_models", "load_evaluations",
    "tsne_selection", "token_tsne_result", "tsne_record", "token_depth_curves", "svd_spectra", "effective_rank",
    "svd_record", "evaluation_rows", "shape_texture_record", "cue_probe_levels", "cue_hits", "noise_record", "measurements", "tsne_paragraph", "fourier_paragraph", "fourier_order_sentence", "cosine_paragraph",
    "svd_paragraph", "shape_paragraph", "noise_paragraph", "eval_size",
]

CL, MIM = "moco", "simmim"
#: The models of the chapter: CL, MIM and the second MIM method.
MODELS = ("moco", "simmim", "mae")
#: Differences smaller than this (silhouette, log amplitude, accuracy) are called "no difference" in the prose.
TOLERANCE = 0.01
#: Bump when :func:`token_tsne_result` changes its recipe.
TSNE_FORMAT = 1


def chapter_models(profile, source: str = "zoo") -> list[ModelRef]:
    """The chapter's models (:data:`MODELS`), the control of the same ``source`` last."""
    return [ModelRef(profile, n, source) for n in (*MODELS, CONTROL)]


def load_evaluations(refs: Sequence[ModelRef], device: str = "auto") -> dict[str, dict]:
    """``{name: evaluation}``: the zoo's (cached by :func:`clvsmim.train.zoo.evaluations`), or for
    official models C6's shape bias of CL, MIM and the control (:func:`shape_bias_evaluation`)."""
    if refs[0].source != "zoo":
        return {r.name: {"shape_texture": shape_bias_evaluation(r, device)} for r in refs if r.name in (CL, MIM, CONTROL)}
    results = zoo.evaluations(refs[0].profile, only=[r.name for r in refs], progress=False)
    return {r.name: results[zoo.resolve(r.profile, r.name).key] for r in refs}


# --------------------------------------------------------------------------- F5

def tsne_selection(profile, classes: int = 3, per_class: int = 6) -> dict[str, Any]:
    """The first ``per_class`` evaluation images of each of the first ``classes`` classes (in
    class order) that have that many: ``{"indices", "labels", "class_names"}``."""
    dataset = open_dataset(profile.data, "eval")
    labels = torch.as_tensor(dataset.labels)
    names = list(getattr(dataset, "classes", []))
    chosen: list[int] = []
    picked: list[int] = []
    for c in sorted(set(labels.tolist())):
        idx = torch.nonzero(labels == c).flatten()[:per_class]
        if len(idx) == per_class:
            chosen += idx.tolist()
            picked.append(int(c))
        if len(picked) == classes:
            break
    if len(picked) < classes:
        raise ValueError(f"the evaluation split has only {len(picked)} classes with {per_class} images")
    return {"indices": chosen, "labels": [int(labels[i]) for i in chosen],
            "class_names": [names[c] if c < len(names) else str(c) for c in picked], "classes": picked}


def token_tsne_result(ref: ModelRef, device: str = "auto", classes: int = 3, per_class: int | None = None,
                      perplexity: float = 20.0, seed: int = 0) -> dict[str, Any]:
    """t-SNE of the last-depth patch tokens of the :func:`tsne_selection` images, cached next to
    the model: ``coords`` (N_tokens×2), ``image`` and ``label`` per token, ``class_names``,
    ``silhouette_image`` / ``silhouette_class`` (cosine silhouette of the tokens grouped by image
    / by class, :func:`clvsmim.analysis.image_cluster_score`), ``perplexity`` actually used.
    ``per_class`` defaults to 6, fewer when the book analyses fewer images (≥ 2, ``--images // classes``)."""
    per_class = per_class or min(6, max(2, ref.profile.eval.num_analysis_images // classes))

    content = {"format": TSNE_FORMAT, "classes": classes, "per_class": per_class, "perplexity": perplexity,
               "seed": seed, "depth": -1}
    profile = ref.profile
    path = model_cache_path(ref, "tsne", content)

    def compute() -> dict[str, Any]:
        sel = tsne_selection(profile, classes, per_class)
        images, labels = get_batch(open_dataset(profile.data, "eval"), torch.tensor(sel["indices"]))
        model = report.backbone(ref, report.resolve_device(device))
        tokens = extract_tokens(model, images, profile.eval.batch_size, depth=-1)  # n×N×C
        n_img, n_tok = tokens.shape[:2]
        image_ids = torch.arange(n_img)
        perp = float(min(perplexity, (n_img * n_tok - 1) / 3))
        coords = token_tsne(tokens, image_ids, perplexity=perp, seed=seed, num_prefix_tokens=0)
        return {"name": ref.name, "coords": coords.tolist(),
                "image": image_ids.repeat_interleave(n_tok).tolist(),
                "label": labels.repeat_interleave(n_tok).tolist(),
                "class_names": sel["class_names"], "classes": sel["classes"], "perplexity": perp,
                "tokens_per_image": n_tok, "num_images": n_img,
                "silhouette_image": image_cluster_score(tokens, image_ids, num_prefix_tokens=0),
                "silhouette_class": image_cluster_score(tokens, labels, num_prefix_tokens=0)}

    return cached_json(path, compute)


def tsne_record(results: Mapping[str, dict]) -> dict[str, dict[str, Any]]:
    """F5's figure record: per model the token coordinates ``x`` / ``y``, each token's ``image``
    and ``label``, the class names, both silhouettes and the perplexity used."""
    return {n: {"x": [c[0] for c in r["coords"]], "y": [c[1] for c in r["coords"]],
                "image": r["image"], "label": r["label"], "class_names": r["class_names"],
                "silhouette_image": r["silhouette_image"], "silhouette_class": r["silhouette_class"],
                "perplexity": r["perplexity"]} for n, r in results.items()}


# --------------------------------------------------------------------------- F6, A-token-similarity, A-svd

def _lookup(d: Mapping, key: str):
    for part in key.split("."):
        d = d[part]
    return d


def token_depth_curves(analyses: Mapping[str, dict], key: str) -> dict[str, list[float]]:
    """``{name: per-depth values}`` of one analysis entry (``fourier.delta_log_amplitude``,
    ``token_cosine``; depth 0 = embeddings … L), plus ``depth``."""
    curves = {n: [float(v) for v in _lookup(a, key)] for n, a in analyses.items()}
    depth = max((len(c) for c in curves.values()), default=0)
    return {"depth": list(range(depth)), **curves}


def svd_spectra(analyses: Mapping[str, dict], depth: int | None = None) -> dict[str, Any]:
    """Normalised singular values (largest = 1) at ``depth`` (default: the last, L) per model."""
    out: dict[str, Any] = {}
    for n, a in analyses.items():
        spectra = a["svd_spectrum"]
        d = len(spectra) - 1 if depth is None else depth
        out[n] = [float(v) for v in spectra[d]]
        out.setdefault("depth", d)
    return out


def effective_rank(spectrum: Sequence[float]) -> float:
    """``exp(entropy)`` of the singular values normalised to sum 1: 1 for one direction, R for a
    flat spectrum of R values."""
    vals = [max(float(v), 0.0) for v in spectrum]
    total = sum(vals)
    if total <= 0:
        return float("nan")
    p = [v / total for v in vals if v > 0]
    return math.exp(-sum(x * math.log(x) for x in p))


def svd_record(spectra: Mapping[str, Any]) -> dict[str, Any]:
    """A-svd's figure record: :func:`svd_spectra` plus each model's :func:`effective_rank`."""
    return {**spectra, "effective_rank": {n: effective_rank(s) for n, s in spectra.items() if n != "depth"}}


def evaluation_rows(evaluations: Mapping[str, dict]) -> dict[str, dict[str, float | None]]:
    """Per model: ``shape_bias``, ``shape_acc``, ``texture_acc``, ``num_decided``, ``clean``, ``low_freq``,
    ``high_freq``."""
    rows = {}
    for n, e in evaluations.items():
        st, nz = e.get("shape_texture") or {}, e.get("noise") or {}
        rows[n] = {"shape_bias": st.get("shape_bias"), "shape_acc": st.get("shape_acc"),
                   "texture_acc": st.get("texture_acc"), "num_decided": st.get("num_decided"), "clean": nz.get("clean"),
                   "low_freq": nz.get("low_freq"), "high_freq": nz.get("high_freq")}
    return rows


def shape_texture_record(rows: Mapping[str, dict], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A-shape-texture's figure record: shape bias, shape and texture accuracy of ``names``
    (:func:`evaluation_rows`)."""
    return {n: {k: rows[n][k] for k in ("shape_bias", "shape_acc", "texture_acc")} for n in names}


def cue_probe_levels() -> dict[str, float]:
    """``chance`` (one of the cue-conflict split's classes) and ``floor``: the hit rate each cue
    probe of CL and MIM must reach before C6 reads a shape bias (:data:`C6_MIN_CUE_OVER_CHANCE` × chance)."""
    chance = 1.0 / len(SHAPES)
    return {"chance": chance, "floor": C6_MIN_CUE_OVER_CHANCE * chance}


def cue_hits(rows: Mapping[str, dict]) -> dict[str, tuple[float | None, float | None]]:
    """Per model (:func:`evaluation_rows`): (shape hit rate, texture hit rate) on the cue-conflict images."""
    return {n: (r.get("shape_acc"), r.get("texture_acc")) for n, r in rows.items()}


def noise_record(rows: Mapping[str, dict], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A-noise's figure record: clean, low- and high-frequency-noise accuracy of ``names``."""
    return {n: {k: rows[n][k] for k in ("clean", "low_freq", "high_freq")} for n in names}


def measurements(profile, analyses: Mapping[str, dict], evaluations: Mapping[str, dict] | None = None,
                 device: str = "auto", source: str = "zoo"):
    """The :class:`clvsmim.claims.Measurements` of this chapter's models (CL = moco, MIM = simmim,
    control = random), with the C5 token-cluster scores on the analysis images."""

    roles = {"cl": CL, "mim": MIM, "control": CONTROL}
    have = {r: n for r, n in roles.items() if n in analyses}
    return Measurements(
        analyses={r: analyses[n] for r, n in have.items()},
        evaluations={r: evaluations[n] for r, n in have.items() if evaluations and n in evaluations},
        cluster={r: token_cluster_scores(ModelRef(profile, n, source), device) for r, n in have.items()},
        names=dict(have),
    )


# --------------------------------------------------------------------------- sentences

def _name(n: str) -> str:
    return display_name(n)


def tsne_paragraph(results: Mapping[str, dict], claim=None) -> str:
    """What F5 shows on these models (silhouettes) and C5's verdict on the analysis images."""

    parts = [f"{_name(n)}: silhouette by image {fmt_number(r['silhouette_image'])}, "
             f"by class {fmt_number(r['silhouette_class'])}" for n, r in results.items()]
    any_r = next(iter(results.values()))
    text = (f"Each panel embeds the {any_r['num_images'] * any_r['tokens_per_image']} patch tokens "
            f"({any_r['tokens_per_image']} per image) of {any_r['num_images']} evaluation images of the classes "
            f"{', '.join(any_r['class_names'])}, at the last depth (t-SNE, perplexity {any_r['perplexity']:.0f}). "
            f"The silhouette (cosine, in the token space, not in the 2-D map) is high when the tokens of one "
            f"image form their own cluster: " + "; ".join(parts) + ".")
    s = {n: r["silhouette_image"] for n, r in results.items()}
    if CL in s and MIM in s:
        diff = s[CL] - s[MIM]
        if abs(diff) < TOLERANCE:
            text += (f" On these images the two silhouettes are within {TOLERANCE} of each other: no visible "
                     f"difference, whereas the paper finds one cluster per image for CL and intermingled tokens "
                     f"for MIM.")
        else:
            same = diff > 0
            text += (f" On these images {_name(CL)}'s tokens cluster by image "
                     f"{'more' if same else 'less'} than {_name(MIM)}'s — "
                     + ("as in the paper." if same else
                        "the opposite of the paper, where CL forms one cluster per image and MIM intermingles them."))
            if same:
                note = cluster_strength_note(s[CL])
                text += f" This is relative to MIM only: {note}." if note else ""
    if claim is not None and claim.verdict == "holds":
        note = cluster_strength_note(claim.cl)
        if note:
            text += f" C5 (below) holds relative to MIM only: {note}."
    return with_claim(text, claim)


def fourier_paragraph(curves: Mapping[str, Sequence[float]], claim=None) -> str:
    """F6 on these models: mean over depth, the trend at the last depths (MIM's implicit decoder)."""

    models = [n for n in curves if n != "depth"]
    means = {n: sum(curves[n]) / len(curves[n]) for n in models}
    text = ("Mean Δ log amplitude of the highest frequency over all depths (higher = more high-frequency "
            "content relative to the mean): " + ", ".join(f"{_name(n)} {fmt_number(means[n])}" for n in models) + ".")
    if MIM in curves and len(curves[MIM]) >= 3:
        mim = curves[MIM]
        last = len(mim) - 1
        peak = max(range(1, last), key=lambda d: mim[d])  # inside the network: blocks 1..L-1
        drop = mim[peak] - mim[last]
        text += (f" In the paper the last SimMIM blocks lower the high frequencies again (they act as a decoder); "
                 f"here {_name(MIM)} is highest inside the network at depth {peak} ({fmt_number(mim[peak])}) "
                 f"and ends at {fmt_number(mim[last])} after block {last} — "
                 + (f"a drop of {fmt_number(drop)}, as in the paper." if drop > TOLERANCE else
                    "no drop at the end, unlike the paper."))
    if CL in curves and MIM in curves:
        text += " " + fourier_order_sentence(curves[CL], curves[MIM])
        if CONTROL in curves and abs(curves[CL][0] - curves[CONTROL][0]) < TOLERANCE:
            text += (f" At depth 0 (the patch embeddings) {_name(CL)} equals the untrained control "
                     f"({fmt_number(curves[CL][0])} vs {fmt_number(curves[CONTROL][0])}): its patch projection stays "
                     f"frozen at its random initialisation (MoCo v3's stability trick), while {_name(MIM)} learns its own "
                     f"({fmt_number(curves[MIM][0])}).")
    return with_claim(text, claim)


def depths_by_order(cl: Sequence[float], mim: Sequence[float], tolerance: float = TOLERANCE) -> dict[str, list[int]]:
    """Depths where ``cl < mim − tolerance`` (``"below"``), ``cl > mim + tolerance`` (``"above"``), else ``"tied"``."""
    if len(cl) != len(mim):
        raise ValueError(f"curves of different depths: {len(cl)} vs {len(mim)}")
    out: dict[str, list[int]] = {"below": [], "above": [], "tied": []}
    for d, (c, m) in enumerate(zip(cl, mim)):
        out["below" if c < m - tolerance else "above" if c > m + tolerance else "tied"].append(d)
    return out


def _depth_list(depths: Sequence[int]) -> str:
    if not depths:
        return "no depth"
    return ("depth " if len(depths) == 1 else "depths ") + ", ".join(map(str, depths))


def fourier_order_sentence(cl: Sequence[float], mim: Sequence[float]) -> str:
    """Where along depth CL's high-frequency amplitude lies below MIM's (the paper's order), and
    how much of the depth-mean difference the embeddings (depth 0) and the first half carry."""
    order = depths_by_order(cl, mim)
    half = (len(cl) + 1) // 2
    early = sum(cl[:half]) / half - sum(mim[:half]) / half
    late = sum(cl[half:]) / (len(cl) - half) - sum(mim[half:]) / (len(cl) - half)
    return (f"Depth by depth, {_name(CL)} lies below {_name(MIM)} (the paper's order) at "
            f"{_depth_list(order['below'])}, above it at {_depth_list(order['above'])} (ties within {TOLERANCE}: "
            f"{_depth_list(order['tied'])}); the mean difference CL − MIM is {fmt_number(early)} over depths "
            f"0–{half - 1} and {fmt_number(late)} over depths {half}–{len(cl) - 1}.")


def cosine_paragraph(curves: Mapping[str, Sequence[float]], claim=None) -> str:
    models = [n for n in curves if n != "depth"]
    text = ("Mean cosine similarity between the patch tokens of one image at the last depth: "
            + ", ".join(f"{_name(n)} {fmt_number(curves[n][-1])}" for n in models)
            + ". The paper finds CL's tokens of one image more homogeneous — less diverse — than MIM's in the "
              "later layers: CL's attention collapses into homogeneity, so CL hardly adjusts the tokens of a "
              "single image, while MIM keeps them diverse.")
    return with_claim(text, claim)


def svd_paragraph(spectra: Mapping[str, Any]) -> str:
    models = [n for n in spectra if n != "depth"]
    ranks = {n: effective_rank(spectra[n]) for n in models}
    text = (f"Effective rank (exp of the entropy of the normalised singular values) of the token matrix of "
            f"one image at depth {spectra['depth']}: "
            + ", ".join(f"{_name(n)} {fmt_number(ranks[n], 1)}" for n in models)
            + f" (of at most {len(spectra[models[0]])}).")
    if CL in ranks and MIM in ranks:
        rel = (ranks[MIM] - ranks[CL]) / max(ranks[MIM], ranks[CL], 1e-12)
        text += " A few dominant singular values mean homogeneous tokens, as the paper reports for CL; "
        if abs(rel) < 0.05:
            text += ("here the two spectra are about equally steep (effective ranks within 5 %), so this "
                     "measurement does not show the paper's difference.")
        else:
            same = rel > 0
            text += (f"here {_name(CL)}'s spectrum is {'steeper' if same else 'flatter'} than {_name(MIM)}'s "
                     f"({'as in the paper' if same else 'unlike the paper'}).")
    return text


def shape_paragraph(rows: Mapping[str, dict], claim=None) -> str:
    text = ("Shape bias = decisions that follow the shape / decisions that follow either the shape or the texture, "
            "on cue-conflict images (the shape of one class filled with another class's texture), for a linear "
            "probe trained on images where both cues agree: "
            + ", ".join(f"{_name(n)} {fmt_number(r['shape_bias'])}" for n, r in rows.items()) + ".")
    decided = {n: (r["shape_bias"], r.get("num_decided")) for n, r in rows.items()}
    if all(k and p is not None and math.isfinite(p) for p, k in decided.values()):
        text += (" The bias counts only the n decisions that follow one of the two cues, so its binomial "
                 "standard error is √(p(1−p)/n): "
                 + ", ".join(f"{_name(n)} n = {k}, ± {fmt_number(shape_bias_standard_error(p, k), 3)}"
                             for n, (p, k) in decided.items())
                 + "; differences smaller than about twice that are within sampling noise.")
    return with_claim(text, claim)


def noise_paragraph(rows: Mapping[str, dict], num_images: int | None = None) -> str:
    """Accuracy change under low- / high-frequency noise (in points); the paper's account predicts
    that high-frequency noise costs CL less than MIM.

    The comparison is called consistent (or opposite) only when the difference of the two
    changes exceeds twice its standard error, from the binomial standard errors of the four
    accuracies over ``num_images`` evaluation images (treated as independent: conservative for
    the paired clean / noisy accuracies). Without ``num_images`` it is not scored."""

    def change(r, key):
        return None if r["clean"] is None or r[key] is None else r[key] - r["clean"]

    parts = [f"{_name(n)} {points(change(r, 'low_freq'))} (low) / {points(change(r, 'high_freq'))} (high)"
             for n, r in rows.items()]
    text = ("Change of the final-depth linear probe's accuracy when band-limited noise of equal energy is added: "
            + "; ".join(parts) + ".")
    if CL in rows and MIM in rows:
        dc, dm = change(rows[CL], "high_freq"), change(rows[MIM], "high_freq")
        if dc is not None and dm is not None:
            text += (" If CL relies on low frequencies and MIM on high ones, high-frequency noise should cost CL "
                     f"less accuracy than MIM; here the change is {points(dc)} for {_name(CL)} and {points(dm)} "
                     f"for {_name(MIM)}: a difference of {points(dc - dm)}")
            if not num_images:
                text += (" — with no uncertainty available for these accuracies, this difference is not scored "
                         "against the paper.")
                return text
            se = rate_difference_se([rows[m][k] for m in (CL, MIM) for k in ("clean", "high_freq")], [num_images] * 4)
            text += f" ± {points(se, signed=False)} (one standard error, {num_images} evaluation images) — "
            if abs(dc - dm) <= 2 * se:
                text += "within twice its standard error, so this measurement neither supports nor contradicts the paper."
            else:
                text += ("consistent with the paper." if dc > dm else "the opposite of the paper's prediction.")
    return text
