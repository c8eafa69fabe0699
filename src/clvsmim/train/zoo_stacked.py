"""A zoo for several seeds with the stacked trainer: ``clvsmim zoo build --stacked --seeds 0,1,2``.

The pending models of every seed's zoo are grouped into stacks of models that differ only in
their weights and seed — the same objective, size, architecture, training budget and data (and,
for hybrids, both branches, so hybrids of different λ stack together) — and each stack trains as
one batched model (:func:`clvsmim.train.stacked.train_stacked`) into the models' usual zoo
folders. The stacked runs write the single trainer's checkpoints, so the ordinary
:func:`clvsmim.train.zoo.build` then finds each run finished, writes its ``done.json`` and builds
the untrained controls: the result is the zoo ``build`` would have made, one stack at a time.
Interrupted stacks resume (models stopped at the same step stack together again).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch

from clvsmim.config import Profile, seed_profile, to_dict
from clvsmim.data import open_dataset
from clvsmim.objectives import build_objective
from clvsmim.train.checkpoint import CHECKPOINT_NAME
from clvsmim.train.runtime import math_config
from clvsmim.train.stacked import train_stacked
from clvsmim.train.zoo import ModelSpec, build, is_built, model_dir, select_specs

__all__ = ["stack_groups", "build_stacked"]


def _done_steps(path: Path) -> int:
    """Steps done by the checkpoint in ``path`` (0 when there is none)."""
    ckpt = path / CHECKPOINT_NAME
    if not ckpt.is_file():
        return 0
    return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["step"])


def _stack_key(profile: Profile, spec: ModelSpec) -> str:
    """What the models of one stack share (everything but the seed and a hybrid's λ)."""
    train = {k: v for k, v in math_config(spec.train_cfg).items() if k != "seed"}
    return json.dumps({"objective": spec.objective, "size": spec.size, "model": to_dict(spec.model_cfg),
                       "train": train, "data": to_dict(spec.data_cfg),
                       "done": _done_steps(model_dir(profile, spec.key))}, sort_keys=True, default=str)


def stack_groups(profile: Profile, seeds: Sequence[int],
                 only: str | Iterable[str] | None = None,
                 max_models: int | None = None) -> list[list[tuple[Profile, ModelSpec]]]:
    """The not yet built trained models of each seed's zoo (``only`` as for ``zoo.build``) as
    stacks of ``(seeded profile, spec)``, at most ``max_models`` per stack, in the zoo's order."""
    groups: dict[str, list[tuple[Profile, ModelSpec]]] = {}
    for seed in seeds:
        seeded = seed_profile(profile, seed)
        for spec in select_specs(seeded, only):
            if spec.trains and not is_built(seeded, spec):
                groups.setdefault(_stack_key(seeded, spec), []).append((seeded, spec))
    size = max_models or max((len(g) for g in groups.values()), default=1)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def _train_stack(group: list[tuple[Profile, ModelSpec]], progress: bool, cuda_graph: bool) -> None:
    objectives = []
    with torch.random.fork_rng(devices=[]):
        for seeded, spec in group:
            torch.manual_seed(spec.seed)  # the initial weights of zoo.build's run of this model
            objectives.append(build_objective(spec.objective, seeded, model_cfg=spec.model_cfg, lam=spec.lam))
    dirs = [model_dir(seeded, spec.key) for seeded, spec in group]
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
    extra = [{"zoo_key": spec.key, "zoo_name": spec.name, "profile": seeded.name, "size": spec.size,
              "lam": spec.lam} for seeded, spec in group]
    summaries = train_stacked(objectives, open_dataset(group[0][1].data_cfg, "train"),
                              [spec.train_cfg for _, spec in group], dirs,
                              resume=any((d / CHECKPOINT_NAME).is_file() for d in dirs), progress=progress,
                              extra_meta=extra, model_configs=[spec.model_cfg for _, spec in group],
                              cuda_graph=cuda_graph)
    stopped = [s for s in summaries if not s["complete"]]
    if stopped:
        raise RuntimeError(f"stacked training stopped at step {stopped[0]['step']} of {stopped[0]['total_steps']} "
                           f"({len(stopped)} model(s)); run the same command again to resume")


def build_stacked(profile: Profile, seeds: Sequence[int],
                  only: str | Iterable[str] | None = None, progress: bool = True, cuda_graph: bool = False,
                  max_models: int | None = None) -> dict[int, dict[str, Path]]:
    """Build the zoo of every seed in ``seeds`` with stacked training; ``{seed: {key: folder}}``
    as :func:`clvsmim.train.zoo.build` returns per seed."""
    for group in stack_groups(profile, seeds, only, max_models):
        _train_stack(group, progress, cuda_graph)
    return {seed: build(seed_profile(profile, seed), only, jobs=1, progress=False) for seed in seeds}
