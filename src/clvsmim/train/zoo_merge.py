"""Newly trained models added to a shipped zoo, evaluated on the fp16 weights that are shipped.

A sweep grows a shipped zoo (``zoo-weights/candidates/<candidate>-s<seed>``) a few models per
session. :func:`merge_zoo` does in one verified step what that otherwise takes by hand:

1. export the models of ``only`` that are trained in the current cache (fp16, as
   :func:`clvsmim.train.zoo_weights.export_zoo`);
2. install that export into a scratch cache (sharing the current cache's rendered ``data``) and
   evaluate it there — the evaluation is of exactly the fp16 weights being shipped, so it travels
   with them and an install never evaluates again;
3. write the folder's two files anew: every tensor and record already shipped as it was read
   (the new models' keys are all new, so none is replaced), the new models added with their
   evaluations.

A model already in the folder is refused by name (nothing is written); so is a corrupt folder (its
sha256 is checked first). ``clvsmim zoo merge --profile P --seed S --only K --into DIR``.

:func:`merge_evaluations` adds evaluations instead of models: those cached here for shipped models
installed from the folder's own weights (e.g. the fine-tuning repeats of ``eval.finetune_repeats``,
computed after an install) go into the provenance record; the weights file is not rewritten.
``clvsmim zoo merge --evaluations --profile P --seed S --into DIR``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file

from clvsmim.config import Profile
from clvsmim.paths import cache_path, cache_root_at
from clvsmim.train import zoo
from clvsmim.cache import write_json_atomic
from clvsmim.train.zoo_weights import (ZooWeightsError, evaluations_of_fp16, export_zoo, install_zoo, load_shipped,
                                       weights_paths, write_zoo)

__all__ = ["merge_zoo", "merge_evaluations"]

_SCRATCH_FIELDS = ("installed_from", "weights_sha256")  # name the scratch export, which is deleted


def _shipped(profile: Profile, into: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, model records)`` already in ``into`` (verified), or two empty dicts when it ships nothing."""
    weights, provenance = weights_paths(into, profile.name)
    if not weights.exists() and not provenance.exists():
        return {}, {}
    record = load_shipped(weights, provenance)
    return load_file(str(weights)), record.get("models", {})


def _evaluated_export(profile: Profile, keys: list[str], scratch: Path, jobs: int,
                      progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The models ``keys`` of the current cache exported, installed into a scratch cache, evaluated
    there and exported again: ``(tensors, records with their evaluations)``."""
    first, _ = export_zoo(profile, scratch / "trained", keys)
    data = cache_path("data")
    (scratch / "cache").mkdir()
    if data.is_dir():
        (scratch / "cache" / "data").symlink_to(data.resolve(), target_is_directory=True)
    with cache_root_at(scratch / "cache"):
        install_zoo(profile, first.parent)
        zoo.evaluations(profile, keys, jobs=jobs, progress=progress)
        weights, provenance = export_zoo(profile, scratch / "evaluated", keys)
    tensors = load_file(str(weights))
    models = json.loads(provenance.read_text())["models"]
    for record in models.values():
        for field in _SCRATCH_FIELDS:
            record["done"].pop(field, None)
    return tensors, models


def merge_zoo(profile: Profile, into: str | os.PathLike, only: str | Iterable[str] | None = None,
              jobs: int = 1, progress: bool = False) -> list[str]:
    """Add the models of ``only`` (default: every built one not shipped yet) trained in the current
    cache to the shipped zoo in ``into``, each with its evaluation of the fp16 weights; returns the
    keys added. Raises :class:`ZooWeightsError`."""
    into = Path(into)
    old_tensors, old_models = _shipped(profile, into)
    specs = [s for s in zoo.select_specs(profile, only) if zoo.is_built(profile, s)]
    if only is None:
        specs = [s for s in specs if s.key not in old_models]
    if not specs:
        raise ZooWeightsError(f"zoo merge: no built model of {profile.name} to add to {into} "
                              f"({'none of ' + str(only) if only else 'every built one is shipped already'})")
    shipped = [s.name for s in specs if s.key in old_models]
    if shipped:
        raise ZooWeightsError(f"zoo merge: {', '.join(shipped)} already shipped in {into}; "
                              f"nothing written (merge into another folder to compare)")
    keys = [s.key for s in specs]
    with tempfile.TemporaryDirectory(prefix="clvsmim-merge-") as scratch:
        new_tensors, new_models = _evaluated_export(profile, keys, Path(scratch), jobs, progress)
    write_zoo(profile.name, into, {**old_tensors, **new_tensors}, {**old_models, **new_models})
    return keys


def merge_evaluations(profile: Profile, into: str | os.PathLike,
                      only: str | Iterable[str] | None = None) -> dict[str, list[str]]:
    """Add to the provenance record in ``into`` every evaluation file cached here for its shipped
    models (of ``only``; default all) that were installed from its own weights (their ``done.json``
    names its sha256) and that the record does not hold yet; ``{key: [file names added]}``. The
    weights file is left as it is. Raises :class:`ZooWeightsError` (corrupt folder, nothing to add)."""
    into = Path(into)
    weights, provenance = weights_paths(into, profile.name)
    record = load_shipped(weights, provenance)
    sha, shipped = record["weights"]["sha256"], record.get("models", {})
    added: dict[str, list[str]] = {}
    for spec in zoo.select_specs(profile, only):
        folder = zoo.model_dir(profile, spec.key)
        if spec.key not in shipped or not zoo.is_built(profile, spec):
            continue
        done = json.loads((folder / zoo.DONE_NAME).read_text())
        if done.get("weights_sha256") != sha:
            continue  # trained here, or installed from other weights: its evaluations are not of these
        have = shipped[spec.key].setdefault("evaluations", {})
        new = {name: text for name, text in evaluations_of_fp16(folder, done).items() if name not in have}
        if new:
            have.update(new)
            added[spec.key] = sorted(new)
    if not added:
        raise ZooWeightsError(f"zoo merge --evaluations: no evaluation cached here is new to {provenance} "
                              f"(models installed from its weights, sha256 {sha[:12]}…, hold none it lacks)")
    write_json_atomic(provenance, record)
    return added
