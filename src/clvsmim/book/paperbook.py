"""The paper book on the official checkpoints (``clvsmim book --profile paper --source official``).

With ``source="official"`` no ViT-B is trained: the chapters analyse the official MoCo v3,
SimMIM and MAE ViT-B/16 checkpoints (:mod:`clvsmim.weights`) on the given ImageFolder, next to
a **random-init control** built from the seed (:func:`random_control`: the same timm ViT-B/16
architecture as the official MoCo v3 / MAE encoders, untrained — not trained, not downloaded).

What this module adds to the chapters:

* :func:`random_control` and :func:`cache_name` (the control's caches carry its seed);
* :func:`probe_evaluation` — F7's linear probe of every depth on the official checkpoints
  (the budget of ``clvsmim analyze``), in the same ``{"linear_probe": {...}}`` form as a zoo
  evaluation, so C7 / C9 read it unchanged;
* :func:`short_finetune` / :func:`finetune_evaluation` — C10's short fine-tune of the official
  checkpoints and the control on the analysis images;
* :func:`official_measurements` / :func:`official_claims_table` — the claims evaluable on the
  official models (C1–C5, C7, C9, C10), C8 and C11 marked ``needs the GPU-sized profile``, and
  :func:`claim_sources`, where each claim's models came from;
* :func:`built_sweep` / :func:`sweep_claims` — what has no official checkpoint (the λ sweep, the
  size trend) read from the zoo of the GPU-sized profile (``gpu``, its ``models:`` list) when it
  is built on the same images; C8 and C11 are then measured on it;
* :func:`literature_sweep_points` — the hybrid chapter's F9 without trained hybrids: the
  λ = 0 (SimMIM) and λ = 1 (MoCo v3) ViT-B end points from ``book/data/literature.csv``;
* :func:`book_data_root` — the images of the paper book when none are given: Imagenette
  (train/ and val/; the analyses read val/), fetched and sha256-verified by
  :func:`clvsmim.weights.fetch_imagenette`, or one clear error naming ``--data``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from clvsmim.weights.download import DownloadError

__all__ = ["DataUnavailableError", "book_data_root", "default_images", "CONTROL", "NEEDS_TRAINING", "GPU_NOTE", "random_control", "cache_name", "probe_images",
           "probe_evaluation", "probe_evaluations", "official_measurements", "official_claims_table",
           "claim_sources", "literature_sweep_points", "needs_training_note", "SWEEP_PROFILE", "built_sweep",
           "sweep_description", "sweep_note", "sweep_claims", "short_finetune", "finetune_evaluation",
           "LabelledImages"]

#: Name of the untrained control (as in the zoo).
CONTROL = "random"
#: The official checkpoint whose architecture the control copies (timm ``vit_base_patch16_224``).
CONTROL_ARCHITECTURE_OF = "moco_v3_vit_b"
#: C10's short fine-tune of the official checkpoints (and the control) on the probe images: steps,
#: the largest batch (the train half caps it), and the base learning rate per 256 images (upstream
#: MoCo v3 / MAE fine-tuning: blr 5e-4, linearly scaled by batch / 256).
FINETUNE_STEPS = 20
FINETUNE_BATCH = 16
FINETUNE_BASE_LR = 5e-4
#: Claims whose models have no official checkpoint: they need training.
NEEDS_TRAINING = {"C8": "the hybrid λ sweep", "C11": "ViT-Ti/S/B of CL and MIM (the size trend)"}
#: Claims that read evaluations not run on the official checkpoints here.
NOT_RUN_ON_OFFICIAL = {"C6": "the shape-bias evaluation (cue-conflict images) of the official models"}
#: Claims measured on the official models with a reduced budget, and that budget in words.
SHORT_BUDGET = {"C10": f"a short fine-tune ({FINETUNE_STEPS} steps, ≤ {FINETUNE_BATCH} images a batch) on the "
                       "analysis images, tested on their other half"}
GPU_NOTE = "needs the GPU-sized profile"


# --------------------------------------------------------------------------- the default images

class DataUnavailableError(DownloadError):
    """The paper book's default images (Imagenette) could not be fetched or verified."""


def default_images(progress: bool = True) -> str:
    """The folder holding Imagenette's ``train/`` and ``val/`` (the analyses read ``val/``),
    fetched, sha256-verified (pinned on first download, see :mod:`clvsmim.weights.download`) and
    extracted into the cache on first use. Raises :class:`DataUnavailableError` — one line,
    naming ``--data`` — when that fails (no network, a tampered archive, ...)."""
    from clvsmim.weights import IMAGENETTE, fetch_imagenette

    try:
        return str(fetch_imagenette(progress=progress))
    except Exception as exc:  # DownloadError, ChecksumError, OSError, tarfile.TarError ...
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(reason) > 300:
            reason = reason[:297] + "..."
        raise DataUnavailableError(
            f"the paper book's default images, Imagenette ({IMAGENETTE.url}), could not be fetched ({reason}); "
            f"give an ImageFolder with --data PATH (in a notebook: data_root = \"PATH\")") from exc


def book_data_root(profile, source: str, data_root: str | None) -> str | None:
    """The images a chapter reads: ``data_root`` when given; with ``source="official"`` and a
    profile without its own ``data.root``, Imagenette (:func:`default_images`) — the official
    checkpoints are never analysed on the synthetic shapes; else ``None`` (the profile's data)."""
    from clvsmim.config import load_profile

    if data_root is not None or source != "official":
        return data_root
    cfg = load_profile(profile) if isinstance(profile, str) else profile
    return None if cfg.data.root is not None else default_images()


def random_control(seed: int = 0) -> torch.nn.Module:
    """Untrained ViT-B/16 of the official MoCo v3 / MAE architecture, initialised from ``seed``
    (timm's init under a forked RNG: the caller's random state is untouched). Eval mode."""
    from clvsmim.weights import get_entry
    from clvsmim.weights.convert import build_architecture

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_architecture(get_entry(CONTROL_ARCHITECTURE_OF).architecture)
    return model.eval()


def cache_name(profile, name: str) -> str:
    """The folder name of an official model's caches: ``random-seed<s>`` for the control (its
    weights depend on the profile's training seed), ``name`` otherwise."""
    return f"{name}-seed{profile.train.seed}" if name.split("-")[0] == CONTROL else name


def needs_training_note(what: str, sweep_profile: str = "gpu", data_root: str | None = None) -> str:
    """The one line a chapter shows where its models would need GPU training."""
    return (f"*{what} {GPU_NOTE}: these models have no official checkpoint; train them once on one GPU "
            f"(`clvsmim zoo build --profile {sweep_profile} --data {data_root or 'DATA'}`, the λ sweep and the "
            f"size trend only) and run the book again. Shown instead: the paper's numbers.*")


# --------------------------------------------------------------------------- the GPU-sized sweep

#: The profile whose zoo holds what has no official checkpoint (the λ sweep, the size trend).
SWEEP_PROFILE = "gpu"


def built_sweep(sweep_profile: str | None, data_root: str | None = None, images: int | None = None):
    """The profile ``sweep_profile`` (analysis count ``images``) when every model of its zoo is
    built on ``data_root`` — the λ sweep (F9, C8) and the size trend (C11) — else ``None``."""
    from clvsmim.config import load_profile
    from clvsmim.train import zoo

    if not sweep_profile:
        return None
    cfg = load_profile(sweep_profile, images)
    specs = zoo.zoo_specs(cfg, data_root)
    return cfg if specs and all(zoo.is_built(cfg, spec) for spec in specs) else None


def sweep_description(sweep) -> str:
    """Where the sweep's models came from, in words: ``GPU-sized profile gpu (ViT-S/16 at 160 px, …)``."""
    m = sweep.model
    sizes = "/".join(sweep.sizes) or "default"
    return (f"GPU-sized profile {sweep.name} (λ sweep at {m.img_size} px, patch {m.patch_size}, width "
            f"{m.embed_dim}; sizes {sizes}; {sweep.train.steps} steps × {sweep.train.batch_size} images)")


def sweep_note(source: str, sweep, what: str, sweep_profile: str = SWEEP_PROFILE,
               data_root: str | None = None) -> str:
    """The paragraph a chapter appends about where its sweep comes from: nothing for the zoo's
    own models, the GPU-sized profile when its zoo is built, else :func:`needs_training_note`."""
    if source == "zoo":
        return ""
    if sweep is not None:
        return (f"\n\n*{what}: no official checkpoint exists, so these models come from the "
                f"{sweep_description(sweep)}, trained on the same images (`{data_root}`).*")
    return "\n\n" + needs_training_note(what, sweep_profile, data_root)


def sweep_claims(sweep, data_root: str | None = None, device: str = "auto") -> dict[str, Any]:
    """C8 and C11 measured on the built zoo of the GPU-sized profile ``sweep`` (nothing trained
    here): ``{"C8": Claim, "C11": Claim}``."""
    from clvsmim import claims

    m = claims.measure(sweep, data_root, device, build=False, missing="skip")
    return {cid: claims.evaluate_claim(cid, m) for cid in NEEDS_TRAINING}


# --------------------------------------------------------------------------- F7 on official checkpoints

def probe_images(profile, data_root: str | None = None, n: int | None = None):
    """Up to ``n`` (default ``profile.eval.num_analysis_images``) evaluation images taken
    round-robin over the classes (class order, then file order), so that every class gets a
    train and a test image: ``(uint8 n×3×S×S, int64 n)``."""
    from clvsmim.data import get_batch, open_dataset

    n = n or profile.eval.num_analysis_images
    dataset = open_dataset(profile.with_data_root(data_root).data, "eval")
    labels = torch.as_tensor(dataset.labels)
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in sorted(set(labels.tolist()))]
    order = [idx[k] for k in range(max(map(len, per_class), default=0)) for idx in per_class if k < len(idx)]
    return get_batch(dataset, torch.tensor(sorted(order[:n]), dtype=torch.int64))


def probe_evaluation(profile, name: str, data_root: str | None = None, device: str = "auto",
                     n: int | None = None) -> dict[str, Any]:
    """Linear probe of every depth of the official ``name`` (or the seeded control) on
    :func:`probe_images`, cached: ``{"linear_probe": {"per_layer", "final", "best_depth", "pool",
    "num_train", "num_test", "num_classes", "budget"}}`` (accuracies in [0, 1]).

    Mean-pooled patch tokens, train / test = alternate images within each class
    (:func:`clvsmim.analysis.model_report.probe_split`), the budget of ``clvsmim analyze``."""
    from clvsmim.analysis.model_report import PROBE_LR, PROBE_STEPS, PROBE_WEIGHT_DECAY, probe_split
    from clvsmim.cache import cached_json
    from clvsmim.claims import model_cache_path

    n = n or profile.eval.num_analysis_images
    content = {"n": n, "steps": PROBE_STEPS, "lr": PROBE_LR, "weight_decay": PROBE_WEIGHT_DECAY, "format": 1}
    path = model_cache_path(profile, name, "probe", content, "official", data_root)

    def compute() -> dict[str, Any]:
        from clvsmim.analysis import linear_probe_per_layer
        from clvsmim.evaluation import extract_features
        from clvsmim.book.report import backbone, resolve_device

        images, labels = probe_images(profile, data_root, n)
        classes = labels.unique()
        train, test = probe_split(labels)
        if len(classes) < 2 or len(labels[train].unique()) < 2 or not test:
            raise ValueError(f"the linear probe needs ≥ 2 classes with ≥ 2 images each; {len(labels)} images of "
                             f"{len(classes)} classes in {data_root} (raise --images)")
        model = backbone(profile, name, "official", data_root, resolve_device(device))
        feats = extract_features(model, images, profile.eval.batch_size, pool="mean")
        y = torch.searchsorted(classes, labels)  # 0..K-1
        tr, te = torch.tensor(train), torch.tensor(test)
        acc = linear_probe_per_layer([f[tr] for f in feats], y[tr], [f[te] for f in feats], y[te],
                                     steps=PROBE_STEPS, lr=PROBE_LR, seed=0, weight_decay=PROBE_WEIGHT_DECAY)
        best = max(range(len(acc)), key=lambda d: (acc[d], d))
        return {"linear_probe": {"per_layer": acc, "final": acc[-1], "best_depth": int(best), "pool": "mean",
                                 "num_train": len(train), "num_test": len(test), "num_classes": len(classes),
                                 "budget": {"steps": PROBE_STEPS, "lr": PROBE_LR,
                                            "weight_decay": PROBE_WEIGHT_DECAY}}}

    return cached_json(path, compute)


class LabelledImages:
    """``uint8 N×3×S×S`` images with their labels, as a dataset (``len``, ``[i] -> (image,
    label)``, ``labels``, ``num_classes``) for :func:`clvsmim.evaluation.finetune.finetune`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.num_classes = images, torch.as_tensor(labels, dtype=torch.int64), num_classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def short_finetune(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eval_cfg,
                   steps: int = FINETUNE_STEPS, seed: int = 0) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` end to end on the train half of ``images`` (alternate images
    within each class, :func:`clvsmim.analysis.model_report.probe_split`) and test on the other
    half: ``{"finetune": accuracy in [0, 1], "num_train", "num_test", "num_classes", "budget"}``.
    The budget: ``steps`` AdamW steps of ``min(FINETUNE_BATCH, train)`` images at
    ``FINETUNE_BASE_LR × batch / 256``, the augmentation and schedule of
    :func:`clvsmim.evaluation.finetune.finetune` (``eval_cfg`` gives the rest)."""
    import dataclasses

    from clvsmim.analysis.model_report import probe_split
    from clvsmim.evaluation import finetune

    classes = labels.unique()
    y = torch.searchsorted(classes, labels)
    train, test = probe_split(y)
    if len(classes) < 2 or not test:
        raise ValueError(f"the short fine-tune needs ≥ 2 classes with ≥ 2 images each; {len(labels)} images of "
                         f"{len(classes)} classes (raise --images)")
    batch = min(FINETUNE_BATCH, len(train))
    lr = FINETUNE_BASE_LR * batch / 256
    cfg = dataclasses.replace(eval_cfg, finetune_steps=int(steps), batch_size=batch, finetune_lr=lr)
    tr, te = torch.tensor(train), torch.tensor(test)
    acc = finetune(model, LabelledImages(images[tr], y[tr], len(classes)), LabelledImages(images[te], y[te], len(classes)),
                   cfg, seed=seed)
    return {"finetune": float(acc), "num_train": len(train), "num_test": len(test), "num_classes": len(classes),
            "budget": {"steps": int(steps), "batch_size": batch, "lr": lr}}


def finetune_evaluation(profile, name: str, data_root: str | None = None, device: str = "auto",
                        n: int | None = None) -> dict[str, Any]:
    """C10's short fine-tune (:func:`short_finetune`) of the official ``name`` (or the seeded
    control) on :func:`probe_images`, cached next to its probe."""
    from clvsmim.cache import cached_json
    from clvsmim.claims import model_cache_path

    n = n or profile.eval.num_analysis_images
    content = {"n": n, "steps": FINETUNE_STEPS, "batch": FINETUNE_BATCH, "base_lr": FINETUNE_BASE_LR, "format": 1}
    path = model_cache_path(profile, name, "finetune", content, "official", data_root)

    def compute() -> dict[str, Any]:
        from clvsmim.book.report import backbone, resolve_device

        images, labels = probe_images(profile, data_root, n)
        model = backbone(profile, name, "official", data_root, resolve_device(device))
        return short_finetune(model, images, labels, profile.eval, seed=profile.train.seed)

    return cached_json(path, compute)


def probe_evaluations(profile, names: Sequence[str], data_root: str | None = None, device: str = "auto",
                      n: int | None = None) -> dict[str, dict[str, Any]]:
    """``{name: probe_evaluation(name)}``."""
    return {name: probe_evaluation(profile, name, data_root, device, n) for name in names}


# --------------------------------------------------------------------------- claims

def official_measurements(profile, data_root: str | None = None, device: str = "auto", cl: str = "moco",
                          mim: str = "simmim"):
    """:class:`clvsmim.claims.Measurements` of the official CL / MIM checkpoints and the seeded
    control: analyses, token-cluster scores, the per-depth linear probes and C10's short
    fine-tune (:func:`finetune_evaluation`; no shape bias, no sweep, no sizes)."""
    from clvsmim.claims import Measurements, token_cluster_scores
    from clvsmim.book.report import model_analysis

    names = {"cl": cl, "mim": mim, "control": CONTROL}
    probes = probe_evaluations(profile, list(names.values()), data_root, device)
    tuned = {n: finetune_evaluation(profile, n, data_root, device) for n in names.values()}
    return Measurements(
        analyses={r: model_analysis(profile, n, "official", data_root, device) for r, n in names.items()},
        evaluations={r: {**probes[n], "finetune": tuned[n]["finetune"], "finetune_details": tuned[n]}
                     for r, n in names.items()},
        cluster={r: token_cluster_scores(profile, n, "official", data_root, device) for r, n in names.items()},
        names={r: ("random init (seed %d)" % profile.train.seed) if n == CONTROL else f"official {n}"
               for r, n in names.items()},
    )


def official_claims_table(profile, data_root: str | None = None, device: str = "auto",
                          measurements=None, sweep=None):
    """The claims on the official checkpoints (one "seed": the profile's, for the control).
    C8 and C11 come from the built zoo of the GPU-sized profile ``sweep`` (:func:`built_sweep`);
    without it they are inconclusive with the reason ``not measured: needs the GPU-sized profile``."""
    import time

    from clvsmim import claims

    start = time.perf_counter()
    bundle = measurements if measurements is not None else official_measurements(profile, data_root, device)
    trained = sweep_claims(sweep, data_root, device) if sweep is not None else {}
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
    official = f"official MoCo v3 / SimMIM ViT-B/16 + random-init ViT-B/16 (seed {seed})"
    out = {}
    for s in table.summaries:
        if s.id in NEEDS_TRAINING and sweep is not None:
            out[s.id] = f"{sweep_description(sweep)}: {NEEDS_TRAINING[s.id]}, trained here"
        elif s.id in NEEDS_TRAINING:
            out[s.id] = f"{GPU_NOTE} ({NEEDS_TRAINING[s.id]})"
        elif s.id in NOT_RUN_ON_OFFICIAL:
            out[s.id] = f"{official}; {NOT_RUN_ON_OFFICIAL[s.id]} is not run here"
        elif s.id in SHORT_BUDGET:
            out[s.id] = f"{official}; {SHORT_BUDGET[s.id]}"
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
