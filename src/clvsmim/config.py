"""Configuration: small dataclasses, filled from YAML profiles in ``clvsmim/profiles``.

A *profile* (``smoke``, ``mini``, ``paper``) fixes the data, the backbone sizes, the
training budget of every objective and the evaluation budget. Everything that trains or
evaluates takes its settings from a :class:`Profile`, so a cache key derived from it
(:func:`config_key`) identifies a model completely.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clvsmim.families import OBJECTIVES, apply_profile_family

PROFILE_DIR = Path(__file__).parent / "profiles"

#: Field metadata of settings added after zoo models were shipped: left out of :func:`to_dict`
#: (and so of every cache key) while they hold their default, so older keys stay valid.
OMIT_IF_DEFAULT = {"omit_if_default": True}


@dataclass(frozen=True)
class ModelConfig:
    """A ViT backbone: either a timm model name or a small custom configuration."""

    timm_name: str | None = None  # e.g. "vit_small_patch16_224"; overrides the sizes below
    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 96
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    sincos_pos_embed: bool = True  # fixed 2-D sin-cos position embedding (MoCo v3, MAE)
    drop_path_rate: float = 0.0
    # "vit": timm VisionTransformer; "beit": SimMIM's BEiT-style net (relative position bias shared
    # by all blocks, no absolute embedding unless sincos_pos_embed, layer scale layer_scale_init)
    encoder: str = field(default="vit", metadata=OMIT_IF_DEFAULT)
    # "timm": PyTorch's default conv init; "moco_v3": xavier-uniform bound sqrt(6/(3·p²+D)), zero bias
    patch_init: str = field(default="timm", metadata=OMIT_IF_DEFAULT)
    layer_scale_init: float | None = field(default=None, metadata=OMIT_IF_DEFAULT)  # BEiT's gamma init


@dataclass(frozen=True)
class DataConfig:
    """The embedded synthetic dataset (or an ImageFolder when ``root`` is set)."""

    img_size: int = 32
    num_train: int = 4096
    num_eval: int = 1024
    seed: int = 0
    root: str | None = None
    texture_scale: float = 1.0  # synthetic texture periods relative to 1/7 … 1/4 of the image width
    # the synthetic background texture's colour contrast (the renderer's BACKGROUND_CONTRAST; 0 = flat)
    background_contrast: float = field(default=0.4, metadata=OMIT_IF_DEFAULT)


def normalise_lr_scales(scales: Any) -> tuple[tuple[str, float], ...]:
    """``{fragment: scale}`` or ``[(fragment, scale), ...]`` -> sorted ``((fragment, scale), ...)``;
    a scale must be a positive number and a fragment a non-empty string."""
    items = scales.items() if isinstance(scales, dict) else scales
    try:
        pairs = [(fragment, scale) for fragment, scale in items]
    except (TypeError, ValueError):
        raise ValueError(f"train.lr_scales: expected a mapping of parameter-name fragment to learning-rate "
                         f"multiplier, e.g. {{relative_position_bias_table: 10}}, found {scales!r}") from None
    out = {}
    for fragment, scale in pairs:
        if not isinstance(fragment, str) or not fragment:
            raise ValueError(f"train.lr_scales: a fragment must be a non-empty string, found {fragment!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"train.lr_scales[{fragment!r}]: expected a positive number, found {scale!r}")
        out[fragment] = float(scale)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation budget shared by every objective (fixed step counts, never time-based)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1.5e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 3.0
    grad_accum: int = 1
    precision: str = "fp32"  # "fp32" | "bf16"
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    # learning-rate multipliers by parameter-name fragment, e.g. {relative_position_bias_table: 10}
    # (YAML mapping; stored as sorted (fragment, scale) pairs): see clvsmim.train.optim.param_groups
    lr_scales: tuple[tuple[str, float], ...] = field(default=(), metadata=OMIT_IF_DEFAULT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_scales", normalise_lr_scales(self.lr_scales))


@dataclass(frozen=True)
class MocoConfig:
    tau: float = 0.2
    proj_hidden: int = 512
    proj_out: int = 128
    pred_hidden: int = 512
    momentum: float = 0.99  # start of the cosine schedule 0.99 -> 1
    stop_grad_patch_embed: bool = True
    crop_min_scale: float = 0.08
    # blur sigma range in output pixels; None = upstream's 0.1-2.0 px rescaled from 224 px to the
    # view size (0.014-0.29 px at 32 px: no blur at all)
    blur_sigma: tuple[float, float] | None = field(default=None, metadata=OMIT_IF_DEFAULT)


@dataclass(frozen=True)
class SimMIMConfig:
    mask_ratio: float = 0.6
    mask_patch_size: int = 8  # pixels; 32 for ViT-B/16 at 224 px
    crop_min_scale: float = 0.67


@dataclass(frozen=True)
class MAEConfig:
    mask_ratio: float = 0.75
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 2
    norm_pix_loss: bool = True
    crop_min_scale: float = 0.2


#: How fine-tuning treats a BEiT-style encoder's shared relative position table (``EvalConfig.finetune_table``).
FINETUNE_TABLES = ("shared", "per_block")


@dataclass(frozen=True)
class EvalConfig:
    """Identical budget for every model so that comparisons are fair."""

    probe_steps: int = 300
    probe_lr: float = 1e-2
    finetune_steps: int = 300
    finetune_lr: float = 5e-4
    batch_size: int = 256
    num_analysis_images: int = 64
    # images of the synthetic evaluation split that every accuracy is measured on (None: the
    # profile's data.num_eval); the split is prefix-consistent, so a larger split keeps the first
    # data.num_eval images and the models' training keys (see Profile.eval_data)
    num_images: int | None = field(default=None, metadata=OMIT_IF_DEFAULT)
    # a BEiT-style encoder's relative position table in fine-tuning: "shared" by all blocks as in
    # pretraining, or "per_block" -- each block starts from a copy of it, as upstream SimMIM / BEiT
    # fine-tune (clvsmim.models.unshare_relative_position_bias_); no effect on a plain ViT
    finetune_table: str = field(default="shared", metadata=OMIT_IF_DEFAULT)
    # how many times every fine-tune is run, each with its own seed (EVALUATION_SEED + i): the
    # accuracy is their mean and the claims' SEs add the run-to-run variance
    # (clvsmim.train.zoo.finetune_repeats_path; not part of the evaluation's key)
    finetune_repeats: int = field(default=1, metadata=OMIT_IF_DEFAULT)

    def __post_init__(self):
        if isinstance(self.finetune_repeats, bool) or int(self.finetune_repeats) < 1:
            raise ValueError(f"eval.finetune_repeats: expected a positive number of fine-tuning runs, "
                             f"found {self.finetune_repeats!r}")
        if self.finetune_table not in FINETUNE_TABLES:
            raise ValueError(f"eval.finetune_table: expected one of {FINETUNE_TABLES}, found {self.finetune_table!r}")
        if self.num_images is not None and (isinstance(self.num_images, bool) or int(self.num_images) < 1):
            raise ValueError(f"eval.num_images: expected a positive number of evaluation images, found {self.num_images!r}")


@dataclass(frozen=True)
class Profile:
    name: str = "smoke"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sizes: dict[str, ModelConfig] = field(default_factory=dict)  # scaling panel, e.g. Ti/S/B
    train: TrainConfig = field(default_factory=TrainConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    simmim: SimMIMConfig = field(default_factory=SimMIMConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lams: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    train_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per objective
    # per objective, ModelConfig fields set on top of the family (clvsmim.families.objective_model_config)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    families: str = "v2"  # how each objective's encoder is built: see clvsmim.families
    # the zoo's models by name (``moco``, ``hybrid-0.4``, ``simmim-Ti``, ``random``; no size = the
    # default size); empty: every model the profile defines (clvsmim.train.zoo.zoo_specs)
    models: tuple[str, ...] = field(default=(), metadata=OMIT_IF_DEFAULT)

    def with_data_root(self, root: str | None) -> "Profile":
        """This profile reading its images from the ImageFolder ``root`` (None: unchanged)."""
        if root is None:
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, root=str(root)))

    def eval_data(self) -> DataConfig:
        """The data every evaluation reads: ``data`` with its synthetic evaluation split grown to
        ``eval.num_images`` when that is set (an image folder's val split is read whole)."""
        if self.eval.num_images is None or self.data.root is not None:
            return self.data
        return dataclasses.replace(self.data, num_eval=int(self.eval.num_images))


def _build(cls, values: dict[str, Any] | None, where: str):
    """Instantiate dataclass ``cls`` from a dict, naming unknown keys in the error."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def profile_from_dict(raw: dict[str, Any], name: str = "custom") -> Profile:
    """Build a :class:`Profile` from a nested dict (as read from YAML)."""
    raw = dict(raw)
    where = f"profile '{raw.get('name', name)}'"
    sections = {
        "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "moco": MocoConfig,
        "simmim": SimMIMConfig, "mae": MAEConfig, "eval": EvalConfig,
    }
    known = set(sections) | {"name", "sizes", "lams", "train_overrides", "model_overrides", "families", "models"}
    unknown = sorted(set(raw) - known)
    if unknown:
        hint = " ('base' is resolved when a profile file is read: load_profile / read_profile_yaml)" \
            if "base" in unknown else ""
        raise ValueError(f"{where}: unknown section(s) {unknown}; expected some of {sorted(known)}{hint}")
    kwargs: dict[str, Any] = {k: _build(cls, raw.get(k), f"{where}.{k}") for k, cls in sections.items()}
    base_model = dataclasses.asdict(kwargs["model"])
    kwargs["sizes"] = {
        size: _build(ModelConfig, {**base_model, **(over or {})}, f"{where}.sizes.{size}")
        for size, over in (raw.get("sizes") or {}).items()
    }
    kwargs["lams"] = tuple(float(x) for x in raw.get("lams", Profile.lams))
    kwargs["train_overrides"] = dict(raw.get("train_overrides") or {})
    for obj, over in kwargs["train_overrides"].items():
        _build(TrainConfig, over, f"{where}.train_overrides.{obj}")  # validate early
    kwargs["model_overrides"] = _model_overrides(raw.get("model_overrides"), kwargs["model"], where)
    models = raw.get("models") or ()
    if not isinstance(models, (list, tuple)) or not all(isinstance(m, str) for m in models):
        raise ValueError(f"{where}.models: expected a list of model names (e.g. [moco, hybrid-0.4, simmim-Ti]), "
                         f"found {models!r}")
    kwargs["models"] = tuple(models)
    families = str(raw.get("families", Profile.families))
    return apply_profile_family(Profile(name=raw.get("name", name), families=families, **kwargs))


def _model_overrides(raw: Any, model: ModelConfig, where: str) -> dict[str, dict[str, Any]]:
    """``model_overrides`` checked: objective names, ModelConfig fields (validated by building one)."""
    if not isinstance(raw or {}, dict):
        raise ValueError(f"{where}.model_overrides: expected a mapping objective -> {{field: value}}, found {raw!r}")
    out = {}
    for obj, over in (raw or {}).items():
        if obj not in OBJECTIVES:
            raise ValueError(f"{where}.model_overrides: unknown objective {obj!r}; expected some of {list(OBJECTIVES)}")
        if not isinstance(over, dict):
            raise ValueError(f"{where}.model_overrides.{obj}: expected a mapping of ModelConfig fields, found {over!r}")
        _build(ModelConfig, {**dataclasses.asdict(model), **over}, f"{where}.model_overrides.{obj}")
        out[str(obj)] = dict(over)
    return out


def load_profile(name_or_path: str | Path, images: int | None = None) -> Profile:
    """Load a profile by name (``smoke``, ``mini``, ``paper``) or from a YAML file path.

    ``images`` (``clvsmim book --images N``) replaces ``eval.num_analysis_images``."""
    if images is not None:
        if int(images) < 2:
            raise ValueError(f"images: the analyses need at least 2 images, found {images}")
        prof = load_profile(name_or_path)
        return dataclasses.replace(prof, eval=dataclasses.replace(prof.eval, num_analysis_images=int(images)))
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile {str(name_or_path)!r} not found at {path}; available: {available}")
    return profile_from_dict(read_profile_yaml(path), name=path.stem)


def read_profile_yaml(path: Path) -> dict[str, Any]:
    """A profile file's mapping; with ``base: NAME_OR_PATH`` (a profile name, or a path relative to
    this file) on top of that profile's mapping: each section given here replaces the base's keys it
    names (``data: {texture_scale: 1.0}`` keeps the base's other data fields). One level only:
    ``train_overrides: {simmim: {...}}`` replaces the base's whole ``simmim`` entry."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    if "base" not in raw:
        return raw
    base = Path(str(raw.pop("base")))
    base = PROFILE_DIR / f"{base}.yaml" if not base.suffix else path.parent / base
    if not base.is_file():
        raise FileNotFoundError(f"{path}: base profile not found at {base}")
    merged = read_profile_yaml(base)
    for section, value in raw.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(section), dict)
        merged[section] = {**merged[section], **value} if both_maps else value
    return merged


def train_config_for(profile: Profile, objective: str) -> TrainConfig:
    """The profile's training budget with the per-objective overrides applied."""
    over = profile.train_overrides.get(objective, {})
    return dataclasses.replace(profile.train, **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})


def seed_profile(profile: Profile, seed: int) -> Profile:
    """``profile`` with training seed ``seed`` (per-objective seed overrides replaced too);
    the data stay the same. The profile's own seed returns ``profile`` unchanged."""
    if int(seed) == profile.train.seed and not any("seed" in o for o in profile.train_overrides.values()):
        return profile
    overrides = {obj: {**over, "seed": int(seed)} if "seed" in over else dict(over)
                 for obj, over in profile.train_overrides.items()}
    return dataclasses.replace(profile, train=dataclasses.replace(profile.train, seed=int(seed)),
                               train_overrides=overrides)


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain JSON-able structure."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_if_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_key(*parts: Any, length: int = 12) -> str:
    """Stable short hash of any nesting of dataclasses / dicts / scalars."""
    blob = json.dumps(to_dict(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
