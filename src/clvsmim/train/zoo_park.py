"""Interrupted zoo runs carried to another machine or session, verified, and resumed there.

A CPU zoo takes hours; a session, a preemptible machine or a CI job may end first. The trainer
already checkpoints on SIGTERM and :func:`clvsmim.train.zoo.build` resumes any run whose folder
holds a checkpoint but no ``done.json``. What was missing is moving that unfinished folder:

* :func:`park_runs` copies every interrupted run of the profile's zoo (or of ``only``) — its
  full-precision ``checkpoint.pt`` (weights, optimizer, RNG state), ``log.csv`` and ``meta.json``
  — to ``<dest>/<key>/`` and writes ``<dest>/<profile>-runs.json``: per run its name, the step it
  reached of how many, and each file's sha256 and size. Parking into the same folder again
  replaces it: the copies of runs it listed that are no longer interrupted (finished) are removed.
* :func:`unpark_runs` verifies every checksum first (a corrupt or altered file is refused, naming
  the file and both hashes, and nothing is written), then copies each run whose key belongs to the
  profile's zoo as configured now into the cache — unless that model is built already or the cache
  holds the same run at least as far along. ``clvsmim zoo build`` then resumes it bit-exactly.

``clvsmim zoo park --profile P --out DIR`` and ``clvsmim zoo unpark --profile P --from DIR``.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from clvsmim.cache import write_atomic, write_json_atomic
from clvsmim.config import Profile
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_checkpoint
from clvsmim.train.zoo_weights import ZooWeightsError, read_json_record, verify_sha256
from clvsmim.weights.pins import file_digests

__all__ = ["PARK_FORMAT", "park_manifest_path", "park_runs", "unpark_runs"]

#: Bump when the layout of a parked folder changes.
PARK_FORMAT = 1
_RUN_FILES = ("log.csv", "meta.json", zoo.CHECKPOINT_NAME)  # the checkpoint last: it marks a resumable run


def park_manifest_path(folder: str | os.PathLike, profile_name: str) -> Path:
    """``<folder>/<name>-runs.json``."""
    return Path(folder) / f"{profile_name}-runs.json"


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fh:
        write_atomic(dst, lambda f: shutil.copyfileobj(fh, f), binary=True)


def _step(checkpoint: Path) -> int:
    return int(load_checkpoint(checkpoint, "cpu").get("step", 0))


def park_runs(profile: Profile, dest: str | os.PathLike,
              only: str | Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Copy the interrupted runs of the profile's zoo (or of ``only``) to ``dest``; returns the
    manifest's runs (key -> name, step, total_steps, files). Raises :class:`ZooWeightsError`
    when there is none: built and never-started models have nothing to carry."""
    dest = Path(dest)
    runs: dict[str, dict[str, Any]] = {}
    for spec in zoo.select_specs(profile, only):
        folder = zoo.spec_dir(profile, spec)
        if zoo.folder_status(folder) != "partial":
            continue
        files = {}
        for name in _RUN_FILES:
            if (folder / name).is_file():
                _copy_atomic(folder / name, dest / spec.key / name)
                sha256, _, size = file_digests(dest / spec.key / name)
                files[name] = {"sha256": sha256, "bytes": size}
        runs[spec.key] = {"name": spec.name, "step": _step(dest / spec.key / zoo.CHECKPOINT_NAME),
                          "total_steps": spec.train_cfg.steps if spec.train_cfg else 0, "files": files}
    if not runs:
        raise ZooWeightsError(f"zoo {profile.name}: no interrupted run to park (`clvsmim zoo list --profile "
                              f"{profile.name}` shows them as 'partial')")
    manifest = park_manifest_path(dest, profile.name)
    if manifest.is_file():  # runs parked here before that have finished since: their copies go
        for key in read_json_record(manifest, PARK_FORMAT, "parked runs").get("runs", {}):
            if key not in runs:
                shutil.rmtree(dest / key, ignore_errors=True)
    write_json_atomic(manifest,
                      {"format": PARK_FORMAT, "profile": profile.name,
                       "parked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs}, indent=1)
    return runs


def _verified_runs(src: Path, profile_name: str) -> dict[str, dict[str, Any]]:
    """The manifest's runs after checking every listed file's sha256; raises on the first mismatch."""
    manifest = park_manifest_path(src, profile_name)
    record = read_json_record(manifest, PARK_FORMAT, "parked runs")
    for key, run in record.get("runs", {}).items():
        for name, expected in run.get("files", {}).items():
            path = src / key / name
            if not path.is_file():
                raise ZooWeightsError(f"parked runs: {path} is missing (listed in {manifest})")
            verify_sha256(path, expected["sha256"], "parked runs")
    return record.get("runs", {})


def unpark_runs(profile: Profile, src: str | os.PathLike) -> list[str]:
    """Install the parked runs of ``profile`` from ``src`` into the cache, verified; returns the
    keys written (built models and runs the cache has at least as far along are left alone)."""
    src = Path(src)
    runs = _verified_runs(src, profile.name)
    wanted = {s.key: s for s in zoo.zoo_specs(profile)}
    if runs and not any(key in wanted for key in runs):
        raise ZooWeightsError(f"parked runs in {src}: none of {sorted(runs)} belongs to profile {profile.name!r} "
                              f"as configured now (the profile or the seed differs from the one parked)")
    written = []
    for key, run in runs.items():
        spec = wanted.get(key)
        if spec is None or zoo.is_built(profile, spec):
            continue
        folder = zoo.spec_dir(profile, spec)
        if (folder / zoo.CHECKPOINT_NAME).is_file() and _step(folder / zoo.CHECKPOINT_NAME) >= run["step"]:
            continue
        for name in _RUN_FILES:
            if name in run["files"]:
                _copy_atomic(src / key / name, folder / name)
        written.append(key)
    return written
