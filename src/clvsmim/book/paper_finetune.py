"""C10 on the official checkpoints: a short fine-tune of each model (and the seeded control).

The official models are fine-tuned end to end, briefly, on the paper book's probe images
(:func:`~clvsmim.book.paper_data.probe_images`): train on alternate images of each class, test on
the others (:func:`clvsmim.analysis.model_report.probe_split`), with the augmentation and
schedule of :func:`clvsmim.evaluation.finetune.finetune` and a budget small enough for a CPU
(:data:`FINETUNE_STEPS` AdamW steps, at most :data:`FINETUNE_MAX_EPOCHS` passes over the train half,
of at most :data:`FINETUNE_BATCH` images at upstream's base learning rate scaled by batch / 256). A comparison of models, not a reproduction of their
published fine-tuning accuracy.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from clvsmim.analysis.images import TensorImages
from clvsmim.analysis.model_report import probe_split
from clvsmim.analysis.probe import accuracy_of
from clvsmim.book.paper_data import probe_images
from clvsmim.book.report import backbone, model_cache_path, resolve_device
from clvsmim.cache import cached_json
from clvsmim.evaluation import finetune_correct
from clvsmim.methods import ModelRef
from clvsmim.uncertainty import pack_correct

__all__ = ["FINETUNE_STEPS", "FINETUNE_MAX_EPOCHS", "FINETUNE_BATCH", "FINETUNE_BASE_LR", "short_finetune",
           "finetune_evaluation"]

#: C10's short fine-tune of the official checkpoints (and the control) on the probe images: steps,
#: the largest batch (the train half caps it), and the base learning rate per 256 images (upstream
#: MoCo v3 / MAE fine-tuning: blr 5e-4, linearly scaled by batch / 256).
FINETUNE_STEPS = 20
#: ... and at most this many passes over the train half: a few images (a CPU run with a small
#: ``--images``) are not revisited 20 times (8 images: 4 train images, 5 steps instead of 20).
FINETUNE_MAX_EPOCHS = 5
FINETUNE_BATCH = 16
FINETUNE_BASE_LR = 5e-4


def short_finetune(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eval_cfg,
                   steps: int = FINETUNE_STEPS, seed: int = 0) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` end to end on the train half of ``images`` (alternate images
    within each class, :func:`clvsmim.analysis.model_report.probe_split`) and test on the other
    half: ``{"finetune": accuracy in [0, 1], "finetune_correct"`` (which test images it gets right,
    :func:`clvsmim.uncertainty.pack_correct`, the key of a zoo evaluation) ``, "num_train", "num_test",
    "num_classes", "budget"}``.
    The budget: ``steps`` AdamW steps (at most :data:`FINETUNE_MAX_EPOCHS` passes over the train
    half) of ``min(FINETUNE_BATCH, train)`` images at
    ``FINETUNE_BASE_LR × batch / 256``, the augmentation and schedule of
    :func:`clvsmim.evaluation.finetune.finetune` (``eval_cfg`` gives the rest)."""
    classes = labels.unique()
    y = torch.searchsorted(classes, labels)
    train, test = probe_split(y)
    if len(classes) < 2 or not test:
        raise ValueError(f"the short fine-tune needs ≥ 2 classes with ≥ 2 images each; {len(labels)} images of "
                         f"{len(classes)} classes (raise --images)")
    batch = min(FINETUNE_BATCH, len(train))
    steps = min(int(steps), FINETUNE_MAX_EPOCHS * -(-len(train) // batch))
    lr = FINETUNE_BASE_LR * batch / 256
    cfg = dataclasses.replace(eval_cfg, finetune_steps=int(steps), batch_size=batch, finetune_lr=lr)
    tr, te = torch.tensor(train), torch.tensor(test)
    correct, _ = finetune_correct(model, TensorImages(images[tr], y[tr]), TensorImages(images[te], y[te]), cfg,
                                  seed=seed)
    return {"finetune": accuracy_of(correct), "finetune_correct": pack_correct(correct.numpy()),
            "num_train": len(train), "num_test": len(test), "num_classes": len(classes),
            "budget": {"steps": int(steps), "batch_size": batch, "lr": lr}}


def finetune_evaluation(ref: ModelRef, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """C10's short fine-tune (:func:`short_finetune`) of the official model ``ref`` (or the seeded
    control) on :func:`~clvsmim.book.paper_data.probe_images`, cached next to its probe."""
    profile = ref.profile
    n = n or profile.eval.num_analysis_images
    content = {"n": n, "steps": FINETUNE_STEPS, "epochs": FINETUNE_MAX_EPOCHS, "batch": FINETUNE_BATCH,
               "base_lr": FINETUNE_BASE_LR, "format": 2}
    if profile.eval.finetune_table != "shared":  # a BEiT-style model's table split per block (upstream)
        content["table"] = profile.eval.finetune_table

    def compute() -> dict[str, Any]:
        images, labels = probe_images(profile, n)
        model = backbone(ref, resolve_device(device))
        return short_finetune(model, images, labels, profile.eval, seed=profile.train.seed)

    return cached_json(model_cache_path(ref, "finetune", content), compute)
