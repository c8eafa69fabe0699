"""A built zoo as two files — fp16 weights and their provenance — and back into the cache, verified.

Training a faithful zoo can take far longer than a book build may (hours on a 2-core CPU,
minutes on a GPU), so a zoo trained once can be shipped and installed instead:

* :func:`export_zoo` writes ``<dest>/<profile>-zoo.safetensors`` — every built model's
  encoder in fp16 as ``<key>/encoder/<param>`` (for MAE the whole objective as
  ``<key>/model/<param>``: the architecture chapter reads its decoder) — and
  ``<dest>/<profile>-zoo.json``, the provenance: the weights file's sha256 and size, and per
  model its zoo record (objective, λ, size, seed, model / training / data configs, steps,
  final loss, wall time, torch version), the trainer's ``meta.json`` (git commit, device
  throughput) and its training log (``log.csv``).
* :func:`install_zoo` checks the sha256 (a corrupt or altered file is refused, naming both
  hashes), then writes each model of the file whose key belongs to the profile's zoo
  (:func:`clvsmim.train.zoo.zoo_specs`: the key covers every setting the run depends on, so a
  changed profile never picks up stale weights) and is not built yet into the cache, exactly
  as :func:`clvsmim.train.zoo.build` would have left it (``checkpoint.pt`` with fp32 tensors,
  ``log.csv``, ``meta.json``, ``done.json`` last, recording where it came from).

A model that was itself installed from fp16 weights also carries its cached evaluations
(``eval-<key>.json``, :func:`clvsmim.train.zoo.eval_path`): they were computed on exactly the
weights being shipped, so an install can put them back and the book does not evaluate again (the
fine-tuning repeats, ``eval-<key>.repeats.json``, travel the same way; `zoo merge --evaluations`,
:func:`clvsmim.train.zoo_merge.merge_evaluations`, adds those computed after an install). A
model trained here (fp32) carries none — its evaluation would not be of the fp16 weights; install,
evaluate and export again to ship them. An evaluation whose recipe has changed since has another
file name and is ignored.

``clvsmim zoo export --profile P --out DIR`` and ``clvsmim zoo install --profile P --from DIR``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save

from clvsmim.cache import write_atomic, write_json_atomic, write_text_atomic
from clvsmim.config import Profile
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_checkpoint, save_atomic
from clvsmim.weights.pins import file_digests

__all__ = ["WEIGHTS_FORMAT", "weights_paths", "export_zoo", "write_zoo", "install_zoo", "load_shipped",
           "ZooWeightsError", "read_json_record", "verify_sha256", "evaluations_of_fp16"]

#: Bump when the layout of the two files changes.
WEIGHTS_FORMAT = 1
_FILES_KEPT = ("log.csv", "meta.json")


class ZooWeightsError(RuntimeError):
    """A shipped zoo cannot be installed: missing file, checksum mismatch, wrong profile."""


def weights_paths(folder: str | os.PathLike, profile_name: str) -> tuple[Path, Path]:
    """``(<folder>/<name>-zoo.safetensors, <folder>/<name>-zoo.json)``."""
    folder = Path(folder)
    return folder / f"{profile_name}-zoo.safetensors", folder / f"{profile_name}-zoo.json"


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def _read_text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def evaluations_of_fp16(folder: Path, done: dict[str, Any]) -> dict[str, str]:
    """``{eval-<key>.json: text}`` (with its fine-tuning repeats, ``eval-<key>.repeats.json``) of a
    model installed from fp16 weights (its ``done.json`` record ``done`` says so); ``{}`` for any other."""
    if done.get("weights_dtype") != "float16":
        return {}
    return {path.name: path.read_text() for path in sorted(folder.glob("eval-*.json"))}


def export_zoo(profile: Profile, dest: str | os.PathLike,
               only: str | Iterable[str] | None = None) -> tuple[Path, Path]:
    """Every built model of the profile's zoo (or of ``only``) into the two files; returns their paths."""

    specs = [s for s in zoo.select_specs(profile, only) if zoo.is_built(profile, s)]
    if not specs:
        raise ZooWeightsError(f"zoo {profile.name}: no built model to export "
                              f"(run `clvsmim zoo build --profile {profile.name}` first)")
    tensors: dict[str, torch.Tensor] = {}
    models: dict[str, Any] = {}
    for spec in specs:
        folder = zoo.model_dir(profile, spec.key)
        ckpt = load_checkpoint(folder / zoo.CHECKPOINT_NAME, "cpu")
        part = "model" if spec.objective == "mae" else "encoder"
        for name, value in _half(ckpt[part]).items():
            tensors[f"{spec.key}/{part}/{name}"] = value
        done = json.loads((folder / zoo.DONE_NAME).read_text())
        models[spec.key] = {"part": part, "model_config": ckpt.get("model_config"),
                            "objective": ckpt.get("objective"), "step": ckpt.get("step"), "done": done,
                            "files": {n: _read_text(folder / n) for n in _FILES_KEPT},
                            "evaluations": evaluations_of_fp16(folder, done)}
    return write_zoo(profile.name, dest, tensors, models)


def write_zoo(profile_name: str, dest: str | os.PathLike, tensors: dict[str, torch.Tensor],
              models: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``tensors`` (``<key>/<part>/<param>``, fp16) and the provenance of ``models``
    (``{key: record}``) as the two files of a shipped zoo in ``dest``, each atomically, the
    provenance (naming the weights' sha256) last; returns their paths."""
    weights, provenance = weights_paths(dest, profile_name)
    weights.parent.mkdir(parents=True, exist_ok=True)
    blob = save(tensors, metadata={"format": str(WEIGHTS_FORMAT), "profile": profile_name})
    write_atomic(weights, lambda f: f.write(blob), binary=True)
    sha256, _, size = file_digests(weights)
    write_json_atomic(provenance, {"format": WEIGHTS_FORMAT, "profile": profile_name,
                                 "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "weights": {"file": weights.name, "sha256": sha256, "bytes": size, "dtype": "float16"},
                                 "models": models})
    return weights, provenance


def read_json_record(path: Path, fmt: int, what: str) -> dict[str, Any]:
    """The JSON record at ``path`` whose ``format`` must be ``fmt``; :class:`ZooWeightsError`
    (naming ``what`` and the file) when it is missing, not JSON or of another format."""
    if not path.is_file():
        raise ZooWeightsError(f"{what}: {path} is missing")
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise ZooWeightsError(f"{what}: {path} is not valid JSON ({error})") from error
    if record.get("format") != fmt:
        raise ZooWeightsError(f"{what}: {path} has format {record.get('format')!r}, this version reads {fmt}")
    return record


def verify_sha256(path: Path, expected: str | None, what: str, remedy: str = "") -> None:
    """:class:`ZooWeightsError` naming ``what``, the file and both hashes unless ``path``'s sha256
    is ``expected``."""
    found = file_digests(path)[0]
    if found != expected:
        raise ZooWeightsError(f"{what}: checksum mismatch for {path}: expected sha256 {expected}, "
                              f"found {found} (corrupt or altered file{remedy})")


def load_shipped(weights: Path, provenance: Path) -> dict[str, Any]:
    """The provenance record of a shipped zoo once the weights' sha256 matches it
    (:class:`ZooWeightsError` naming the file when either is missing or they disagree)."""
    if not weights.is_file():
        raise ZooWeightsError(f"shipped zoo: {weights} is missing")
    record = read_json_record(provenance, WEIGHTS_FORMAT, "shipped zoo")
    verify_sha256(weights, record.get("weights", {}).get("sha256"), "shipped zoo",
                  "; re-export or retrain with `clvsmim zoo build`")
    return record


def install_zoo(profile: Profile, src: str | os.PathLike) -> list[str]:
    """Install the shipped models of ``profile`` from ``src`` into the cache; returns the keys
    written (models already built are left alone). Raises :class:`ZooWeightsError`."""

    weights, provenance = weights_paths(src, profile.name)
    record = load_shipped(weights, provenance)
    wanted = {s.key: s for s in zoo.zoo_specs(profile)}
    shipped = record.get("models", {})
    matching = [key for key in shipped if key in wanted]
    if not matching:
        raise ZooWeightsError(f"shipped zoo {weights}: none of its {len(shipped)} models belongs to profile "
                              f"{profile.name!r} as configured now (keys differ: the profile changed since "
                              f"the export); retrain with `clvsmim zoo build --profile {profile.name}`")
    todo = [key for key in matching if not zoo.is_built(profile, wanted[key])]
    if not todo:
        return []
    tensors = load_file(str(weights))
    sha = record["weights"]["sha256"]
    for key in todo:
        entry = shipped[key]
        part = entry["part"]
        prefix = f"{key}/{part}/"
        state = {name[len(prefix):]: value.float() if value.is_floating_point() else value
                 for name, value in tensors.items() if name.startswith(prefix)}
        if not state:
            raise ZooWeightsError(f"shipped zoo {weights}: no tensors for model {key} ({prefix}*)")
        ckpt = {part: state, "model_config": entry["model_config"], "objective": entry["objective"],
                "step": entry["step"], "config": None}
        if part == "model":  # the encoder alone, as training checkpoints also carry it
            ckpt["encoder"] = {n[len("encoder."):]: v for n, v in state.items() if n.startswith("encoder.")}
        folder = zoo.model_dir(profile, key)
        folder.mkdir(parents=True, exist_ok=True)
        save_atomic(ckpt, folder / zoo.CHECKPOINT_NAME)
        for name, text in entry.get("files", {}).items():
            if text is not None and name in _FILES_KEPT:
                (folder / name).write_text(text)
        for name, text in entry.get("evaluations", {}).items():
            if name.startswith("eval-") and name.endswith(".json") and "/" not in name:
                write_text_atomic(folder / name, text)
        write_json_atomic(folder / zoo.DONE_NAME, {**entry["done"], "installed_from": str(weights),
                                                 "weights_sha256": sha, "weights_dtype": "float16"})
    return todo
