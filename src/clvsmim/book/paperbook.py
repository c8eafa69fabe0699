"""The paper book on the official checkpoints (``clvsmim book --profile paper --source official``).

With ``source="official"`` no ViT-B is trained: the chapters analyse the official MoCo v3,
SimMIM and MAE ViT-B/16 checkpoints (:mod:`clvsmim.weights`) on the given ImageFolder, next to
a **random-init control** built from the seed (:func:`random_control`: the same timm ViT-B/16
architecture as the official MoCo v3 / MAE encoders, untrained — not trained, not downloaded).

What this module adds to the chapters:

* :func:`random_control` (:mod:`clvsmim.weights.control`) and :func:`cache_name`
  (:mod:`clvsmim.book.report`; the control's caches carry its seed), re-exported here;
* :func:`probe_evaluation` — F7's linear probe of every depth on the official checkpoints
  (the budget of ``clvsmim analyze``), in the same ``{"linear_probe": {...}}`` form as a zoo
  evaluation, so C7 / C9 read it unchanged;
* :func:`official_measurements` / :func:`official_claims_table` — the claims evaluable on the
  official models (C1–C7, C9, C10; C6 on synthetic cue-conflict images,
  :mod:`clvsmim.book.paper_shape`; C10 with the short fine-tune of :mod:`clvsmim.book.paper_finetune`),
  C8 and C11 from the GPU-sized profile's zoo when it is built (:mod:`clvsmim.book.paper_sweep`),
  else marked ``needs the GPU-sized profile``, and :func:`claim_sources`, where each claim's
  models came from;
* :func:`literature_sweep_points` — the hybrid chapter's F9 without trained hybrids: the
  λ = 0 (SimMIM) and λ = 1 (MoCo v3) ViT-B end points from ``book/data/literature.csv``.

The paper book's images (Imagenette when none are given, the probe images) come from
:mod:`clvsmim.book.paper_data`; this module re-exports the names of all three helpers.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from clvsmim import claims
from clvsmim.analysis.probe import accuracy_of, linear_probe_correct_per_layer
from clvsmim.analysis.model_report import PROBE_LR, PROBE_STEPS, PROBE_WEIGHT_DECAY, probe_split
from clvsmim.book.report import backbone, cache_name, model_analysis, model_cache_path, resolve_device
from clvsmim.cache import cached_json
from clvsmim.claims import Measurements, token_cluster_scores
from clvsmim.book.paper_data import DataUnavailableError, book_data_root, default_images, probe_images
from clvsmim.book.paper_finetune import (FINETUNE_BASE_LR, FINETUNE_BATCH, FINETUNE_MAX_EPOCHS, FINETUNE_STEPS,
                                         finetune_evaluation, short_finetune)
from clvsmim.book.paper_shape import shape_bias_evaluation, shape_budget_words
from clvsmim.book.paper_sweep import (GPU_NOTE, NEEDS_TRAINING, SWEEP_PROFILE, built_sweep, needs_training_note,
                                      sweep_claims, sweep_description, sweep_note)
from clvsmim.evaluation import extract_features
from clvsmim.methods import ModelRef
from clvsmim.uncertainty import pack_correct
from clvsmim.weights.control import random_control

__all__ = ["DataUnavailableError", "book_data_root", "default_images", "CONTROL", "NEEDS_TRAINING", "GPU_NOTE",
           "random_control", "cache_name", "probe_images", "probe_evaluation", "probe_evaluations",
           "official_measurements", "official_claims_table", "claim_sources", "literature_sweep_points",
           "needs_training_note", "SWEEP_PROFILE", "built_sweep", "sweep_description", "sweep_note", "sweep_claims",
           "short_finetune", "finetune_evaluation", "shape_bias_evaluation", "table_rows", "FINETUNE_BASE_LR",
           "FINETUNE_BATCH", "FINETUNE_STEPS"]

#: Name of the untrained control (as in the zoo).
CONTROL = "random"
#: Claims measured on the official models with a reduced budget or a stand-in protocol, in words
#: (given the number of analysis images).
SHORT_BUDGET = {"C6": shape_budget_words,
                "C10": lambda n: f"a short fine-tune (≤ {FINETUNE_STEPS} steps and ≤ {FINETUNE_MAX_EPOCHS} epochs of "
                                 f"≤ {FINETUNE_BATCH} images a batch) "
                                 "on the analysis images, tested on their other half"}


# --------------------------------------------------------------------------- F7 on official checkpoints

def probe_evaluation(ref, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """Linear probe of every depth of the official model ``ref`` (or the seeded control) on
    :func:`probe_images`, cached: ``{"linear_probe": {"per_layer", "final", "best_depth", "pool",
    "correct_per_layer", "num_train", "num_test", "num_classes", "budget"}}`` (accuracies in [0, 1];
    ``correct_per_layer``: which test images each depth's probe gets right, for paired SEs).

    Mean-pooled patch tokens, train / test = alternate images within each class
    (:func:`clvsmim.analysis.model_report.probe_split`), the budget of ``clvsmim analyze``."""
    profile = ref.profile
    n = n or profile.eval.num_analysis_images
    content = {"n": n, "steps": PROBE_STEPS, "lr": PROBE_LR, "weight_decay": PROBE_WEIGHT_DECAY, "format": 2}
    path = model_cache_path(ref, "probe", content)

    def compute() -> dict[str, Any]:
        images, labels = probe_images(profile, n)
        classes = labels.unique()
        train, test = probe_split(labels)
        if len(classes) < 2 or len(labels[train].unique()) < 2 or not test:
            raise ValueError(f"the linear probe needs ≥ 2 classes with ≥ 2 images each; {len(labels)} images of "
                             f"{len(classes)} classes in {profile.data.root} (raise --images)")
        model = backbone(ref, resolve_device(device))
        feats = extract_features(model, images, profile.eval.batch_size, pool="mean")
        y = torch.searchsorted(classes, labels)  # 0..K-1
        tr, te = torch.tensor(train), torch.tensor(test)
        correct = linear_probe_correct_per_layer([f[tr] for f in feats], y[tr], [f[te] for f in feats], y[te],
                                                 steps=PROBE_STEPS, lr=PROBE_LR, seed=0,
                                                 weight_decay=PROBE_WEIGHT_DECAY)
        acc = [accuracy_of(c) for c in correct]
        best = max(range(len(acc)), key=lambda d: (acc[d], d))
        return {"linear_probe": {"per_layer": acc, "final": acc[-1], "best_depth": int(best), "pool": "mean",
                                 "correct_per_layer": [pack_correct(c.numpy()) for c in correct],
                                 "num_train": len(train), "num_test": len(test), "num_classes": len(classes),
                                 "budget": {"steps": PROBE_STEPS, "lr": PROBE_LR,
                                            "weight_decay": PROBE_WEIGHT_DECAY}}}

    return cached_json(path, compute)


def probe_evaluations(profile, names: Sequence[str], device: str = "auto",
                      n: int | None = None) -> dict[str, dict[str, Any]]:
    """``{name: probe_evaluation(name)}`` of the official models (and the control) ``names``."""
    return {name: probe_evaluation(ModelRef(profile, name, "official"), device, n) for name in names}


# --------------------------------------------------------------------------- claims

def official_measurements(profile, device: str = "auto", cl: str = "moco",
                          mim: str = "simmim"):
    """:class:`clvsmim.claims.Measurements` of the official CL / MIM checkpoints and the seeded
    control: analyses, token-cluster scores, the per-depth linear probes, C6's shape bias on
    synthetic cue-conflict images (:func:`shape_bias_evaluation`) and C10's short fine-tune
    (:func:`finetune_evaluation`; no sweep, no sizes)."""
    names = {"cl": cl, "mim": mim, "control": CONTROL}
    probes = probe_evaluations(profile, list(names.values()), device)
    refs = {r: ModelRef(profile, n, "official") for r, n in names.items()}
    tuned = {r: finetune_evaluation(ref, device) for r, ref in refs.items()}
    shape = {r: shape_bias_evaluation(ref, device) for r, ref in refs.items()}
    return Measurements(
        analyses={r: model_analysis(ref, device) for r, ref in refs.items()},
        evaluations={r: {**probes[n], "finetune": tuned[r]["finetune"], "finetune_correct": tuned[r].get("finetune_correct"),
                         "finetune_details": tuned[r],
                         "shape_texture": shape[r]}
                     for r, n in names.items()},
        cluster={r: token_cluster_scores(ref, device) for r, ref in refs.items()},
        names={r: ("random init (seed %d)" % profile.train.seed) if n == CONTROL else f"official {n}"
               for r, n in names.items()},
    )


def official_claims_table(profile, device: str = "auto", measurements=None, sweep=None):
    """The claims on the official checkpoints (one "seed": the profile's, for the control).
    C8 and C11 come from the built zoo of the GPU-sized profile ``sweep`` (:func:`built_sweep`);
    without it they are inconclusive with the reason ``not measured: needs the GPU-sized profile``."""
    start = time.perf_counter()
    bundle = measurements if measurements is not None else official_measurements(profile, device)
    trained = sweep_claims(sweep, device) if sweep is not None else {}
    per_claim = []
    for claim in claims.evaluate_claims(bundle):
        if claim.id in NEEDS_TRAINING:
            claim = trained.get(claim.id) or claims.missing_claim(
                claim.id, f"{GPU_NOTE} ({NEEDS_TRAINING[claim.id]} must be trained)")
        per_claim.append(claims.aggregate([claim], [profile.train.seed]))
    return claims.ClaimsTable(profile=profile.name, seeds=[profile.train.seed], summaries=per_claim,
                              models={str(profile.train.seed): bundle.names},
                              wall_time_s=round(time.perf_counter() - start, 2))


def claim_sources(table, profile=None, sweep=None) -> dict[str, str]:
    """Claim id -> where its models came from (official checkpoints, the GPU-sized profile
    ``sweep`` when built, or the profile it needs)."""
    seed = profile.train.seed if profile is not None else table.seeds[0]
    n = profile.eval.num_analysis_images if profile is not None else None
    official = f"official MoCo v3 / SimMIM ViT-B/16 + random-init ViT-B/16 (seed {seed})"
    out = {}
    for s in table.summaries:
        if s.id in NEEDS_TRAINING and sweep is not None:
            out[s.id] = f"{sweep_description(sweep)}: {NEEDS_TRAINING[s.id]}, trained here"
        elif s.id in NEEDS_TRAINING:
            out[s.id] = f"{GPU_NOTE} ({NEEDS_TRAINING[s.id]})"
        elif s.id in SHORT_BUDGET and n is not None:
            out[s.id] = f"{official}; {SHORT_BUDGET[s.id](n)}"
        else:
            out[s.id] = official
    return out


# --------------------------------------------------------------------------- F9 without trained hybrids

def literature_sweep_points(df) -> list[dict[str, Any]]:
    """The λ sweep's end points from the literature table (ViT-B, linear probe and fine-tune in
    %): λ = 0 SimMIM, λ = 1 MoCo v3, each with its ``status`` and ``source``. The paper's
    hybrid points (0 < λ < 1) are not in ``literature.csv``."""
    rows = []
    for lam, method in ((0.0, "SimMIM"), (1.0, "MoCo v3")):
        hit = df[(df["method"] == method) & (df["size"] == "B")]
        hit = hit[hit["linear_probe"].notna() & hit["finetune"].notna()]
        if len(hit):
            r = hit.iloc[0]
            rows.append({"lam": lam, "name": method, "linear_probe": float(r["linear_probe"]),
                         "finetune": float(r["finetune"]), "status": r["status"], "source": r["source"]})
    return rows


def table_rows(sources: Mapping[str, str]) -> str:
    """Markdown table: claim id | where its models came from."""
    lines = ["| claim | models |", "|---|---|"]
    lines += [f"| {cid} | {where} |" for cid, where in sources.items()]
    return "\n".join(lines)
