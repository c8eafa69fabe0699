"""End-to-end fine-tuning with one identical budget for every model (AdamW, warm-up + cosine,
random-resized crops and flips)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from clvsmim.analysis.probe import accuracy_of
from clvsmim.config import EvalConfig, normalise_lr_scales
from clvsmim.data import augment, get_batch
from clvsmim.evaluation.features import EvalMode, device_of, image_batches, labels_of, num_classes_of
from clvsmim.models import geometry, unshare_relative_position_bias_
from clvsmim.precision import autocast_for
from clvsmim.rng import sample_seed
from clvsmim.train.trainer import CosineSchedule, param_groups

# --------------------------------------------------------------------------- fine-tuning

#: Random-resized-crop scale of the fine-tuning augmentation (plus a horizontal flip).
FINETUNE_CROP_SCALE = (0.5, 1.0)
FINETUNE_WEIGHT_DECAY = 0.05
FINETUNE_WARMUP_FRACTION = 0.1
FINETUNE_STREAM = 112  # augment stream of the fine-tuning view (after the pre-training streams)

#: Parameters that BEiT / SimMIM / MAE fine-tuning puts below the first block (layer 0).
EMBEDDING_PARAMETERS = ("patch_embed.", "cls_token", "pos_embed", "mask_token")


def layer_decay_scales(encoder: nn.Module, decay: float) -> tuple[tuple[str, float], ...]:
    """Layer-wise learning-rate decay as ``lr_scales`` for :func:`finetune`: upstream MIM
    fine-tuning (SimMIM 0.65, MAE 0.65 / 0.75, BEiT) gives block ``i`` of an ``L``-block encoder
    ``decay ** (L - i)`` and the embeddings ``decay ** (L + 1)``; the final norm, the head and a
    shared relative position bias keep 1. ``decay == 1`` returns no scales."""
    if not 0.0 < float(decay) <= 1.0:
        raise ValueError(f"layer decay must lie in (0, 1], found {decay}")
    if decay == 1.0:
        return ()
    depth = len(encoder.blocks)
    names = [n for n, _ in encoder.named_parameters()]
    scales = [(f"blocks.{i}.", decay ** (depth - i)) for i in range(depth)]
    scales += [(f, decay ** (depth + 1)) for f in EMBEDDING_PARAMETERS if any(n.startswith(f) for n in names)]
    return tuple(scales)


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


def finetune(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, seed: int = 0,
             precision: str = "fp32", return_model: bool = False,
             lr_scales: tuple[tuple[str, float], ...] = ()):
    """Fine-tune a deep copy of ``encoder`` (the input is not modified) and return eval accuracy:
    the mean of :func:`finetune_correct`. With ``return_model`` returns ``(acc, model)``.
    Arguments as :func:`finetune_model`."""
    correct, model = finetune_correct(encoder, train_set, eval_set, cfg, seed, precision, lr_scales)
    return (accuracy_of(correct), model) if return_model else accuracy_of(correct)


def finetune_correct(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, seed: int = 0,
                     precision: str = "fp32", lr_scales: tuple[tuple[str, float], ...] = ()
                     ) -> tuple[torch.Tensor, nn.Module]:
    """:func:`finetune_model` (a head for every class of both sets) and :func:`correct_on` the
    evaluation set: ``(boolean (N_eval,) correctness, fine-tuned model)``."""
    num_classes = num_classes_of(train_set, labels_of(train_set), labels_of(eval_set))
    model = finetune_model(encoder, train_set, cfg, seed, precision, lr_scales, num_classes)
    return correct_on(model, eval_set, cfg.batch_size, precision), model


def finetune_model(encoder: nn.Module, train_set, cfg: EvalConfig, seed: int = 0, precision: str = "fp32",
                   lr_scales: tuple[tuple[str, float], ...] = (), num_classes: int | None = None) -> nn.Module:
    """A deep copy of ``encoder`` plus a linear head, fine-tuned on ``train_set`` (the input is
    not modified); returned in train mode.

    Head: linear on the mean-pooled final patch tokens (after the final norm). AdamW
    (``cfg.finetune_lr``, weight decay 0.05 on matrices only), 10 % linear warm-up then cosine
    to 0 over ``cfg.finetune_steps`` steps of ``cfg.batch_size`` images drawn with a generator
    seeded by ``seed``; each image gets a random resized crop (scale 0.5-1, aspect 3/4-4/3)
    and a flip (p = 0.5) from its per-sample seed. ``precision="bf16"`` autocasts the forward
    pass. Deterministic for a fixed seed. ``cfg.finetune_table == "per_block"`` gives each block of
    a BEiT-style encoder its own copy of the shared relative position table first (upstream
    SimMIM / BEiT fine-tuning).
    ``lr_scales`` (as ``TrainConfig.lr_scales``; default none, what every evaluation uses) gives
    the parameters it names a multiple of the learning rate: a diagnostic, e.g. fine-tuning
    with the multipliers a model was pre-trained with. ``num_classes``: the head's outputs
    (default: the set's ``num_classes``, else its largest label + 1).
    """
    device = device_of(encoder)
    if num_classes is None:
        num_classes = num_classes_of(train_set, labels_of(train_set))
    backbone = copy.deepcopy(encoder)
    for p in backbone.parameters():
        p.requires_grad_(True)
    if getattr(backbone, "pos_embed", None) is not None and not encoder.pos_embed.requires_grad:
        backbone.pos_embed.requires_grad_(False)  # fixed sin-cos position embedding stays fixed
    if cfg.finetune_table == "per_block":
        unshare_relative_position_bias_(backbone)
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the head's initialisation
    model = _FinetuneNet(backbone, num_classes).to(device)
    torch.set_rng_state(gen_state)
    steps = int(cfg.finetune_steps)
    warmup = int(round(FINETUNE_WARMUP_FRACTION * steps))
    groups = param_groups(model, FINETUNE_WEIGHT_DECAY, cfg.finetune_lr, normalise_lr_scales(lr_scales))
    opt = torch.optim.AdamW(groups, lr=cfg.finetune_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, CosineSchedule(cfg.finetune_lr, 0.0, warmup, max(steps, 1)))
    gen = torch.Generator().manual_seed(seed)
    img_size = geometry(encoder).grid[0] * geometry(encoder).patch_size
    n = len(train_set)
    batch = min(int(cfg.batch_size), n)
    model.train()
    with torch.enable_grad():
        for step in range(steps):
            idx = torch.randint(n, (batch,), generator=gen)
            images, labels = batch_at(train_set, idx)
            seeds = sample_seed(seed, step, idx)
            x = augment.random_resized_crop(images.to(device), seeds.to(device), img_size,
                                            scale=FINETUNE_CROP_SCALE, flip=True, stream=FINETUNE_STREAM)
            with autocast_for(device, precision):
                logits = model(augment.normalize(x))
            loss = F.cross_entropy(logits.float(), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def correct_on(model: nn.Module, eval_set, batch_size: int, precision: str = "fp32") -> torch.Tensor:
    """Which images of ``eval_set`` the classifier ``model`` gets right: boolean ``(N,)`` CPU
    tensor in the set's order (the model is run in eval mode, its training flag restored)."""
    y_eval = labels_of(eval_set)
    device = device_of(model)
    correct = []
    with EvalMode(model), torch.no_grad():
        for images, idx in image_batches(eval_set, batch_size):
            with autocast_for(device, precision):
                pred = model(augment.normalize(images.to(device))).argmax(-1).cpu()
            correct.append(pred == y_eval[idx])
    return torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)


def batch_at(data, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return get_batch(data, idx)
