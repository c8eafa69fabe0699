"""Frozen features: pooled features and patch tokens of every depth (one analysis pass), the shared
probe recipe, and the final-depth linear probe."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import nn

from clvsmim.analysis import PatchTokens, PooledFeatures, analyze
from clvsmim.analysis.probe import accuracy_of, linear_probe_correct_per_layer, train_linear_probe
from clvsmim.config import EvalConfig
from clvsmim.data import augment, get_batch
from clvsmim.uncertainty import pack_correct

# --------------------------------------------------------------------------- helpers

def device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def labels_of(data) -> torch.Tensor:
    """Classification labels (int64, N) of a dataset; shape labels for the synthetic set."""
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"{type(data).__name__} has no `labels`")
    return torch.as_tensor(labels, dtype=torch.int64)


def num_classes_of(data, *label_sets: torch.Tensor) -> int:
    n = getattr(data, "num_classes", None)
    return int(n) if n is not None else int(max(int(y.max()) for y in label_sets)) + 1


def image_batches(data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(len(data), start + batch_size))
        images, _ = get_batch(data, idx)
        yield images, idx


class EvalMode:
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
    for images, idx in image_batches(images_uint8, batch_size):
        x = augment.to_float(images.to(device))
        if transform is not None:
            x = transform(x, idx)
        yield augment.normalize(x)


def _collect(encoder: nn.Module, images_uint8, batch_size: int, collectors: dict, transform=None,
             caller: str = "extract_features") -> dict:
    """Run ONE :func:`clvsmim.analysis.analyze` pass with ``collectors``; errors name ``caller``."""
    device = device_of(encoder)
    batches = _normalised_batches(images_uint8, batch_size, device, transform)
    try:
        return analyze(encoder, batches, collectors, device=device)
    except ValueError as exc:
        raise ValueError(f"{caller}: {exc}") from exc


def extract_pooled(encoder: nn.Module, images_uint8, batch_size: int, pools: Sequence[str] = ("mean",),
                   depths: Sequence[int] | None = None, transform=None) -> dict[str, list[torch.Tensor]]:
    """Pooled features of each depth for several poolings from ONE pass: ``{pool: [N×C float32
    CPU tensor per depth]}``.

    One :func:`clvsmim.analysis.analyze` pass (hidden states only) with one
    :class:`~clvsmim.analysis.PooledFeatures` collector per pooling in ``pools``
    (:data:`~clvsmim.analysis.tokens.POOL_MODES`). Arguments as :func:`extract_features`.
    """
    return extract_pooled_and_tokens(encoder, images_uint8, batch_size, pools, depths, transform=transform)[0]


def extract_pooled_and_tokens(encoder: nn.Module, images_uint8, batch_size: int, pools: Sequence[str] = ("mean",),
                              depths: Sequence[int] | None = None, token_positions: Sequence[int] | None = None,
                              transform=None) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor | None]:
    """:func:`extract_pooled` and, from the same pass, the last block's patch tokens of the images
    at ``token_positions`` (global indices, in that order): ``(pooled, tokens n×h·w×C or None)``.

    ``token_positions=None`` keeps no tokens. The evaluation reads the probes' features and the
    dense probe's tokens from one forward pass over each split (:func:`clvsmim.evaluation.evaluate_model`).
    """
    pools = list(dict.fromkeys(pools))
    if not pools:
        raise ValueError("extract_pooled: no pooling given")
    collectors: dict = {f"pool:{p}": PooledFeatures(p, depths) for p in pools}
    if token_positions is not None:
        collectors["tokens"] = PatchTokens([-1], positions=token_positions)
    found = _collect(encoder, images_uint8, batch_size, collectors, transform)
    tokens = found["tokens"][0] if token_positions is not None else None
    return {p: found[f"pool:{p}"][0] for p in pools}, tokens


def extract_features(encoder: nn.Module, images_uint8, batch_size: int, pool: str = "mean",
                     depths: Sequence[int] | None = None, transform=None) -> list[torch.Tensor]:
    """Pooled features of each depth: a list of float32 CPU tensors ``N×C``.

    images_uint8: ``N×3×H×W`` uint8 (or float in [0, 1]), or a dataset read with
    :func:`clvsmim.data.get_batch`. One :func:`clvsmim.analysis.analyze` pass (hidden states
    only) with a :class:`~clvsmim.analysis.PooledFeatures` collector; each depth is pooled with
    ``pool``: ``"mean"`` (default) = the mean of the patch tokens, ``"cls"`` = the CLS token,
    ``"cls_norm"`` = the CLS token through a LayerNorm without affine (MoCo v3's representation).
    ``depths``: which depths to return (0 = embeddings … L = last block; negative counts from
    the end); default all ``L+1``. ``transform(images01, indices)`` may perturb each batch
    (float in [0, 1]) before the ImageNet normalisation.
    """
    return extract_pooled(encoder, images_uint8, batch_size, (pool,), depths, transform)[pool]


def extract_tokens(encoder: nn.Module, images_uint8, batch_size: int, depth: int = -1) -> torch.Tensor:
    """Patch tokens (prefix tokens dropped) of one depth: float32 CPU ``N×h·w×C`` (row-major grid)."""
    return _collect(encoder, images_uint8, batch_size, {"t": PatchTokens([depth])}, caller="extract_tokens")["t"][0]


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


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred.cpu() == target.cpu()).double().mean()) if len(target) else float("nan")


# --------------------------------------------------------------------------- linear probe

def linear_probes(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig,
                  pools: Sequence[str] = ("mean", "cls_norm"), seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`linear_probe` of every pooling in ``pools``, ``{pool: result}``, from one feature
    pass per split (:func:`extract_pooled`; the probes: :func:`linear_probes_from_features`)."""
    f_train = extract_pooled(encoder, train_set, cfg.batch_size, pools)
    f_eval = extract_pooled(encoder, eval_set, cfg.batch_size, pools)
    return linear_probes_from_features(f_train, labels_of(train_set), f_eval, labels_of(eval_set), cfg, seed)


def linear_probes_from_features(f_train: dict[str, list[torch.Tensor]], y_train: torch.Tensor,
                                f_eval: dict[str, list[torch.Tensor]], y_eval: torch.Tensor, cfg: EvalConfig,
                                seed: int = 0) -> dict[str, dict[str, Any]]:
    """A probe per depth and pooling of pooled features ``{pool: [N×C per depth]}``: ``{pool: {"per_layer",
    "final", "best_depth", "pool", "correct_per_layer"}}``, the last holding per depth which evaluation
    images the probe got right (:func:`clvsmim.uncertainty.pack_correct`)."""
    if set(f_train) != set(f_eval):
        raise ValueError(f"linear probes: training features have poolings {sorted(f_train)}, "
                         f"evaluation features {sorted(f_eval)}")
    out = {}
    for pool in f_train:
        correct = linear_probe_correct_per_layer(f_train[pool], y_train, f_eval[pool], y_eval,
                                                 steps=cfg.probe_steps, lr=cfg.probe_lr, seed=seed)
        per_layer = [accuracy_of(c) for c in correct]
        best = max(range(len(per_layer)), key=lambda d: (per_layer[d], d))
        out[pool] = {"per_layer": per_layer, "final": per_layer[-1], "best_depth": int(best), "pool": pool,
                     "correct_per_layer": [pack_correct(c.numpy()) for c in correct]}
    return out


def linear_probe(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, pool: str = "mean",
                 seed: int = 0) -> dict[str, Any]:
    """Linear-probe accuracy of every depth (class = the dataset's label: the shape when synthetic).

    Returns ``{"per_layer": [acc at depth 0..L], "final": acc at depth L, "best_depth": int,
    "pool": pool}``; accuracies in [0, 1], the budget of :func:`clvsmim.analysis.linear_probe_per_layer`.
    """
    return linear_probes(encoder, train_set, eval_set, cfg, (pool,), seed)[pool]
