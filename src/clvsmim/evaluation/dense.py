"""The dense probe: a linear per-token foreground / background classifier on the last block (mIoU)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clvsmim.config import EvalConfig
from clvsmim.models import geometry
from clvsmim.evaluation.features import accuracy, extract_tokens, probe_predict


# --------------------------------------------------------------------------- dense probe

#: The dense probe trains on the tokens of at most this many training images (memory bound).
DENSE_MAX_TRAIN_IMAGES = 2048

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
            "acc": accuracy(pred, target), "iou": ious}


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
                max_train_images: int = DENSE_MAX_TRAIN_IMAGES,
                tokens: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Linear per-token segmentation on frozen final-layer patch tokens (synthetic data only).

    Target of a token: foreground when more than half of its patch is foreground
    (``token_targets(patch) > 0.5``). Trained on the tokens of the first
    ``max_train_images`` training images, scored on the whole eval set:
    ``miou`` (token level, mean over foreground / background), ``token_acc``, and
    ``pixel_acc`` / ``pixel_miou`` of the token predictions upsampled to the pixel mask.
    ``tokens``: the last block's patch tokens of those training images and of the eval set
    (``N×h·w×C`` each) when already extracted.
    """
    for data in (train_set, eval_set):
        if not hasattr(data, "token_targets"):
            raise ValueError(f"dense_probe needs foreground masks (token_targets); {type(data).__name__} has none")
    geo = geometry(encoder)
    train_part = train_set.subset(slice(0, max_train_images)) if len(train_set) > max_train_images else train_set
    if tokens is None:
        tokens = tuple(extract_tokens(encoder, data.images, cfg.batch_size) for data in (train_part, eval_set))
    t_train, t_eval = tokens
    for name, found, data in (("training", t_train, train_part), ("evaluation", t_eval, eval_set)):
        if found.shape[:2] != (len(data), geo.grid[0] * geo.grid[1]):
            raise ValueError(f"dense_probe: {name} tokens must be {len(data)} images × {geo.grid[0] * geo.grid[1]} "
                             f"patches × C, found shape {tuple(found.shape)}")
    y_train = train_part.token_targets(geo.patch_size) > 0.5
    y_eval = eval_set.token_targets(geo.patch_size) > 0.5
    res = dense_probe_from_tokens(t_train, y_train, t_eval, y_eval, cfg, seed)
    h, w = geo.grid
    pixel_pred = res.pop("pred").reshape(-1, 1, h, w).float()
    pixel_pred = F.interpolate(pixel_pred, scale_factor=geo.patch_size, mode="nearest")[:, 0].long()
    pixel = segmentation_scores(pixel_pred, eval_set.mask.long(), 2)
    return {**res, "pixel_acc": pixel["acc"], "pixel_miou": pixel["miou"]}
