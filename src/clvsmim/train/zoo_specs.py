"""What is in the model zoo of a profile, and where each model lives.

The models (:func:`zoo_specs`)
------------------------------
* ``moco``, ``simmim`` and ``mae`` at the profile's default size (``profile.model``);
* ``hybrid`` (``L = λ·L_CL + (1−λ)·L_MIM``) for every ``λ`` of ``profile.lams`` strictly
  between 0 and 1, at the default size. **The endpoints are the pure runs:** λ = 0 *is*
  SimMIM and λ = 1 *is* MoCo v3 (as in the paper's sweep), so a hybrid λ = 0 / 1 resolves
  to the ``simmim`` / ``moco`` model (:func:`hybrid_sweep`, :func:`resolve`) instead of
  training the hybrid objective at its endpoints — saving two runs;
* ``moco`` and ``simmim`` at every size of ``profile.sizes`` (Ti / S / B: the scaling
  panel of F1); the default size is one of them and is trained once, not twice;
* ``random``: an untrained, randomly initialised control of every size (nothing trained;
  its initial weights are saved like a checkpoint), built like the CL model (MoCo v3's encoder);
* ``random-<objective>``: where a profile's families give ``moco`` or ``simmim`` another encoder
  than the control's (``faithful``: SimMIM's BEiT encoder), an untrained control of *that*
  architecture at every size (:data:`ARCHITECTURE_CONTROLS`, :func:`architecture_control`) —
  what "trained minus untrained" of a model must be measured against; none under ``v2``.

Keys
----
``<objective>[-<λ>]-<size>-<hash>``, the hash covering everything the run depends on (the
objective's own config section, the backbone, the training budget, the data, the seed and
:data:`ZOO_FORMAT`): a changed configuration trains a new model, an unchanged one never
trains again. A model lives in ``<cache>/zoo/<profile>/<key>`` (:func:`spec_dir`) with
the trainer's ``checkpoint.pt`` / ``log.csv`` / ``meta.json``; ``done.json`` is written last, so
a folder with a checkpoint but no ``done.json`` is an interrupted run (:func:`folder_status`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from clvsmim.config import DataConfig, ModelConfig, Profile, TrainConfig, config_key, to_dict, train_config_for
from clvsmim.families import OBJECTIVES, objective_model_config
from clvsmim.paths import cache_path

#: Part of every key: bump when a change of the code (not the config) must retrain the zoo.
ZOO_FORMAT = 1
#: The objectives that get an untrained control of their own architecture when it differs from
#: the shared control's (the CL and MIM models every claim compares).
ARCHITECTURE_CONTROLS = ("moco", "simmim")
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
    arch: str | None = None  # random only: the objective whose encoder it is (None: the shared control)

    @property
    def name(self) -> str:
        """Short, human name: ``moco-S``, ``hybrid-0.4-S``, ``random-Ti``, ``random-simmim-S``."""
        return f"{self.prefix}-{self.size}"

    @property
    def prefix(self) -> str:
        """The name without the size: ``moco``, ``hybrid-0.4``, ``random``, ``random-simmim``."""
        if self.lam is not None:
            return f"{self.objective}-{self.lam:g}"
        return self.objective if self.arch is None else f"{self.objective}-{self.arch}"

    @property
    def trains(self) -> bool:
        return self.objective != "random"

    def meta(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "objective": self.objective, "lam": self.lam,
                "arch": self.arch, "size": self.size, "seed": self.seed, "model_config": to_dict(self.model_cfg),
                "train_config": to_dict(self.train_cfg), "data_config": to_dict(self.data_cfg)}


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
               data_cfg: DataConfig, arch: str | None = None) -> ModelSpec:
    model_cfg = objective_model_config(profile, arch or objective, model_cfg)
    if objective == "random":
        train_cfg, seed = None, profile.train.seed
        content = {"format": ZOO_FORMAT, "objective": objective, "model": model_cfg, "seed": seed}
        if arch is not None:  # the shared control's key stays what it was
            content["arch"] = arch
    else:
        train_cfg = train_config_for(profile, objective)
        seed = train_cfg.seed
        content = {"format": ZOO_FORMAT, "objective": objective, "lam": lam, "model": model_cfg,
                   "train": train_cfg, "data": data_cfg, "objective_config": _objective_config(profile, objective)}
    spec = ModelSpec(key="", objective=objective, lam=lam, size=size, model_cfg=model_cfg, train_cfg=train_cfg,
                     data_cfg=data_cfg, seed=seed, arch=arch)
    return dataclasses.replace(spec, key=f"{spec.prefix}-{size}-{config_key(content)}")


def _architecture_controls(profile: Profile, size: str, cfg: ModelConfig, data_cfg: DataConfig) -> list[ModelSpec]:
    """``random-<objective>`` of every :data:`ARCHITECTURE_CONTROLS` objective whose encoder at
    this size differs from the shared control's."""
    shared = objective_model_config(profile, "random", cfg)
    return [_make_spec(profile, "random", None, size, cfg, data_cfg, arch=objective)
            for objective in ARCHITECTURE_CONTROLS if objective_model_config(profile, objective, cfg) != shared]


def _is_endpoint(lam: float) -> bool:
    return math.isclose(lam, 0.0, abs_tol=1e-9) or math.isclose(lam, 1.0, abs_tol=1e-9)


def zoo_specs(profile: Profile) -> list[ModelSpec]:
    """Every model of the profile's zoo (unique keys), default-size models first."""
    data_cfg = profile.data
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
    specs += [spec for size, cfg in sizes.items() for spec in _architecture_controls(profile, size, cfg, data_cfg)]
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
            lam: float | None = None, size: str | None = None, arch: str | None = None) -> ModelSpec:
    """The spec of a zoo model, by full key, by short name or by fields.

    Short names: ``moco`` / ``moco-Ti`` / ``hybrid-0.4`` / ``hybrid-0.4-S`` / ``random-B`` /
    ``random-simmim-S`` (size defaults to the profile's default size). ``hybrid`` at λ = 0 / 1
    resolves to ``simmim`` / ``moco`` (the sweep's endpoints are the pure runs).
    """
    specs = zoo_specs(profile)
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
        elif objective == "random" and rest and rest[0] in OBJECTIVES:
            arch, rest = rest[0], rest[1:]
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
        if spec.objective == objective and spec.size == size and same_lam and spec.arch == arch:
            return spec
    if arch is not None:
        raise KeyError(f"no untrained control of {arch}'s architecture (random-{arch}-{size}) in profile "
                       f"{profile.name!r}: its families give {arch} the shared control's encoder; "
                       f"available: {[s.name for s in specs]}")
    raise KeyError(f"no zoo model objective={objective!r} lam={lam} size={size!r} in profile "
                   f"{profile.name!r}; available: {[s.name for s in specs]}")


def spec_dir(profile: Profile, spec: ModelSpec) -> Path:
    """The cache folder of ``spec``: ``<cache>/zoo/<profile>/<key>``, not created here (a status
    lookup leaves no empty folder; whoever writes into it creates it)."""
    return cache_path("zoo", profile.name, spec.key)


def model_dir(profile: Profile, key_or_name: str | None = None, *, objective: str | None = None,
              lam: float | None = None, size: str | None = None, arch: str | None = None) -> Path:
    """The cache folder of a zoo model (see :func:`resolve` for the arguments); may be empty."""
    return spec_dir(profile, resolve(profile, key_or_name, objective=objective, lam=lam, size=size, arch=arch))


def architecture_control(profile: Profile, objective: str, size: str | None = None) -> ModelSpec:
    """The untrained control of ``objective``'s architecture at ``size``: ``random-<objective>``
    where the profile's families give it its own encoder, else the shared ``random`` control."""
    if objective not in OBJECTIVES:
        raise KeyError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    size = size or default_size(profile)
    controls = {s.arch: s for s in zoo_specs(profile) if s.objective == "random" and s.size == size}
    if None not in controls:
        raise KeyError(f"no untrained control of size {size!r} in profile {profile.name!r}")
    return controls.get(objective, controls[None])


def folder_status(path: Path) -> str:
    """``cached`` (checkpoint and ``done.json``), ``partial`` (an interrupted run) or ``missing``."""
    if (path / DONE_NAME).is_file() and (path / CHECKPOINT_NAME).is_file():
        return "cached"
    if (path / CHECKPOINT_NAME).is_file():
        return "partial"
    return "missing"


def is_built(profile: Profile, spec: ModelSpec) -> bool:
    """Whether ``spec`` is trained and cached (its ``done.json`` written)."""
    return folder_status(spec_dir(profile, spec)) == "cached"


def hybrid_sweep(profile: Profile) -> list[tuple[float, ModelSpec]]:
    """``(λ, spec)`` for every λ of ``profile.lams`` in increasing order (λ=0 SimMIM, λ=1 MoCo)."""
    return [(float(lam), resolve(profile, objective="hybrid", lam=float(lam)))
            for lam in sorted(set(profile.lams))]


def select_specs(profile: Profile, only: str | Iterable[str] | None = None) -> list[ModelSpec]:
    """The specs of ``only`` (keys or names, a list or comma-separated) in that order, without
    duplicates; every spec of the zoo when ``only`` is None."""
    specs = zoo_specs(profile)
    if only is None:
        return specs
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    order = list(dict.fromkeys(resolve(profile, name).key for name in names))
    by_key = {s.key: s for s in specs}
    return [by_key[key] for key in order]
