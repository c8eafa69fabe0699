"""Downstream evaluation of a backbone with ONE budget for every model (F1, F7, F9, F10).

Every number here comes from a fixed recipe whose budgets are read from
:class:`~clvsmim.config.EvalConfig` (``probe_steps``, ``probe_lr``, ``finetune_steps``,
``finetune_lr``, ``batch_size``), so a comparison between two models is a comparison of the
models, never of their evaluation. Everything is deterministic for a given encoder.

Features
    ``extract_features`` runs one :func:`clvsmim.analysis.analyze` pass (one capture per batch,
    hidden states only) and pools every depth: **mean-pooled patch tokens by default** (as SimMIM's
    authors probe; the CLS token with ``pool="cls"``). Hidden states are the raw block
    outputs (depth 0 = embeddings, depth ``L`` = last block, before the final norm).

Linear probes (``linear_probe``, ``dense_probe``, ``shape_texture_bias``, ``noise_robustness``)
    the recipe of :func:`clvsmim.analysis.linear_probe_per_layer`: features standardised with
    the training mean / std, zero-initialised ``nn.Linear``, AdamW with cosine-decayed
    ``probe_lr`` for ``probe_steps`` full-batch steps.

Fine-tuning (``finetune``)
    the whole network (a deep copy) plus a linear head on the mean-pooled final tokens
    (after the backbone's final norm), AdamW at ``finetune_lr`` with linear warm-up (10 %)
    and cosine decay for ``finetune_steps`` steps of ``batch_size`` images, random resized
    crop (scale 0.5-1) + horizontal flip drawn from per-sample seeds.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clvsmim.data import augment
from clvsmim.analysis import PatchTokens, PooledFeatures, analyze
from clvsmim.analysis.probe import linear_probe_per_layer, train_linear_probe
from clvsmim.config import EvalConfig, Profile, to_dict
from clvsmim.models import geometry
from clvsmim.precision import autocast_for, native_bf16
from clvsmim.rng import hash_normal, sample_seed

__all__ = [
    "extract_features", "extract_tokens", "probe_predict", "linear_probe", "finetune",
    "dense_probe", "dense_probe_from_tokens", "segmentation_scores", "shape_texture_bias",
    "shape_bias_from_predictions", "band_limited_noise", "noise_robustness", "evaluate_model",
    "finetune_precision", "FINETUNE_CROP_SCALE", "DENSE_MAX_TRAIN_IMAGES",
    "SHAPE_TEXTURE_SIZES", "NOISE_CUTOFF", "NOISE_STRENGTH",
]

#: Random-resized-crop scale of the fine-tuning augmentation (plus a horizontal flip).
FINETUNE_CROP_SCALE = (0.5, 1.0)
FINETUNE_WEIGHT_DECAY = 0.05
FINETUNE_WARMUP_FRACTION = 0.1
#: The dense probe trains on the tokens of at most this many training images (memory bound).
DENSE_MAX_TRAIN_IMAGES = 2048
#: (aligned training images, conflict evaluation images) of the shape-vs-texture probe (upper bounds).
SHAPE_TEXTURE_SIZES = (2048, 1024)
#: Noise band split, as a fraction of the Nyquist frequency (radial), and its RMS in [0, 1] pixel units.
NOISE_CUTOFF = 0.5
NOISE_STRENGTH = 0.1
_FINETUNE_STREAM = 112  # augment stream of the fine-tuning view (after the pre-training streams)
_NOISE_STEP = 0x0015E  # "step" of the noise's per-sample seeds (separates it from other uses)


# --------------------------------------------------------------------------- helpers

def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def finetune_precision(profile_precision: str, device: torch.device | str) -> str:
    """The fine-tuning precision: the profile's, except bf16 falls back to fp32 on a CPU
    without native bf16 (there bf16 autocast is emulated and ~7x slower than fp32)."""
    device = torch.device(device)
    if profile_precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        return "fp32"
    return profile_precision


def _labels_of(data) -> torch.Tensor:
    """Classification labels (int64, N) of a dataset; shape labels for the synthetic set."""
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"{type(data).__name__} has no `labels`")
    return torch.as_tensor(labels, dtype=torch.int64)


def _num_classes(data, *label_sets: torch.Tensor) -> int:
    n = getattr(data, "num_classes", None)
    return int(n) if n is not None else int(max(int(y.max()) for y in label_sets)) + 1


def _batches(data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, indices)`` batches of an image tensor (uint8 or float in [0, 1]) or a dataset."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, torch.Tensor):
        if data.ndim != 4 or data.shape[1] != 3:
            raise ValueError(f"expected images N×3×H×W, got shape {tuple(data.shape)}")
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(len(data), start + batch_size))
            yield data[start:start + batch_size], idx
        return
    from clvsmim.data import get_batch
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(len(data), start + batch_size))
        images, _ = get_batch(data, idx)
        yield images, idx


class _EvalMode:
    """Put a module in eval mode for a ``with`` block and restore its training flag."""

    def __init__(self, module: nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self):
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        self.module.train(self.was_training)
        return False


# --------------------------------------------------------------------------- features

def _normalised_batches(images_uint8, batch_size: int, device: torch.device, transform=None):
    """ImageNet-normalised float batches on ``device`` of an image tensor or a dataset;
    ``transform(images01, indices)`` may perturb each batch (float in [0, 1]) first."""
    for images, idx in _batches(images_uint8, batch_size):
        x = augment.to_float(images.to(device))
        if transform is not None:
            x = transform(x, idx)
        yield augment.normalize(x)


def extract_features(encoder: nn.Module, images_uint8, batch_size: int, pool: str = "mean",
                     depths: Sequence[int] | None = None, transform=None) -> list[torch.Tensor]:
    """Pooled features of each depth: a list of float32 CPU tensors ``N×C``.

    images_uint8: ``N×3×H×W`` uint8 (or float in [0, 1]), or a dataset read with
    :func:`clvsmim.data.get_batch`. One :func:`clvsmim.analysis.analyze` pass (hidden states
    only) with a :class:`~clvsmim.analysis.PooledFeatures` collector; each depth is pooled with
    ``pool``: ``"mean"`` (default) = the mean of the patch tokens, ``"cls"`` = the CLS token.
    ``depths``: which depths to return (0 = embeddings … L = last block; negative counts from
    the end); default all ``L+1``. ``transform(images01, indices)`` may perturb each batch
    (float in [0, 1]) before the ImageNet normalisation.
    """
    device = _device_of(encoder)
    batches = _normalised_batches(images_uint8, batch_size, device, transform)
    try:
        return analyze(encoder, batches, {"f": PooledFeatures(pool, depths)}, device=device)["f"][0]
    except ValueError as exc:
        raise ValueError(f"extract_features: {exc}") from exc


def extract_tokens(encoder: nn.Module, images_uint8, batch_size: int, depth: int = -1) -> torch.Tensor:
    """Patch tokens (prefix tokens dropped) of one depth: float32 CPU ``N×h·w×C`` (row-major grid)."""
    device = _device_of(encoder)
    batches = _normalised_batches(images_uint8, batch_size, device)
    try:
        return analyze(encoder, batches, {"t": PatchTokens([depth])}, device=device)["t"][0]
    except ValueError as exc:
        raise ValueError(f"extract_tokens: {exc}") from exc


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def probe_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor | Sequence[torch.Tensor],
                  cfg: EvalConfig, seed: int = 0, num_classes: int | None = None):
    """Fit ONE linear probe on ``train_x`` (N×C) and return its predicted classes on ``test_x``.

    The recipe of :func:`clvsmim.analysis.linear_probe_per_layer` (standardised features,
    zero-initialised linear layer, AdamW + cosine ``cfg.probe_lr``, ``cfg.probe_steps``
    full-batch steps). ``test_x`` may be one tensor (returns one prediction tensor) or a list.
    """
    single = isinstance(test_x, torch.Tensor)
    tests = [test_x] if single else list(test_x)
    train_y = torch.as_tensor(train_y, dtype=torch.int64)
    k = int(num_classes) if num_classes is not None else int(train_y.max()) + 1
    xs = _standardise(train_x.detach().float(), *(t.detach().float() for t in tests))
    probe = train_linear_probe(xs[0], train_y.to(xs[0].device), k, cfg.probe_steps, cfg.probe_lr, seed)
    with torch.no_grad():
        preds = [probe(x).argmax(-1).cpu() for x in xs[1:]]
    return preds[0] if single else preds


def _accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred.cpu() == target.cpu()).double().mean()) if len(target) else float("nan")


# --------------------------------------------------------------------------- linear probe

def linear_probe(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, pool: str = "mean",
                 seed: int = 0) -> dict[str, Any]:
    """Linear-probe accuracy of every depth (class = the dataset's label: the shape when synthetic).

    Returns ``{"per_layer": [acc at depth 0..L], "final": acc at depth L, "best_depth": int,
    "pool": pool}``; accuracies in [0, 1], the budget of :func:`clvsmim.analysis.linear_probe_per_layer`.
    """
    f_train = extract_features(encoder, train_set, cfg.batch_size, pool)
    f_eval = extract_features(encoder, eval_set, cfg.batch_size, pool)
    per_layer = linear_probe_per_layer(f_train, _labels_of(train_set), f_eval, _labels_of(eval_set),
                                       steps=cfg.probe_steps, lr=cfg.probe_lr, seed=seed)
    best = max(range(len(per_layer)), key=lambda d: (per_layer[d], d))
    return {"per_layer": per_layer, "final": per_layer[-1], "best_depth": int(best), "pool": pool}


# --------------------------------------------------------------------------- fine-tuning

class _FinetuneNet(nn.Module):
    """Backbone + linear head on the mean of the final (normed) patch tokens."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.prefix = geometry(encoder).num_prefix_tokens
        self.head = nn.Linear(int(encoder.embed_dim), num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_features(x)
        return self.head(tokens[:, self.prefix:].mean(1))


def _finetune_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    from clvsmim.train.trainer import param_groups
    return param_groups(model, weight_decay)


def finetune(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, seed: int = 0,
             precision: str = "fp32", return_model: bool = False):
    """Fine-tune a deep copy of ``encoder`` (the input is not modified) and return eval accuracy.

    Head: linear on the mean-pooled final patch tokens (after the final norm). AdamW
    (``cfg.finetune_lr``, weight decay 0.05 on matrices only), 10 % linear warm-up then cosine
    to 0 over ``cfg.finetune_steps`` steps of ``cfg.batch_size`` images drawn with a generator
    seeded by ``seed``; each image gets a random resized crop (scale 0.5-1, aspect 3/4-4/3)
    and a flip (p = 0.5) from its per-sample seed. ``precision="bf16"`` autocasts the forward
    pass. Deterministic for a fixed seed. With ``return_model`` returns ``(acc, model)``.
    """
    from clvsmim.train.trainer import CosineSchedule

    device = _device_of(encoder)
    y_train, y_eval = _labels_of(train_set), _labels_of(eval_set)
    num_classes = _num_classes(train_set, y_train, y_eval)
    backbone = copy.deepcopy(encoder)
    for p in backbone.parameters():
        p.requires_grad_(True)
    if getattr(backbone, "pos_embed", None) is not None and not encoder.pos_embed.requires_grad:
        backbone.pos_embed.requires_grad_(False)  # fixed sin-cos position embedding stays fixed
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the head's initialisation
    model = _FinetuneNet(backbone, num_classes).to(device)
    torch.set_rng_state(gen_state)
    steps = int(cfg.finetune_steps)
    warmup = int(round(FINETUNE_WARMUP_FRACTION * steps))
    opt = torch.optim.AdamW(_finetune_groups(model, FINETUNE_WEIGHT_DECAY), lr=cfg.finetune_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, CosineSchedule(cfg.finetune_lr, 0.0, warmup, max(steps, 1)))
    gen = torch.Generator().manual_seed(seed)
    img_size = geometry(encoder).grid[0] * geometry(encoder).patch_size
    n = len(train_set)
    batch = min(int(cfg.batch_size), n)
    model.train()
    with torch.enable_grad():
        for step in range(steps):
            idx = torch.randint(n, (batch,), generator=gen)
            images, labels = _get(train_set, idx)
            seeds = sample_seed(seed, step, idx)
            x = augment.random_resized_crop(images.to(device), seeds.to(device), img_size,
                                            scale=FINETUNE_CROP_SCALE, flip=True, stream=_FINETUNE_STREAM)
            with autocast_for(device, precision):
                logits = model(augment.normalize(x))
            loss = F.cross_entropy(logits.float(), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    correct, total = 0, 0
    with _EvalMode(model), torch.no_grad():
        for images, idx in _batches(eval_set, cfg.batch_size):
            with autocast_for(device, precision):
                pred = model(augment.normalize(images.to(device))).argmax(-1).cpu()
            correct += int((pred == y_eval[idx]).sum())
            total += len(idx)
    acc = correct / total if total else float("nan")
    return (acc, model) if return_model else acc


def _get(data, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from clvsmim.data import get_batch
    return get_batch(data, idx)


# --------------------------------------------------------------------------- dense probe

def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 2) -> dict[str, float]:
    """``{"miou", "acc", "iou": [per class]}`` of integer label maps of any (equal) shape.

    The mean IoU averages over the classes present in the prediction or the target.
    """
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    ious = []
    for c in range(num_classes):
        inter = int(((pred == c) & (target == c)).sum())
        union = int(((pred == c) | (target == c)).sum())
        ious.append(inter / union if union else float("nan"))
    valid = [v for v in ious if not math.isnan(v)]
    return {"miou": sum(valid) / len(valid) if valid else float("nan"),
            "acc": _accuracy(pred, target), "iou": ious}


def dense_probe_from_tokens(train_tokens: torch.Tensor, train_targets: torch.Tensor, eval_tokens: torch.Tensor,
                            eval_targets: torch.Tensor, cfg: EvalConfig, seed: int = 0) -> dict[str, Any]:
    """Per-token linear classification (foreground / background) of token features.

    tokens: ``N×T×C``; targets: ``N×T`` (or ``N×h×w``) bool / {0, 1}. Trains one linear probe
    (the :func:`probe_predict` recipe) on all training tokens; returns token-level
    ``miou`` (over the 2 classes), ``token_acc``, per-class ``iou`` and the predictions ``N×T``.
    """
    c = train_tokens.shape[-1]
    y_train = train_targets.reshape(-1).long()
    pred = probe_predict(train_tokens.reshape(-1, c), y_train, eval_tokens.reshape(-1, c), cfg, seed,
                         num_classes=2)
    scores = segmentation_scores(pred, eval_targets.reshape(-1).long(), 2)
    return {"miou": scores["miou"], "token_acc": scores["acc"], "iou": scores["iou"],
            "pred": pred.reshape(eval_tokens.shape[:2])}


def dense_probe(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, seed: int = 0,
                max_train_images: int = DENSE_MAX_TRAIN_IMAGES) -> dict[str, Any]:
    """Linear per-token segmentation on frozen final-layer patch tokens (synthetic data only).

    Target of a token: foreground when more than half of its patch is foreground
    (``token_targets(patch) > 0.5``). Trained on the tokens of the first
    ``max_train_images`` training images, scored on the whole eval set:
    ``miou`` (token level, mean over foreground / background), ``token_acc``, and
    ``pixel_acc`` / ``pixel_miou`` of the token predictions upsampled to the pixel mask.
    """
    for data in (train_set, eval_set):
        if not hasattr(data, "token_targets"):
            raise ValueError(f"dense_probe needs foreground masks (token_targets); {type(data).__name__} has none")
    geo = geometry(encoder)
    train_part = train_set.subset(slice(0, max_train_images)) if len(train_set) > max_train_images else train_set
    t_train = extract_tokens(encoder, train_part.images, cfg.batch_size)
    t_eval = extract_tokens(encoder, eval_set.images, cfg.batch_size)
    y_train = train_part.token_targets(geo.patch_size) > 0.5
    y_eval = eval_set.token_targets(geo.patch_size) > 0.5
    res = dense_probe_from_tokens(t_train, y_train, t_eval, y_eval, cfg, seed)
    h, w = geo.grid
    pixel_pred = res.pop("pred").reshape(-1, 1, h, w).float()
    pixel_pred = F.interpolate(pixel_pred, scale_factor=geo.patch_size, mode="nearest")[:, 0].long()
    pixel = segmentation_scores(pixel_pred, eval_set.mask.long(), 2)
    return {**res, "pixel_acc": pixel["acc"], "pixel_miou": pixel["miou"]}


# --------------------------------------------------------------------------- shape vs texture

def shape_bias_from_predictions(pred, shape_label, texture_label) -> dict[str, float]:
    """Shape bias of classifier decisions on cue-conflict images.

    ``texture_label`` is the class whose texture the image carries (in the synthetic data
    class ``k`` <-> texture ``k``, so it is the foreground texture index).
    ``shape_bias = #(pred == shape) / (#(pred == shape) + #(pred == texture class))``
    (NaN when no decision matches either cue); ``shape_acc`` / ``texture_acc`` are the
    fractions of all decisions that match each cue.
    """
    pred, shape, texture = (torch.as_tensor(v).long().reshape(-1) for v in (pred, shape_label, texture_label))
    if not (len(pred) == len(shape) == len(texture)):
        raise ValueError(f"need equal lengths, got {len(pred)}, {len(shape)}, {len(texture)}")
    shape_hits = int((pred == shape).sum())
    texture_hits = int(((pred == texture) & (texture != shape)).sum())
    decided = shape_hits + texture_hits
    n = max(len(pred), 1)
    return {"shape_bias": shape_hits / decided if decided else float("nan"),
            "shape_acc": shape_hits / n, "texture_acc": int((pred == texture).sum()) / n,
            "num_decided": decided}


def shape_bias_standard_error(bias: float, num_decided: int) -> float:
    """Binomial standard error ``sqrt(p(1-p)/n)`` of a shape bias ``p`` over ``n`` decided images."""
    if num_decided <= 0:
        raise ValueError(f"need at least one decided image, got {num_decided}")
    return math.sqrt(bias * (1.0 - bias) / num_decided)


def shape_texture_bias(encoder: nn.Module, cfg: EvalConfig, img_size: int, seed: int = 0, pool: str = "mean",
                       sizes: tuple[int, int] = SHAPE_TEXTURE_SIZES, texture_scale: float = 1.0) -> dict[str, float]:
    """Shape-vs-texture bias of a linear probe on the final-depth features.

    The probe is trained on ``sizes[0]`` "aligned" synthetic images (foreground texture ``k``
    on every shape ``k``: both cues predict the class; seed ``seed``) and evaluated on
    ``sizes[1]`` "conflict" images (shape ``k`` filled with the texture of another class ``j``;
    seed ``seed + EVAL_SEED_OFFSET``), both with the data's ``texture_scale``. See
    :func:`shape_bias_from_predictions`.
    """
    from clvsmim.data import EVAL_SEED_OFFSET, load_synthetic

    aligned = load_synthetic(sizes[0], img_size, seed=seed, mode="aligned", texture_scale=texture_scale)
    conflict = load_synthetic(sizes[1], img_size, seed=seed + EVAL_SEED_OFFSET, mode="conflict",
                              texture_scale=texture_scale)
    f_train = extract_features(encoder, aligned.images, cfg.batch_size, pool, depths=[-1])[0]
    f_eval = extract_features(encoder, conflict.images, cfg.batch_size, pool, depths=[-1])[0]
    pred = probe_predict(f_train, aligned.shape, f_eval, cfg, seed, num_classes=aligned.num_classes)
    return shape_bias_from_predictions(pred, conflict.shape, conflict.texture)


# --------------------------------------------------------------------------- frequency noise

def band_limited_noise(seeds: torch.Tensor, img_size: int, band: str, cutoff: float = NOISE_CUTOFF,
                       strength: float = NOISE_STRENGTH) -> torch.Tensor:
    """Gaussian noise ``B×3×S×S`` restricted to low or high spatial frequencies, equal energy.

    White noise from the per-sample ``seeds`` is filtered in the Fourier domain: ``band="low"``
    keeps the radial frequencies ``0 < |f| <= cutoff·f_Nyquist``, ``band="high"`` those above
    (the DC term is dropped from both); each sample's noise is then rescaled to RMS
    ``strength`` (in [0, 1] pixel units), so both bands carry the same energy. The same white
    noise underlies both bands.
    """
    if band not in ("low", "high"):
        raise ValueError(f"band must be 'low' or 'high', got {band!r}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1) (fraction of Nyquist), got {cutoff}")
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    s = int(img_size)
    white = hash_normal(seeds, 3 * s * s).reshape(-1, 3, s, s)
    f = torch.fft.fftfreq(s)  # cycles / pixel, Nyquist = 0.5
    radius = torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2) / 0.5
    keep = (radius <= cutoff) if band == "low" else (radius > cutoff)
    keep &= radius > 0
    noise = torch.fft.ifft2(torch.fft.fft2(white) * keep).real
    rms = noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return noise * (strength / rms)


def noise_robustness(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, cutoff: float = NOISE_CUTOFF,
                     strength: float = NOISE_STRENGTH, seed: int = 0, pool: str = "mean") -> dict[str, float]:
    """Accuracy of a linear probe (final depth, trained on clean training features) on the eval
    images: clean, plus low-frequency and plus high-frequency noise (:func:`band_limited_noise`,
    seeds ``sample_seed(seed, _, index)``; added in [0, 1] pixel units, not clipped)."""
    geo = geometry(encoder)
    img_size = geo.grid[0] * geo.patch_size

    def noisy(band: str):
        def transform(x01: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            seeds = sample_seed(seed, _NOISE_STEP, idx)
            return x01 + band_limited_noise(seeds, img_size, band, cutoff, strength).to(x01.device)
        return transform

    f_train = extract_features(encoder, train_set, cfg.batch_size, pool, depths=[-1])[0]
    tests = [extract_features(encoder, eval_set, cfg.batch_size, pool, depths=[-1], transform=t)[0]
             for t in (None, noisy("low"), noisy("high"))]
    y_train, y_eval = _labels_of(train_set), _labels_of(eval_set)
    preds = probe_predict(f_train, y_train, tests, cfg, seed, num_classes=_num_classes(train_set, y_train, y_eval))
    clean, low, high = (_accuracy(p, y_eval) for p in preds)
    return {"clean": clean, "low_freq": low, "high_freq": high, "cutoff": cutoff, "strength": strength}


# --------------------------------------------------------------------------- everything

def _json_safe(value: Any) -> Any:
    """NaN / inf -> None, tensors -> lists, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_model(encoder: nn.Module, profile: Profile, data_root: str | None = None, *,
                   finetune_model: bool = True, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Every evaluation of this module on the profile's data, as a strict-JSON dict.

    Keys: ``linear_probe`` (per depth, mean-pooled patch tokens), ``finetune`` (accuracy, or
    None with ``finetune_model=False``), ``dense_probe`` (None on image folders: no masks),
    ``shape_texture`` (always on the synthetic data, at the encoder's resolution), ``noise``,
    ``eval_config``, ``timing_s``, ``precision``. Fine-tuning uses ``profile.train.precision``
    (bf16 only where it is native: see :func:`finetune_precision`).
    """
    from clvsmim.data import open_dataset

    data_cfg = profile.with_data_root(data_root).data
    train_set = open_dataset(data_cfg, "train")
    eval_set = open_dataset(data_cfg, "eval")
    cfg = profile.eval
    geo = geometry(encoder)
    timing: dict[str, float] = {}
    out: dict[str, Any] = {"pool": "mean", "eval_config": to_dict(cfg), "data": to_dict(data_cfg)}

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        if progress:
            print(f"  {name} ...", flush=True)
        result = fn(*args, **kwargs)
        timing[name] = round(time.perf_counter() - t0, 3)
        return result

    out["linear_probe"] = timed("linear_probe", linear_probe, encoder, train_set, eval_set, cfg, seed=seed)
    precision = finetune_precision(profile.train.precision, _device_of(encoder))
    out["precision"] = precision
    out["finetune"] = (timed("finetune", finetune, encoder, train_set, eval_set, cfg, seed=seed,
                             precision=precision) if finetune_model else None)
    out["dense_probe"] = (timed("dense_probe", dense_probe, encoder, train_set, eval_set, cfg, seed=seed)
                          if hasattr(train_set, "token_targets") else None)
    sizes = (min(SHAPE_TEXTURE_SIZES[0], profile.data.num_train), min(SHAPE_TEXTURE_SIZES[1], profile.data.num_eval))
    out["shape_texture"] = timed("shape_texture", shape_texture_bias, encoder, cfg,
                                 geo.grid[0] * geo.patch_size, seed=profile.data.seed, sizes=sizes,
                                 texture_scale=profile.data.texture_scale)
    out["noise"] = timed("noise", noise_robustness, encoder, train_set, eval_set, cfg, seed=seed)
    out["timing_s"] = timing
    return _json_safe(out)
