"""Linear probing of every depth on frozen features, with one identical budget per layer.

Default features are **mean-pooled patch tokens** (as SimMIM's authors probe); the CLS
token is available with ``mode="cls"``. Hidden states are the raw block outputs captured by
:func:`clvsmim.models.capture` (depth 0 = embeddings), without the backbone's final norm;
the probe standardises every feature with the training set's mean and std.
"""
from __future__ import annotations

import torch
from torch import nn

from clvsmim.analysis.collectors import PooledFeatures
from clvsmim.analysis.pipeline import analyze
from clvsmim.analysis.tokens import pooled_features  # noqa: F401  (re-exported: the probe's pooling)


def collect_pooled_features(model: nn.Module, loader, mode: str = "mean", max_images: int | None = None,
                            device: str | torch.device = "cpu") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Pooled features of every depth over a labelled loader: (``L+1`` tensors ``N×C``, labels ``N``).

    ``loader`` yields ``(images, labels)``; one :func:`~clvsmim.analysis.analyze` pass (no
    attention maps) with a :class:`~clvsmim.analysis.collectors.PooledFeatures` collector.
    """
    features, labels = analyze(model, loader, {"pooled": PooledFeatures(mode)}, max_images=max_images,
                               device=device)["pooled"]
    if labels is None or len(labels) != len(features[0]):
        raise ValueError("expected the loader to yield (images, labels) tuples, found images only")
    return features, labels


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both with the training mean/std (per feature, std floored at 1e-6)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def _check_probe_inputs(features_train, y_train, features_test, y_test) -> None:
    """Same number of depths, one label per sample, matching widths; else ``ValueError``."""
    if len(features_train) != len(features_test) or not features_train:
        raise ValueError(f"linear_probe_per_layer: expected the same non-zero number of depths for train and "
                         f"test, found {len(features_train)} and {len(features_test)}")
    for depth, (tr, te) in enumerate(zip(features_train, features_test)):
        if tr.ndim != 2 or te.ndim != 2 or tr.shape[1] != te.shape[1]:
            raise ValueError(f"linear_probe_per_layer: depth {depth}: expected N×C features with equal C, "
                             f"found train {tuple(tr.shape)} and test {tuple(te.shape)}")
        if tr.shape[0] != len(y_train) or te.shape[0] != len(y_test):
            raise ValueError(f"linear_probe_per_layer: depth {depth}: expected one label per sample, found "
                             f"{tr.shape[0]}/{len(y_train)} (train) and {te.shape[0]}/{len(y_test)} (test)")


def train_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int, lr: float, seed: int,
                       weight_decay: float = 0.0, batch_size: int | None = None) -> nn.Linear:
    """AdamW + cosine-decayed lr on cross-entropy for ``steps`` steps; zero-initialised weights.

    Full batch when ``batch_size`` is None (fully deterministic); otherwise mini-batches
    drawn from a ``torch.Generator`` seeded with ``seed``.
    """
    probe = nn.Linear(x.shape[1], num_classes, device=x.device, dtype=x.dtype)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(steps):
            if batch_size is None or batch_size >= len(x):
                xb, yb = x, y
            else:
                idx = torch.randint(len(x), (batch_size,), generator=gen).to(x.device)
                xb, yb = x[idx], y[idx]
            loss = nn.functional.cross_entropy(probe(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe


def linear_probe_per_layer(features_train: list[torch.Tensor], y_train: torch.Tensor,
                           features_test: list[torch.Tensor], y_test: torch.Tensor, steps: int, lr: float,
                           seed: int, *, weight_decay: float = 0.0, batch_size: int | None = None) -> list[float]:
    """Test accuracy (in [0, 1]) of a linear classifier trained on each depth's features.

    ``features_*`` are lists (one entry per depth) of ``N×C`` tensors, e.g. from
    :func:`collect_pooled_features`; ``y_*`` are integer labels ``N``. Every depth gets the
    identical budget: standardised features, zero-initialised ``nn.Linear``, AdamW with
    cosine-decayed ``lr``, ``steps`` full-batch steps (or mini-batches of ``batch_size``
    sampled with ``seed``). Deterministic for fixed inputs.
    """
    correct = linear_probe_correct_per_layer(features_train, y_train, features_test, y_test, steps, lr, seed,
                                             weight_decay=weight_decay, batch_size=batch_size)
    return [accuracy_of(c) for c in correct]


def accuracy_of(correct: torch.Tensor) -> float:
    """The accuracy of a boolean per-image correctness vector (NaN when it is empty)."""
    return float(correct.double().mean()) if len(correct) else float("nan")


def linear_probe_correct_per_layer(features_train: list[torch.Tensor], y_train: torch.Tensor,
                                   features_test: list[torch.Tensor], y_test: torch.Tensor, steps: int, lr: float,
                                   seed: int, *, weight_decay: float = 0.0,
                                   batch_size: int | None = None) -> list[torch.Tensor]:
    """:func:`linear_probe_per_layer`'s probes, per test image: one boolean ``(N_test,)`` CPU
    tensor per depth, True where the probe of that depth predicts the label (their means are the
    accuracies). Paired standard errors of accuracy differences read these."""
    _check_probe_inputs(features_train, y_train, features_test, y_test)
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    correct = []
    for tr, te in zip(features_train, features_test):
        x_tr, x_te = _standardise(tr.detach().float(), te.detach().float())
        probe = train_linear_probe(x_tr, y_train.to(x_tr.device), num_classes, steps, lr, seed,
                                   weight_decay, batch_size)
        with torch.no_grad():
            pred = probe(x_te).argmax(-1).cpu()
        correct.append(pred == y_test.cpu())
    return correct
