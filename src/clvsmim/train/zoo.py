"""The model zoo: every backbone the book analyses, trained once per configuration and cached.

What is in the zoo of a profile (:func:`zoo_specs`)
----------------------------------------------------
* ``moco``, ``simmim`` and ``mae`` at the profile's default size (``profile.model``);
* ``hybrid`` (``L = λ·L_CL + (1−λ)·L_MIM``) for every ``λ`` of ``profile.lams`` strictly
  between 0 and 1, at the default size. **The endpoints are the pure runs:** λ = 0 *is*
  SimMIM and λ = 1 *is* MoCo v3 (as in the paper's sweep), so a hybrid λ = 0 / 1 resolves
  to the ``simmim`` / ``moco`` model (:func:`hybrid_sweep`, :func:`resolve`) instead of
  training the hybrid objective at its endpoints — saving two runs;
* ``moco`` and ``simmim`` at every size of ``profile.sizes`` (Ti / S / B: the scaling
  panel of F1); the default size is one of them and is trained once, not twice;
* ``random``: an untrained, randomly initialised control of every size (nothing trained;
  its initial weights are saved like a checkpoint).

Keys
----
``<objective>[-<λ>]-<size>-<hash>``, the hash covering everything the run depends on (the
objective's own config section, the backbone, the training budget, the data, the seed and
:data:`ZOO_FORMAT`): a changed configuration trains a new model, an unchanged one never
trains again. A model lives in ``cache_dir("zoo", profile.name, key)`` with the trainer's
``checkpoint.pt`` / ``log.csv`` / ``meta.json``; ``done.json`` is written last, so a
folder with a checkpoint but no ``done.json`` is an interrupted run and is resumed.

Parallelism
-----------
Independent runs go to a ``spawn`` process pool, ONE torch thread per worker (on a 2-core
CPU two 1-thread runs beat one 2-thread run). ``jobs=1`` trains in this process. A failing
run is reported with its key and does not stop the others; :class:`ZooBuildError` lists the
failures at the end.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from clvsmim.cache import write_json_atomic
from clvsmim.config import DataConfig, ModelConfig, Profile, TrainConfig, config_key, to_dict, train_config_for
from clvsmim.data import open_dataset
from clvsmim.evaluation import evaluate_model, finetune_precision
from clvsmim.families import family_model_config
from clvsmim.models import build_vit
from clvsmim.objectives import build_objective
from clvsmim.paths import cache_dir
from clvsmim.train import trainer
from clvsmim.train.checkpoint import load_encoder, save_atomic

__all__ = [
    "ZOO_FORMAT", "EVAL_FORMAT", "OBJECTIVES", "ModelSpec", "ZooBuildError", "default_size", "zoo_specs",
    "resolve", "model_dir", "is_built", "build", "load", "load_model", "hybrid_sweep", "list_models",
    "evaluations", "eval_path", "default_jobs", "select_specs", "format_table",
]

#: Part of every key: bump when a change of the code (not the config) must retrain the zoo.
ZOO_FORMAT = 1
#: Part of every evaluation file name: bump when :mod:`clvsmim.evaluation` changes its recipe.
EVAL_FORMAT = 1
OBJECTIVES = ("moco", "simmim", "mae", "hybrid", "random")
DONE_NAME = "done.json"
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: what to train and where it is cached."""

    key: str
    objective: str  # moco | simmim | mae | hybrid | random
    lam: float | None  # hybrid only
    size: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig | None  # None for the untrained control
    data_cfg: DataConfig
    seed: int

    @property
    def name(self) -> str:
        """Short, human name: ``moco-S``, ``hybrid-0.4-S``, ``random-Ti``."""
        return f"{self.objective}-{self.size}" if self.lam is None else f"{self.objective}-{self.lam:g}-{self.size}"

    @property
    def trains(self) -> bool:
        return self.objective != "random"

    def meta(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "objective": self.objective, "lam": self.lam,
                "size": self.size, "seed": self.seed, "model_config": to_dict(self.model_cfg),
                "train_config": to_dict(self.train_cfg), "data_config": to_dict(self.data_cfg)}


class ZooBuildError(RuntimeError):
    """Some zoo runs failed; ``failures`` maps their keys to the error, ``built`` has the rest."""

    def __init__(self, failures: dict[str, str], built: dict[str, Path]):
        self.failures, self.built = failures, built
        lines = "\n".join(f"  {key}: {err.strip().splitlines()[-1] if err.strip() else err}"
                          for key, err in failures.items())
        super().__init__(f"{len(failures)} zoo run(s) failed ({len(built)} ok):\n{lines}")


# --------------------------------------------------------------------------- specs

def default_size(profile: Profile) -> str:
    """The name of ``profile.model`` among ``profile.sizes`` (``"default"`` if it is none of them)."""
    for name, cfg in profile.sizes.items():
        if cfg == profile.model:
            return name
    return "default"


def _objective_config(profile: Profile, objective: str) -> dict[str, Any]:
    """The profile sections an objective reads (part of its key)."""
    return {"moco": {"moco": profile.moco}, "simmim": {"simmim": profile.simmim}, "mae": {"mae": profile.mae},
            "hybrid": {"moco": profile.moco, "simmim": profile.simmim}, "random": {}}[objective]


def _make_spec(profile: Profile, objective: str, lam: float | None, size: str, model_cfg: ModelConfig,
               data_cfg: DataConfig) -> ModelSpec:

    model_cfg = family_model_config(profile.families, "moco" if objective == "hybrid" else objective, model_cfg)
    if objective == "random":
        train_cfg, seed = None, profile.train.seed
        content = {"format": ZOO_FORMAT, "objective": objective, "model": model_cfg, "seed": seed}
    else:
        train_cfg = train_config_for(profile, objective)
        seed = train_cfg.seed
        content = {"format": ZOO_FORMAT, "objective": objective, "lam": lam, "model": model_cfg,
                   "train": train_cfg, "data": data_cfg, "objective_config": _objective_config(profile, objective)}
    prefix = objective if lam is None else f"{objective}-{lam:g}"
    return ModelSpec(key=f"{prefix}-{size}-{config_key(content)}", objective=objective, lam=lam, size=size,
                     model_cfg=model_cfg, train_cfg=train_cfg, data_cfg=data_cfg, seed=seed)


def _is_endpoint(lam: float) -> bool:
    return math.isclose(lam, 0.0, abs_tol=1e-9) or math.isclose(lam, 1.0, abs_tol=1e-9)


def zoo_specs(profile: Profile, data_root: str | None = None) -> list[ModelSpec]:
    """Every model of the profile's zoo (unique keys), default-size models first."""
    data_cfg = profile.with_data_root(data_root).data
    base = default_size(profile)
    sizes = dict(profile.sizes) if profile.sizes else {}
    sizes.setdefault(base, profile.model)
    specs = [_make_spec(profile, obj, None, base, profile.model, data_cfg) for obj in ("moco", "simmim", "mae")]
    specs += [_make_spec(profile, "hybrid", float(lam), base, profile.model, data_cfg)
              for lam in sorted(set(profile.lams)) if not _is_endpoint(lam)]
    for size, cfg in sizes.items():
        if size != base:
            specs += [_make_spec(profile, obj, None, size, cfg, data_cfg) for obj in ("moco", "simmim")]
    specs += [_make_spec(profile, "random", None, size, cfg, data_cfg) for size, cfg in sizes.items()]
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):  # cannot happen unless two sizes share name and config
        raise AssertionError(f"duplicate zoo keys: {keys}")
    return _listed(profile, specs, base) if profile.models else specs


def _listed(profile: Profile, specs: list[ModelSpec], base: str) -> list[ModelSpec]:
    """The specs named in ``profile.models`` (``moco`` = ``moco-<default size>``), in zoo order;
    a name the profile does not define is an error naming the known ones."""
    by_name = {s.name: s for s in specs}
    wanted = set()
    for name in profile.models:
        full = name if name in by_name else f"{name}-{base}"
        if full not in by_name:
            raise ValueError(f"profile {profile.name!r}, models: {name!r} is not a model of this profile; "
                             f"known: {sorted(by_name)}")
        wanted.add(full)
    return [s for s in specs if s.name in wanted]


def resolve(profile: Profile, key_or_name: str | None = None, *, objective: str | None = None,
            lam: float | None = None, size: str | None = None, data_root: str | None = None) -> ModelSpec:
    """The spec of a zoo model, by full key, by short name or by fields.

    Short names: ``moco`` / ``moco-Ti`` / ``hybrid-0.4`` / ``hybrid-0.4-S`` / ``random-B``
    (size defaults to the profile's default size). ``hybrid`` at λ = 0 / 1 resolves to
    ``simmim`` / ``moco`` (the sweep's endpoints are the pure runs).
    """
    specs = zoo_specs(profile, data_root)
    if key_or_name is not None:
        for spec in specs:
            if key_or_name == spec.key:
                return spec
        parts = key_or_name.split("-")
        objective = parts[0]
        rest = parts[1:]
        if objective == "hybrid":
            if not rest:
                raise KeyError(f"{key_or_name!r}: a hybrid name needs its λ, e.g. 'hybrid-0.4'")
            try:
                lam = float(rest[0])
            except ValueError:
                raise KeyError(f"{key_or_name!r}: cannot read λ from {rest[0]!r}") from None
            rest = rest[1:]
        size = rest[0] if rest else None
        if len(rest) > 1:  # "<name>-<hash>" of another configuration
            raise KeyError(f"{key_or_name!r} is not a key of the current {profile.name!r} zoo; "
                           f"keys: {[s.key for s in specs]}")
    if objective is None:
        raise ValueError("give a key, a name or an objective")
    objective = objective.lower()
    size = size or default_size(profile)
    if objective == "hybrid":
        if lam is None:
            raise KeyError("hybrid needs lam")
        if math.isclose(lam, 0.0, abs_tol=1e-9):
            objective, lam = "simmim", None
        elif math.isclose(lam, 1.0, abs_tol=1e-9):
            objective, lam = "moco", None
    elif lam is not None and not _is_endpoint(lam):
        raise KeyError(f"lam={lam} only applies to the hybrid objective")
    else:
        lam = None
    for spec in specs:
        same_lam = (spec.lam is None and lam is None) or (
            spec.lam is not None and lam is not None and math.isclose(spec.lam, lam, abs_tol=1e-9))
        if spec.objective == objective and spec.size == size and same_lam:
            return spec
    raise KeyError(f"no zoo model objective={objective!r} lam={lam} size={size!r} in profile "
                   f"{profile.name!r}; available: {[s.name for s in specs]}")


def _dir_of(profile: Profile, spec: ModelSpec) -> Path:
    return cache_dir("zoo", profile.name, spec.key)


def model_dir(profile: Profile, key_or_name: str | None = None, *, objective: str | None = None,
              lam: float | None = None, size: str | None = None, data_root: str | None = None) -> Path:
    """The cache folder of a zoo model (see :func:`resolve` for the arguments); may be empty."""
    return _dir_of(profile, resolve(profile, key_or_name, objective=objective, lam=lam, size=size,
                                    data_root=data_root))


def _status(path: Path) -> str:
    if (path / DONE_NAME).is_file() and (path / CHECKPOINT_NAME).is_file():
        return "cached"
    if (path / CHECKPOINT_NAME).is_file():
        return "partial"
    return "missing"


def is_built(profile: Profile, spec: ModelSpec) -> bool:
    return _status(_dir_of(profile, spec)) == "cached"


def hybrid_sweep(profile: Profile, data_root: str | None = None) -> list[tuple[float, ModelSpec]]:
    """``(λ, spec)`` for every λ of ``profile.lams`` in increasing order (λ=0 SimMIM, λ=1 MoCo)."""
    return [(float(lam), resolve(profile, objective="hybrid", lam=float(lam), data_root=data_root))
            for lam in sorted(set(profile.lams))]


# --------------------------------------------------------------------------- build

def default_jobs() -> int:
    """Parallel runs: one per CPU core on a CPU machine, one on a GPU machine."""
    if torch.cuda.is_available():
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
    out = _dir_of(profile, spec)
    done = out / DONE_NAME
    if done.is_file() and (out / CHECKPOINT_NAME).is_file():
        return {**json.loads(done.read_text()), "trained": False}
    with torch.random.fork_rng(devices=[]):  # seeding for the run leaves the caller's RNG alone
        summary = _train(spec, profile, out, progress) if spec.trains else _save_random(spec, out)
    record = {**spec.meta(), **{k: v for k, v in summary.items() if k not in ("out_dir", "checkpoint", "log")},
              "profile": profile.name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__}
    write_json_atomic(done, record, indent=2, default=str)
    return {**record, "trained": True}


def _worker_init() -> None:
    """Pool initializer: one torch thread per worker, set before any heavy work."""
    os.environ["CLVSMIM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set / parallel work already started
        pass


def _worker(task: Callable, spec: ModelSpec, *args) -> tuple[bool, Any]:
    """Run ``task(spec, *args)`` in a worker; errors come back as text (always picklable)."""
    try:
        return True, task(spec, *args)
    except Exception:  # noqa: BLE001 - reported with the key by the parent
        return False, traceback.format_exc()


def _cost(spec: ModelSpec) -> float:
    """Rough relative cost (bigger first keeps the pool busy until the end)."""
    m, t = spec.model_cfg, spec.train_cfg
    steps = t.steps * t.batch_size if t is not None else 0
    return float(m.embed_dim) ** 2 * m.depth * steps * (2.0 if spec.objective in ("moco", "hybrid") else 1.0)


def _run_jobs(task: Callable, specs: Sequence[ModelSpec], args: tuple, jobs: int, progress: bool,
              desc: str, in_order: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``task(spec, *args)`` for every spec; ``jobs=1`` in-process, else a spawn pool.

    The pool starts the costliest runs first (shortest total time), or the runs in the given
    order with ``in_order`` (a priority list under a deadline).
    Returns ``(results by key, failures by key)``; a failure never stops the other runs.
    """
    from tqdm import tqdm

    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    if not specs:
        return results, failures
    bar = tqdm(total=len(specs), desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        if jobs <= 1 or len(specs) == 1:
            for spec in specs:
                bar.set_postfix_str(spec.name)
                ok, value = _worker(task, spec, *args)
                (results if ok else failures)[spec.key] = value
                bar.update(1)
            return results, failures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(specs)), mp_context=ctx,
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_worker, task, spec, *args): spec
                       for spec in (specs if in_order else sorted(specs, key=_cost, reverse=True))}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    ok, value = future.result()
                except (BrokenProcessPool, Exception) as error:  # the worker died (e.g. killed for memory)
                    ok, value = False, f"{type(error).__name__}: {error}"
                (results if ok else failures)[spec.key] = value
                bar.set_postfix_str(spec.name)
                bar.update(1)
    finally:
        bar.close()
    return results, failures


def select_specs(profile: Profile, only: str | Iterable[str] | None, data_root: str | None) -> list[ModelSpec]:
    specs = zoo_specs(profile, data_root)
    if only is None:
        return specs
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    order = list(dict.fromkeys(resolve(profile, name, data_root=data_root).key for name in names))
    by_key = {s.key: s for s in specs}
    return [by_key[key] for key in order]


def build(profile: Profile, data_root: str | None = None, only: str | Iterable[str] | None = None,
          jobs: int | None = None, progress: bool = True, in_order: bool = False) -> dict[str, Path]:
    """Train every missing zoo model (or those of ``only``: keys or names); ``{key: folder}``.

    Built models are skipped; interrupted ones resume. ``jobs`` parallel processes with one
    torch thread each (default :func:`default_jobs`); ``jobs=1`` trains in this process.
    ``in_order``: runs start in the order of ``only`` (a priority list); else the costliest first.
    Raises :class:`ZooBuildError` (listing every failed key) after all runs have finished.
    """
    specs = select_specs(profile, only, data_root)
    dirs = {s.key: _dir_of(profile, s) for s in specs}
    pending = [s for s in specs if not is_built(profile, s)]
    controls = [s for s in pending if not s.trains]  # cheap: always in-process
    runs = [s for s in pending if s.trains]
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    _, failures = _run_jobs(_build_one, controls, (profile, False), 1, False, "zoo")
    _, run_failures = _run_jobs(_build_one, runs, (profile, progress and jobs <= 1), jobs, progress, "zoo",
                                in_order=in_order)
    failures.update(run_failures)
    if failures:
        raise ZooBuildError(failures, {k: d for k, d in dirs.items() if k not in failures})
    return dirs


# --------------------------------------------------------------------------- load

def load(profile: Profile, key_or_name: str, data_root: str | None = None,
         map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained timm encoder (eval mode) of a zoo model, by key or short name."""

    spec = resolve(profile, key_or_name, data_root=data_root)
    path = _dir_of(profile, spec)
    if _status(path) != "cached":
        raise FileNotFoundError(f"zoo model {spec.name} ({spec.key}) is not built: run "
                                f"`clvsmim zoo build --profile {profile.name} --only {spec.name}`")
    return load_encoder(path / CHECKPOINT_NAME, map_location).eval()


def load_model(profile: Profile, objective: str = "moco", lam: float | None = None, size: str | None = None,
               data_root: str | None = None, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """:func:`load` by fields: ``load_model(p, "hybrid", lam=0.4)``, ``load_model(p, "simmim", size="Ti")``."""
    spec = resolve(profile, objective=objective, lam=lam, size=size, data_root=data_root)
    return load(profile, spec.key, data_root=data_root, map_location=map_location)


# --------------------------------------------------------------------------- list

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def list_models(profile: Profile, data_root: str | None = None) -> list[dict[str, Any]]:
    """One row per zoo model: key, name, objective, lam, size, status (cached / partial /
    missing), steps, final_loss, wall_time_s (from ``done.json``, else the partial run's meta)."""
    rows = []
    for spec in zoo_specs(profile, data_root):
        path = _dir_of(profile, spec)
        status = _status(path)
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

def eval_path(profile: Profile, spec: ModelSpec) -> Path:
    """``<model dir>/eval-<key>.json``; the key covers the EvalConfig, the data, the fine-tuning
    precision actually used (:func:`clvsmim.evaluation.finetune_precision`) and :data:`EVAL_FORMAT`."""

    device = "cuda" if torch.cuda.is_available() else "cpu"
    key = config_key({"format": EVAL_FORMAT, "eval": profile.eval, "data": spec.data_cfg,
                      "precision": finetune_precision(profile.train.precision, device)})
    return _dir_of(profile, spec) / f"eval-{key}.json"


def _evaluate_one(spec: ModelSpec, profile: Profile, progress: bool = False) -> dict[str, Any]:

    path = eval_path(profile, spec)
    cached = _read_json(path)
    if cached is not None:
        return cached
    encoder = load_encoder(_dir_of(profile, spec) / CHECKPOINT_NAME)
    if torch.cuda.is_available():
        encoder = encoder.cuda()
    start = time.perf_counter()
    result = evaluate_model(encoder, profile, spec.data_cfg.root, progress=progress)
    result = {"model": {k: v for k, v in spec.meta().items() if k in ("key", "name", "objective", "lam", "size")},
              **result, "wall_time_s": time.perf_counter() - start}
    write_json_atomic(path, result, indent=2, default=str)
    return result


def evaluations(profile: Profile, data_root: str | None = None, only: str | Iterable[str] | None = None,
                jobs: int | None = None, missing: str = "raise", progress: bool = True) -> dict[str, dict]:
    """:func:`clvsmim.evaluation.evaluate_model` of every built zoo model, ``{key: result}``.

    Each result is cached as ``eval-<key>.json`` next to the checkpoint (:func:`eval_path`),
    so a second call evaluates nothing. ``missing="raise"`` (default) refuses when a model is
    not built; ``"skip"`` leaves it out. Runs in parallel like :func:`build`.
    """
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
    specs = select_specs(profile, only, data_root)
    absent = [s for s in specs if not is_built(profile, s)]
    if absent and missing == "raise":
        names = ",".join(s.name for s in absent)
        raise FileNotFoundError(f"zoo model(s) not built: {names}; run `clvsmim zoo build --profile "
                                f"{profile.name}{' --data ' + str(data_root) if data_root else ''}`")
    specs = [s for s in specs if s not in absent]
    results = {s.key: _read_json(eval_path(profile, s)) for s in specs}
    todo = [s for s in specs if results[s.key] is None]
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    done, failures = _run_jobs(_evaluate_one, todo, (profile, False), jobs, progress, "evaluate")
    results.update(done)
    if failures:
        raise ZooBuildError(failures, {s.key: _dir_of(profile, s) for s in specs if s.key not in failures})
    return results
