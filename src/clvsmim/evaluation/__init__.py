"""Downstream evaluation of a backbone with ONE budget for every model (F1, F7, F9, F10).

Every number here comes from a fixed recipe whose budgets are read from
:class:`~clvsmim.config.EvalConfig` (``probe_steps``, ``probe_lr``, ``finetune_steps``,
``finetune_lr``, ``batch_size``), so a comparison between two models is a comparison of the
models, never of their evaluation. Everything is deterministic for a given encoder.

Features
    ``extract_features`` runs one :func:`clvsmim.analysis.analyze` pass (one capture per batch,
    hidden states only) and pools every depth: **mean-pooled patch tokens by default** (as SimMIM's
    authors probe; the CLS token with ``pool="cls"``, the normed CLS token — MoCo v3's
    representation — with ``pool="cls_norm"``). Hidden states are the raw block outputs
    (depth 0 = embeddings, depth ``L`` = last block, before the final norm). ``evaluate_model``
    makes ONE frozen pass per split (``extract_pooled_and_tokens``) for the probes of every depth,
    the dense probe's tokens and the noise probe's clean features: the same numbers as the
    standalone functions, 1.3x faster (``benchmarks/eval_speed.py``).

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

import time
from typing import Any

import torch
from torch import nn

from clvsmim.analysis.probe import accuracy_of
from clvsmim.cache import json_safe
from clvsmim.config import Profile, to_dict
from clvsmim.data import open_dataset, render_style
from clvsmim.evaluation.dense import DENSE_MAX_TRAIN_IMAGES, dense_probe, dense_probe_from_tokens, segmentation_scores
from clvsmim.evaluation.features import (device_of, extract_features, extract_pooled, extract_pooled_and_tokens,
                                         extract_tokens, labels_of, linear_probe, linear_probes,
                                         linear_probes_from_features, probe_predict)
from clvsmim.evaluation.finetune import FINETUNE_CROP_SCALE, finetune, finetune_correct, layer_decay_scales
from clvsmim.evaluation.robustness import (NOISE_CUTOFF, NOISE_STRENGTH, SHAPE_TEXTURE_SIZES, band_limited_noise,
                                           noise_robustness, shape_bias_from_predictions, shape_bias_standard_error,
                                           shape_texture_bias)
from clvsmim.models import geometry
from clvsmim.precision import native_bf16
from clvsmim.uncertainty import pack_correct

__all__ = [
    "extract_features", "extract_pooled", "extract_pooled_and_tokens", "extract_tokens", "probe_predict",
    "linear_probes_from_features", "linear_probe", "linear_probes", "finetune",
    "finetune_correct",
    "layer_decay_scales",
    "dense_probe", "dense_probe_from_tokens", "segmentation_scores", "shape_texture_bias",
    "shape_bias_from_predictions", "band_limited_noise", "noise_robustness", "evaluate_model",
    "finetune_precision", "FINETUNE_CROP_SCALE", "DENSE_MAX_TRAIN_IMAGES",
    "SHAPE_TEXTURE_SIZES", "NOISE_CUTOFF", "NOISE_STRENGTH", "shape_bias_standard_error", "EVALUATION_SEED",
    "finetune_run",
]

#: The seed of :func:`evaluate_model`'s probes and fine-tune: the zoo evaluates every model with it,
#: whatever the model's training seed, so a re-run of one recipe reproduces the zoo's numbers.
EVALUATION_SEED = 0


# --------------------------------------------------------------------------- everything

def finetune_precision(profile_precision: str, device: torch.device | str) -> str:
    """The fine-tuning precision: the profile's, except bf16 falls back to fp32 on a CPU
    without native bf16 (there bf16 autocast is emulated and ~7x slower than fp32)."""
    device = torch.device(device)
    if profile_precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        return "fp32"
    return profile_precision


def finetune_run(encoder: nn.Module, profile: Profile, seed: int) -> dict[str, Any]:
    """One more run of :func:`evaluate_model`'s fine-tune with another ``seed`` (head init, batch
    order, augmentation): ``{"seed", "accuracy", "correct"}`` (``correct``: packed per-image
    correctness on the evaluation split). With ``seed = EVALUATION_SEED`` it is the evaluation's own."""
    data_cfg = profile.eval_data()
    precision = finetune_precision(profile.train.precision, device_of(encoder))
    return _finetune_run_on(encoder, open_dataset(data_cfg, "train"), open_dataset(data_cfg, "eval"),
                            profile.eval, seed, precision)


def _finetune_run_on(encoder: nn.Module, train_set, eval_set, cfg, seed: int, precision: str) -> dict[str, Any]:
    correct, _ = finetune_correct(encoder, train_set, eval_set, cfg, seed=seed, precision=precision)
    return {"seed": int(seed), "accuracy": accuracy_of(correct), "correct": pack_correct(correct.numpy())}


def evaluate_model(encoder: nn.Module, profile: Profile, *,
                   finetune_model: bool = True, seed: int = EVALUATION_SEED, progress: bool = False) -> dict[str, Any]:
    """Every evaluation of this module on the profile's data, as a strict-JSON dict.

    Keys: ``linear_probe`` (per depth, mean-pooled patch tokens), ``linear_probe_cls`` (the same
    recipe on the normed CLS token, ``pool="cls_norm"``; both from one feature pass per split; None
    without a CLS token),
    ``pool`` (the pooling of ``linear_probe`` and of the robustness probes), ``finetune`` (accuracy, or
    None with ``finetune_model=False``) and ``finetune_correct`` (which evaluation images it gets
    right, :func:`clvsmim.uncertainty.pack_correct`; each probe has ``correct_per_layer``), ``dense_probe`` (None on image folders: no masks),
    ``shape_texture`` (always on the synthetic data, at the encoder's resolution), ``noise``,
    ``eval_config``, ``timing_s``, ``precision``. Fine-tuning uses ``profile.train.precision``
    (bf16 only where it is native: see :func:`finetune_precision`).
    """

    data_cfg = profile.eval_data()
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

    pools = ("mean", "cls_norm") if geo.num_prefix_tokens else ("mean",)  # no CLS token: no CLS probe
    dense = hasattr(train_set, "token_targets")

    def frozen_pass(data, token_images: int):  # the probes' pooled features and the dense probe's tokens
        positions = range(min(len(data), token_images)) if dense else None
        return extract_pooled_and_tokens(encoder, data, cfg.batch_size, pools, token_positions=positions)

    f_train, t_train = timed("features_train", frozen_pass, train_set, DENSE_MAX_TRAIN_IMAGES)
    f_eval, t_eval = timed("features_eval", frozen_pass, eval_set, len(eval_set))
    y_train, y_eval = labels_of(train_set), labels_of(eval_set)
    probes = timed("linear_probe", linear_probes_from_features, f_train, y_train, f_eval, y_eval, cfg, seed=seed)
    out["linear_probe"], out["linear_probe_cls"] = probes["mean"], probes.get("cls_norm")
    precision = finetune_precision(profile.train.precision, device_of(encoder))
    out["precision"] = precision
    out["finetune"] = out["finetune_correct"] = None
    if finetune_model:
        run = timed("finetune", _finetune_run_on, encoder, train_set, eval_set, cfg, seed, precision)
        out["finetune"], out["finetune_correct"] = run["accuracy"], run["correct"]
    out["dense_probe"] = (timed("dense_probe", dense_probe, encoder, train_set, eval_set, cfg, seed=seed,
                                max_train_images=DENSE_MAX_TRAIN_IMAGES, tokens=(t_train, t_eval)) if dense else None)
    sizes = (min(SHAPE_TEXTURE_SIZES[0], data_cfg.num_train), min(SHAPE_TEXTURE_SIZES[1], data_cfg.num_eval))
    out["shape_texture"] = timed("shape_texture", shape_texture_bias, encoder, cfg,
                                 geo.grid[0] * geo.patch_size, seed=profile.data.seed, sizes=sizes,
                                 **render_style(profile.data))
    out["noise"] = timed("noise", noise_robustness, encoder, train_set, eval_set, cfg, seed=seed,
                         clean_features=(f_train["mean"][-1], f_eval["mean"][-1]))
    out["timing_s"] = timing
    return json_safe(out)
