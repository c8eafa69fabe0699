"""Train and check candidate zoo profiles on one machine, several seeds at once, under a deadline.

For every ``NAME=PROFILE.yaml`` and seed, one ``clvsmim claims --seeds 1 --first-seed SEED``
process runs (the same keys as ``clvsmim claims --seeds N`` gives), with its own zoo cache per
candidate (``CACHE/NAME``). Tasks start in priority order
(every candidate's first seed, then the other seeds — with ``--adaptive``, those of the
candidate with the most claims holding on its first seed first), at most ``--parallel`` at a
time, each training ``--jobs`` models at once. At the deadline, running tasks are stopped; then the
built models of every seed are exported to ``OUT/NAME-s<seed>/`` as a shipped zoo
(:mod:`clvsmim.train.zoo_weights`: fp16 safetensors + provenance with sha256 and training logs) —
small enough to copy back from a rented GPU, and what ``clvsmim zoo install`` reads.

Usage::

    python benchmarks/zoo_sweep.py --candidate a=cand_a.yaml --candidate b=cand_b.yaml \
        --seeds 0,1,2 --parallel 4 --jobs 4 --deadline 420 --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path



def export_seed(cache: Path, profile_file: str, seed: int, dest: Path) -> int:
    """The built models of one candidate seed as a shipped zoo (``clvsmim.train.zoo_weights``) in ``dest``."""
    from clvsmim.claims import seed_profile
    from clvsmim.config import load_profile
    from clvsmim.train.zoo_weights import ZooWeightsError, export_zoo

    os.environ["CLVSMIM_CACHE"] = str(cache)
    try:
        _, provenance = export_zoo(seed_profile(load_profile(profile_file), seed), dest)
    except ZooWeightsError:
        return 0
    return len(json.loads(provenance.read_text())["models"])


def holds(path: Path) -> int:
    """Claims holding in a ``clvsmim claims --out`` file (-1 when missing or unreadable)."""
    try:
        return int(json.loads(path.read_text())["counts"]["holds"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def rank_later(later: list, out: Path, first_seed: int) -> list:
    """The remaining tasks, candidates with more claims holding on their first seed first."""
    score = {name: holds(out / f"{name}-s{first_seed}.json") for name, _ in later}
    print("first-seed claims holding: " + json.dumps(score), flush=True)
    return sorted(later, key=lambda task: (-score[task[0]], task[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", required=True, help="NAME=PROFILE.yaml (repeatable)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--adaptive", action="store_true",
                        help="once every first seed is done, run the other seeds of the best candidate first")
    parser.add_argument("--parallel", type=int, default=3, help="claims processes at once")
    parser.add_argument("--jobs", type=int, default=4, help="zoo models trained at once per process")
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds until running tasks are stopped")
    parser.add_argument("--cache", default="/tmp/zoo_sweep")
    parser.add_argument("--out", default="zoo_sweep")
    args = parser.parse_args()
    start = time.monotonic()
    out, cache = Path(args.out), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    candidates = dict(c.split("=", 1) for c in args.candidate)
    pending = [(name, seeds[0]) for name in candidates]
    later = [(name, seed) for seed in seeds[1:] for name in candidates]
    running, finished = {}, {}
    while pending or running or later:
        if not pending and (not args.adaptive or not running):
            pending, later = rank_later(later, out, seeds[0]) if args.adaptive else later, []
        while pending and len(running) < args.parallel:
            name, seed = pending.pop(0)
            env = {**os.environ, "CLVSMIM_CACHE": str(cache / name), "PYTHONUNBUFFERED": "1"}
            log = open(out / f"{name}-s{seed}.log", "w")
            cmd = [sys.executable, "-m", "clvsmim", "claims", "--profile", candidates[name], "--seeds", "1",
                   "--first-seed", str(seed),
                   "--jobs", str(args.jobs), "--no-progress", "--out", str(out / f"{name}-s{seed}.json")]
            running[(name, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                      start_new_session=True), time.monotonic())
            print(f"[{time.monotonic() - start:6.0f} s] start {name} seed {seed}", flush=True)
        for task, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                finished[task] = {"rc": proc.returncode, "wall_s": round(time.monotonic() - t0, 1)}
                del running[task]
                print(f"[{time.monotonic() - start:6.0f} s] done {task} rc {proc.returncode} "
                      f"in {finished[task]['wall_s']} s", flush=True)
        if time.monotonic() - start > args.deadline:
            for task, (proc, t0) in running.items():
                os.killpg(proc.pid, signal.SIGTERM)
                finished[task] = {"rc": "stopped at the deadline", "wall_s": round(time.monotonic() - t0, 1)}
                print(f"stopped {task}", flush=True)
            pending, running = [], {}
            break
        time.sleep(2)
    time.sleep(3)
    for (name, seed), info in finished.items():
        info["exported_models"] = export_seed(cache / name, candidates[name], seed, out / f"{name}-s{seed}")
    (out / "sweep.json").write_text(json.dumps({f"{n}-s{s}": v for (n, s), v in finished.items()}, indent=1))
    print(json.dumps({f"{n}-s{s}": v for (n, s), v in finished.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
