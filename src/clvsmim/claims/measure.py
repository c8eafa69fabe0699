"""Measuring a zoo: the models a claim reads, their cached measurements, the whole table over
seeds."""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from clvsmim.analysis import PatchTokens, image_cluster_score
from clvsmim.book.report import analysis_pass, model_analysis, model_cache_path
from clvsmim.cache import cached_json
from clvsmim.claims.per_image import per_image_statistics
from clvsmim.claims.rules import CLAIMS, evaluate_claims
from clvsmim.claims.table import ClaimsTable, aggregate
from clvsmim.claims.verdict import Measurements
from clvsmim.config import Profile, seed_profile
from clvsmim.methods import ModelRef
from clvsmim.train import zoo

# --------------------------------------------------------------------------- measuring

#: Bump when :func:`token_cluster_scores` changes its recipe.
CLUSTER_FORMAT = 1


def token_cluster_scores(ref: ModelRef, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """:func:`clvsmim.analysis.image_cluster_score` (silhouette of the patch tokens grouped by
    image id, cosine) of every depth, on :func:`clvsmim.book.report.analysis_images`; cached as
    JSON next to the model. ``{"depths": [0..L], "score": [...], "num_images": n}``."""
    n = n or ref.profile.eval.num_analysis_images
    path = model_cache_path(ref, "cluster", {"format": CLUSTER_FORMAT, "n": n})

    def compute() -> dict[str, Any]:
        per_depth = analysis_pass(ref, {"tokens": PatchTokens(depths=None)}, device, n)["tokens"]
        ids = torch.arange(len(per_depth[0]))
        scores = [image_cluster_score(z, ids, num_prefix_tokens=0) for z in per_depth]
        return {"depths": list(range(len(scores))), "score": scores, "num_images": len(ids)}

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
    ``scaling`` (default: when the profile has two sizes or more) adds the C11 roles. Where the
    profile's families give CL or MIM another encoder than the shared control's,
    ``control-<role>`` (``control-mim``, ``control-mim-large``, ``control-cl``) names the untrained
    control of that model's own architecture (:func:`clvsmim.train.zoo.architecture_control`),
    which C10 / C11 measure pretraining against."""
    names = {"cl": cl, "mim": mim, "control": control}
    ends = _size_extremes(profile)
    if (scaling is None or scaling) and ends is not None:
        small, large = ends
        names.update({"cl-small": f"{cl}-{small}", "cl-large": f"{cl}-{large}", "mim-small": f"{mim}-{small}",
                      "mim-large": f"{mim}-{large}", "control-large": f"{control}-{large}"})
    for role in ("cl", "mim", "mim-large"):
        own = _own_control(profile, names.get(role))
        if own is not None and own.arch is not None:  # not the shared control
            names[f"control-{role}"] = own.name
    return names


def _own_control(profile: Profile, name: str | None) -> zoo.ModelSpec | None:
    """The untrained control of ``name``'s architecture (None: no such zoo model)."""
    if not name:
        return None
    try:
        spec = zoo.resolve(profile, name)
        return zoo.architecture_control(profile, spec.objective, spec.size)
    except KeyError:
        return None


def _num_eval(profile: Profile) -> int | None:
    """Images behind every accuracy: the synthetic evaluation split (None for an ImageFolder,
    whose size is not known without opening it)."""
    return int(profile.eval_data().num_eval) if profile.data.root is None else None


def measure(profile: Profile, device: str = "auto", *, build: bool = True,
            jobs: int | None = None, progress: bool = False, scaling: bool | None = None,
            cl: str = "moco", mim: str = "simmim", control: str = "random", missing: str = "raise") -> Measurements:
    """Everything the claims read, for one profile (one training seed): builds the missing
    models when ``build``, evaluates them (cached), analyses CL / MIM / control (cached).

    ``missing="skip"`` (with ``build=False``) leaves unbuilt models out: the claims reading them
    are inconclusive ("not measured"). The hybrid sweep counts only when every λ of the
    profile is built — C8 is never decided on part of it. CL, MIM and the control must exist.
    """

    names = model_names(profile, scaling, cl, mim, control)
    sweep_specs = zoo.hybrid_sweep(profile)
    wanted = list(dict.fromkeys([*names.values(), *(spec.key for _, spec in sweep_specs)]))
    if build:
        zoo.build(profile, only=wanted, jobs=jobs, progress=progress)
    results = zoo.evaluations(profile, only=wanted, jobs=jobs, missing=missing, progress=progress)
    key = {n: zoo.resolve(profile, n).key for n in names.values()}
    core = ("cl", "mim", "control")
    absent = [n for n in names.values() if key[n] not in results]
    absent += [spec.name for _, spec in sweep_specs if spec.key not in results and spec.name not in absent]
    sweep = {lam: results[spec.key] for lam, spec in sweep_specs if spec.key in results}

    refs = {r: ModelRef(profile, names[r]) for r in core}
    return Measurements(
        analyses={r: model_analysis(ref, device) for r, ref in refs.items()},
        per_image={r: per_image_statistics(ref, device) for r, ref in refs.items()},
        num_eval=_num_eval(profile),
        evaluations={r: results[key[n]] for r, n in names.items() if key[n] in results},
        cluster={r: token_cluster_scores(ref, device) for r, ref in refs.items()},
        sweep=sweep if len(sweep) == len(sweep_specs) else {},
        names={**names, **{f"lam={lam:g}": spec.name for lam, spec in sweep_specs}},
        missing=absent,
    )


def claims_table(profile: Profile, seeds: Sequence[int] = (0, 1, 2), device: str = "auto", *, build: bool = True, jobs: int | None = None, progress: bool = False,
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
            bundles[s] = measure(seed_profile(profile, s), device, build=build, jobs=jobs,
                                 progress=progress, scaling=scaling, missing=missing)
    per_seed = {s: evaluate_claims(bundles[s]) for s in seeds}
    summaries = [aggregate([per_seed[s][i] for s in seeds], seeds) for i in range(len(CLAIMS))]
    return ClaimsTable(profile=profile.name, seeds=seeds, summaries=summaries,
                       models={str(s): bundles[s].names for s in seeds},
                       missing_models={str(s): bundles[s].missing for s in seeds if bundles[s].missing},
                       wall_time_s=round(time.perf_counter() - start, 2))
