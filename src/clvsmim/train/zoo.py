"""The model zoo: every backbone the book analyses, trained once per configuration and cached.

What is in the zoo, the keys and the folders: :mod:`clvsmim.train.zoo_specs` (its names are
re-exported here: ``zoo.resolve``, ``zoo.zoo_specs``, ``zoo.model_dir`` …); how the runs are
spread over processes: :mod:`clvsmim.train.zoo_jobs`. This module builds the models
(:func:`build`), loads them (:func:`load`), lists them (:func:`list_models`) and evaluates them
(:func:`evaluations`, cached next to each checkpoint).

A model lives in ``cache_dir("zoo", profile.name, key)`` with the trainer's
``checkpoint.pt`` / ``log.csv`` / ``meta.json``; ``done.json`` is written last, so a
folder with a checkpoint but no ``done.json`` is an interrupted run and is resumed.
``jobs=1`` trains in this process; otherwise independent runs go to a process pool.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from clvsmim.cache import write_json_atomic
from clvsmim.config import Profile, config_key, to_dict
from clvsmim.data import open_dataset
from clvsmim.evaluation import EVALUATION_SEED, evaluate_model, finetune_precision, finetune_run
from clvsmim.models import build_vit
from clvsmim.objectives import build_objective
from clvsmim.train import trainer
from clvsmim.train.checkpoint import load_encoder, save_atomic
from clvsmim.train.zoo_jobs import ZooBuildError, default_jobs, run_jobs
from clvsmim.train.zoo_specs import (ARCHITECTURE_CONTROLS, CHECKPOINT_NAME, DONE_NAME, OBJECTIVES, ZOO_FORMAT, ModelSpec,
                                     architecture_control, default_size,
                                     folder_status, hybrid_sweep, is_built, model_dir, resolve, select_specs, spec_dir,
                                     zoo_specs)

__all__ = [
    "ZOO_FORMAT", "EVAL_FORMAT", "OBJECTIVES", "ModelSpec", "ZooBuildError", "default_size", "zoo_specs",
    "resolve", "model_dir", "is_built", "build", "load", "load_model", "hybrid_sweep", "list_models",
    "evaluations", "eval_path", "default_jobs", "select_specs", "format_table", "CHECKPOINT_NAME", "DONE_NAME",
    "spec_dir", "folder_status", "ARCHITECTURE_CONTROLS", "architecture_control",
]

#: Part of every evaluation file name: bump when :mod:`clvsmim.evaluation` changes its recipe.
EVAL_FORMAT = 3  # 2: adds linear_probe_cls (normed CLS token); 3: per-image correctness (paired SEs)


# --------------------------------------------------------------------------- build

def _save_random(spec: ModelSpec, out: Path) -> dict[str, Any]:
    """Initialise the untrained control from its seed and save it like a training checkpoint."""
    start = time.perf_counter()
    torch.manual_seed(spec.seed)
    encoder = build_vit(spec.model_cfg)
    save_atomic({"encoder": encoder.state_dict(), "model_config": to_dict(spec.model_cfg), "step": 0,
                 "objective": "random", "config": None, "wall_time_s": 0.0}, out / CHECKPOINT_NAME)
    return {"objective": "random", "step": 0, "total_steps": 0, "complete": True, "final_loss": None,
            "images_per_s": None, "wall_time_s": time.perf_counter() - start}


def _train(spec: ModelSpec, profile: Profile, out: Path, progress: bool) -> dict[str, Any]:
    """Train (or resume) one model into ``out``; its training summary."""
    resume = (out / CHECKPOINT_NAME).is_file()  # an interrupted run (no done.json): continue it
    torch.manual_seed(spec.seed)  # the initial weights are a function of the seed
    objective = build_objective(spec.objective, profile, model_cfg=spec.model_cfg, lam=spec.lam)
    dataset = open_dataset(spec.data_cfg, "train")
    extra = {"zoo_key": spec.key, "zoo_name": spec.name, "profile": profile.name, "size": spec.size,
             "lam": spec.lam}
    summary = trainer.train(objective, dataset, spec.train_cfg, out, resume=resume, progress=progress,
                            extra_meta=extra, model_config=spec.model_cfg)
    if not summary.get("complete", True):
        raise RuntimeError(f"training stopped at step {summary.get('step')} of {summary.get('total_steps')}")
    return summary


def _build_one(spec: ModelSpec, profile: Profile, progress: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip) one model; writes ``done.json`` last. Returns its record."""
    out = spec_dir(profile, spec)
    done = out / DONE_NAME
    if done.is_file() and (out / CHECKPOINT_NAME).is_file():
        return {**json.loads(done.read_text()), "trained": False}
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seeding for the run leaves the caller's RNG alone
        summary = _train(spec, profile, out, progress) if spec.trains else _save_random(spec, out)
    record = {**spec.meta(), **{k: v for k, v in summary.items() if k not in ("out_dir", "checkpoint", "log")},
              "profile": profile.name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__}
    write_json_atomic(done, record, indent=2, default=str)
    return {**record, "trained": True}


def build(profile: Profile, only: str | Iterable[str] | None = None,
          jobs: int | None = None, progress: bool = True, in_order: bool = False) -> dict[str, Path]:
    """Train every missing zoo model (or those of ``only``: keys or names); ``{key: folder}``.

    Built models are skipped; interrupted ones resume. ``jobs`` parallel processes with one
    torch thread each (default :func:`default_jobs`); ``jobs=1`` trains in this process.
    ``in_order``: runs start in the order of ``only`` (a priority list); else the costliest first.
    Raises :class:`ZooBuildError` (listing every failed key) after all runs have finished.
    """
    specs = select_specs(profile, only)
    dirs = {s.key: spec_dir(profile, s) for s in specs}
    pending = [s for s in specs if not is_built(profile, s)]
    controls = [s for s in pending if not s.trains]  # cheap: always in-process
    runs = [s for s in pending if s.trains]
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    _, failures = run_jobs(_build_one, controls, (profile, False), 1, False, "zoo")
    _, run_failures = run_jobs(_build_one, runs, (profile, progress and jobs <= 1), jobs, progress, "zoo",
                               in_order=in_order)
    failures.update(run_failures)
    if failures:
        raise ZooBuildError(failures, {k: d for k, d in dirs.items() if k not in failures})
    return dirs


# --------------------------------------------------------------------------- load

def load(profile: Profile, key_or_name: str,
         map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained timm encoder (eval mode) of a zoo model, by key or short name."""
    spec = resolve(profile, key_or_name)
    path = spec_dir(profile, spec)
    if folder_status(path) != "cached":
        raise FileNotFoundError(f"zoo model {spec.name} ({spec.key}) is not built: run "
                                f"`clvsmim zoo build --profile {profile.name} --only {spec.name}`")
    return load_encoder(path / CHECKPOINT_NAME, map_location).eval()


def load_model(profile: Profile, objective: str = "moco", lam: float | None = None, size: str | None = None,
               map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """:func:`load` by fields: ``load_model(p, "hybrid", lam=0.4)``, ``load_model(p, "simmim", size="Ti")``."""
    spec = resolve(profile, objective=objective, lam=lam, size=size)
    return load(profile, spec.key, map_location=map_location)


# --------------------------------------------------------------------------- list

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def list_models(profile: Profile) -> list[dict[str, Any]]:
    """One row per zoo model: key, name, objective, lam, size, status (cached / partial /
    missing), steps, final_loss, wall_time_s (from ``done.json``, else the partial run's meta)."""
    rows = []
    for spec in zoo_specs(profile):
        path = spec_dir(profile, spec)
        status = folder_status(path)
        info = _read_json(path / DONE_NAME) if status == "cached" else _read_json(path / "meta.json")
        info = info or {}
        rows.append({"key": spec.key, "name": spec.name, "objective": spec.objective, "lam": spec.lam,
                     "size": spec.size, "status": status, "steps": info.get("step"),
                     "total_steps": spec.train_cfg.steps if spec.train_cfg else 0,
                     "final_loss": info.get("final_loss"), "wall_time_s": info.get("wall_time_s"),
                     "dir": str(path)})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v, kind):
        if v is None:
            return "-"
        if kind == "loss":
            return f"{v:.4f}"
        if kind == "time":
            return f"{v:.1f}"
        return str(v)

    cols = [("name", "name", None), ("status", "status", None), ("steps", "steps", None),
            ("final_loss", "loss", "loss"), ("wall_time_s", "wall s", "time"), ("key", "key", None)]
    table = [[h for _, h, _ in cols]]
    for row in rows:
        steps = f"{row['steps'] if row['steps'] is not None else '-'}/{row['total_steps']}"
        table.append([steps if c == "steps" else fmt(row[c], kind) for c, _, kind in cols])
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table)


# --------------------------------------------------------------------------- evaluations

def eval_path(profile: Profile, spec: ModelSpec, eval_format: int = EVAL_FORMAT) -> Path:
    """``<model dir>/eval-<key>.json``; the key covers the EvalConfig, the data, the fine-tuning
    precision actually used (:func:`clvsmim.evaluation.finetune_precision`) and the format (default
    :data:`EVAL_FORMAT`; an older one finds the evaluation an earlier version wrote)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    key = config_key({"format": eval_format, "eval": _one_run(profile).eval, "data": spec.data_cfg,
                      "precision": finetune_precision(profile.train.precision, device)})
    return spec_dir(profile, spec) / f"eval-{key}.json"


def finetune_repeats_path(profile: Profile, spec: ModelSpec) -> Path:
    """``eval-<key>.repeats.json`` beside :func:`eval_path`: the fine-tune of the same recipe run again
    with seeds ``EVALUATION_SEED + 1 …`` (``eval.finetune_repeats``); export / install carry it
    with the evaluation."""
    path = eval_path(profile, spec)
    return path.with_name(f"{path.stem}.repeats.json")


def _one_run(profile: Profile) -> Profile:
    """``profile`` with one fine-tuning run: the evaluation's recipe (the repeats live beside it)."""
    return dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, finetune_repeats=1))


def _repeat_seeds(profile: Profile) -> list[int]:
    return [EVALUATION_SEED + i for i in range(1, profile.eval.finetune_repeats)]


def _cached_repeats(profile: Profile, spec: ModelSpec) -> dict[int, dict[str, Any]]:
    """The fine-tuning repeats cached for ``spec``, by seed (empty: none)."""
    return {r["seed"]: r for r in (_read_json(finetune_repeats_path(profile, spec)) or {}).get("runs", [])}


def _with_repeats(profile: Profile, result: dict[str, Any] | None,
                  repeats: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """``result`` with every fine-tuning run (``finetune_runs``: the evaluation's own first) and
    ``finetune`` their mean; None while one of ``repeats`` is missing. Unchanged with one run or no fine-tune."""
    seeds = _repeat_seeds(profile)
    if result is None or not seeds or result.get("finetune") is None:
        return result
    if any(seed not in repeats for seed in seeds):
        return None
    own = {"seed": EVALUATION_SEED, "accuracy": result["finetune"], "correct": result.get("finetune_correct")}
    every = [own] + [repeats[seed] for seed in seeds]
    return {**result, "finetune": sum(r["accuracy"] for r in every) / len(every), "finetune_runs": every}


def _evaluate_one(spec: ModelSpec, profile: Profile, progress: bool = False) -> dict[str, Any]:
    """The cached evaluation of one model, or evaluate it and cache the result; then the missing
    fine-tuning repeats, each cached as soon as it is done (:func:`finetune_repeats_path`)."""
    path = eval_path(profile, spec)
    result = _read_json(path)
    encoder = None

    def model() -> torch.nn.Module:
        nonlocal encoder
        if encoder is None:
            encoder = load_encoder(spec_dir(profile, spec) / CHECKPOINT_NAME)
            encoder = encoder.cuda() if torch.cuda.is_available() else encoder
        return encoder

    data_profile = _one_run(profile.with_data_root(spec.data_cfg.root))
    if result is None:
        start = time.perf_counter()
        result = evaluate_model(model(), data_profile, progress=progress)
        result = {"model": {k: v for k, v in spec.meta().items() if k in ("key", "name", "objective", "lam", "size")},
                  **result, "wall_time_s": time.perf_counter() - start}
        write_json_atomic(path, result, indent=2, default=str)
    repeats = _cached_repeats(profile, spec)
    if result.get("finetune") is not None:
        for seed in _repeat_seeds(profile):
            if seed not in repeats:
                repeats[seed] = finetune_run(model(), data_profile, seed)
                write_json_atomic(finetune_repeats_path(profile, spec),
                                  {"model": result.get("model"), "runs": [repeats[s] for s in sorted(repeats)]},
                                  indent=1)
    return _with_repeats(profile, result, repeats)


def evaluations(profile: Profile, only: str | Iterable[str] | None = None,
                jobs: int | None = None, missing: str = "raise", progress: bool = True) -> dict[str, dict]:
    """:func:`clvsmim.evaluation.evaluate_model` of every built zoo model, ``{key: result}``.

    Each result is cached as ``eval-<key>.json`` next to the checkpoint (:func:`eval_path`),
    so a second call evaluates nothing. ``missing="raise"`` (default) refuses when a model is
    not built; ``"skip"`` leaves it out. Runs in parallel like :func:`build`.
    """
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
    specs = select_specs(profile, only)
    absent = [s for s in specs if not is_built(profile, s)]
    if absent and missing == "raise":
        names = ",".join(s.name for s in absent)
        raise FileNotFoundError(f"zoo model(s) not built: {names}; run `clvsmim zoo build --profile "
                                f"{profile.name}{' --data ' + str(profile.data.root) if profile.data.root else ''}`")
    specs = [s for s in specs if s not in absent]
    results = {s.key: _with_repeats(profile, _read_json(eval_path(profile, s)), _cached_repeats(profile, s))
               for s in specs}
    todo = [s for s in specs if results[s.key] is None]
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    done, failures = run_jobs(_evaluate_one, todo, (profile, False), jobs, progress, "evaluate")
    results.update(done)
    if failures:
        raise ZooBuildError(failures, {s.key: spec_dir(profile, s) for s in specs if s.key not in failures})
    return results
