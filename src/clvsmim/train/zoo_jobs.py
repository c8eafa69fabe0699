"""Running one task per zoo model: in this process, or in a ``spawn`` process pool with ONE
torch thread per worker (on a 2-core CPU two 1-thread runs beat one 2-thread run). A failing
run is reported with its key and does not stop the others; :class:`ZooBuildError` lists the
failures at the end."""
from __future__ import annotations

import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from clvsmim.train.zoo_specs import ModelSpec


class ZooBuildError(RuntimeError):
    """Some zoo runs failed; ``failures`` maps their keys to the error, ``built`` has the rest."""

    def __init__(self, failures: dict[str, str], built: dict[str, Path]):
        self.failures, self.built = failures, built
        lines = "\n".join(f"  {key}: {err.strip().splitlines()[-1] if err.strip() else err}"
                          for key, err in failures.items())
        super().__init__(f"{len(failures)} zoo run(s) failed ({len(built)} ok):\n{lines}")


def default_jobs() -> int:
    """Parallel runs: one per CPU core on a CPU machine, one on a GPU machine."""
    if torch.cuda.is_available():
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


def run_jobs(task: Callable, specs: Sequence[ModelSpec], args: tuple, jobs: int, progress: bool,
             desc: str, in_order: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``task(spec, *args)`` for every spec; ``jobs=1`` in-process, else a spawn pool.

    The pool starts the costliest runs first (shortest total time), or the runs in the given
    order with ``in_order`` (a priority list under a deadline).
    Returns ``(results by key, failures by key)``; a failure never stops the other runs.
    """
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
