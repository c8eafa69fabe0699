"""One-pass analysis of a backbone over a data loader: per-depth means of every metric.

:func:`analyze` runs :func:`clvsmim.models.capture` once per batch and folds each batch into
running sums (weighted by the batch size), so memory stays at one batch of attention maps.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import Captured, Geometry, capture, geometry
from .attention import attention_statistics
from .tokens import diagonal_log_amplitude, per_image_spectra, token_cosine_similarity


#: Default ``spectrum_every`` of :func:`analyze`: the spectrum is a mean over images, and a
#: quarter of them keeps ``analyze`` near 1.3× a bare forward pass (benchmarks/analysis_speed.py).
DEFAULT_SPECTRUM_EVERY = 4
#: Precision of the per-image singular-value spectra in :func:`analyze` (the costliest metric):
#: float32 is ~1.6× faster than float64 on the CPU; normalised values are within ~1e-3.
SPECTRUM_DTYPE = torch.float32


def model_geometry(model: nn.Module) -> Geometry:
    """:func:`clvsmim.models.geometry`, checked to describe a square patch grid."""
    geo = geometry(model)
    if geo.grid[0] != geo.grid[1]:
        raise ValueError(f"analysis needs a square patch grid, found {geo.grid[0]}×{geo.grid[1]}")
    return geo


def _split_batch(batch, need_labels: bool):
    """``(images, labels or None)`` from a tensor or an ``(images, labels, …)`` tuple/list."""
    if isinstance(batch, torch.Tensor):
        images, labels = batch, None
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        images, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        raise ValueError(f"expected the loader to yield image tensors B×3×H×W or (images, labels) tuples, "
                         f"found {type(batch).__name__}")
    if images.ndim != 4:
        raise ValueError(f"expected an image batch of shape B×3×H×W, found shape {tuple(images.shape)}")
    if need_labels and labels is None:
        raise ValueError("expected the loader to yield (images, labels) tuples, found images only")
    return images, labels


def iterate_batches(loader, max_images: int | None, device, need_labels: bool = False):
    """Yield ``(images, labels)`` on ``device``, truncated so that at most ``max_images`` pass."""
    seen = 0
    for batch in loader:
        images, labels = _split_batch(batch, need_labels)
        if max_images is not None:
            images = images[: max_images - seen]
            labels = None if labels is None else labels[: len(images)]
        if len(images) == 0:
            break
        seen += len(images)
        yield images.to(device), labels
        if max_images is not None and seen >= max_images:
            break


def spectrum_selection(first_index: int, batch_size: int, every: int) -> torch.Tensor:
    """Positions in a batch whose global image index is a multiple of ``every``."""
    if every < 1:
        raise ValueError(f"spectrum_every must be >= 1, found {every}")
    offset = (-first_index) % every
    return torch.arange(offset, max(offset, batch_size), every)  # empty when the batch ends before offset


def batch_sums(captured: Captured, geo: Geometry, first_index: int = 0,
               spectrum_every: int = 1) -> dict[str, tuple[torch.Tensor, int]]:
    """Every metric of one captured batch, summed over its images: ``name -> (sum, count)``.

    Sums are float64 on the CPU. ``attention_distance``/``nmi``: ``L×H``; ``log_amplitude``:
    ``(L+1)×K`` (diagonal log amplitude, not yet centred); ``token_cosine``: ``L+1``;
    ``svd_spectrum``: ``(L+1)×R`` over the images whose global index (``first_index`` +
    position) is a multiple of ``spectrum_every`` (count may be 0).
    """
    p = geo.num_prefix_tokens
    batch = captured.hidden_states[0].shape[0]
    distance, nmi = zip(*(attention_statistics(a, geo.patch_size, p) for a in captured.attentions))
    states = captured.hidden_states
    chosen = spectrum_selection(first_index, batch, spectrum_every).to(states[0].device)
    per_depth = {
        "log_amplitude": ([diagonal_log_amplitude(z, p) for z in states], batch),
        "token_cosine": ([token_cosine_similarity(z, p) for z in states], batch),
        "attention_distance": (distance, batch),
        "nmi": (nmi, batch),
    }
    if len(chosen):  # every depth in ONE batched eigenproblem, spread over the CPU threads
        spectra = per_image_spectra(torch.stack([z[chosen] for z in states]), p, dtype=SPECTRUM_DTYPE,
                                    workers=torch.get_num_threads())
        per_depth["svd_spectrum"] = (list(spectra), len(chosen))
    return {name: (torch.stack([v.sum(0).double().cpu() for v in values]), count)
            for name, (values, count) in per_depth.items()}


def _check_captured(captured: Captured, geo: Geometry) -> None:
    """The capture must expose ``L`` attention maps and ``L+1`` hidden states."""
    if len(captured.attentions) != geo.depth or len(captured.hidden_states) != geo.depth + 1:
        raise RuntimeError(f"capture returned {len(captured.attentions)} attention maps and "
                           f"{len(captured.hidden_states)} hidden states; expected {geo.depth} and {geo.depth + 1}")


def _check_device(model: nn.Module, device) -> None:
    """The model's parameters must live on ``device`` (analyze does not move the model)."""
    param = next(model.parameters(), None)
    if param is not None and param.device.type != torch.device(device).type:
        raise ValueError(f"analyze: model is on {param.device} but device={device!r}; move the model first")


def summarise(means: dict[str, torch.Tensor], geo: Geometry, num_images: int, svd_num_images: int) -> dict:
    """The JSON-able result of :func:`analyze` from the per-image means of :func:`batch_sums`."""
    curves = means["log_amplitude"] - means["log_amplitude"][:, :1]
    return {
        "num_images": num_images,
        "depth": geo.depth,
        "num_heads": geo.num_heads,
        "patch_size": geo.patch_size,
        "grid": list(geo.grid),
        "num_prefix_tokens": geo.num_prefix_tokens,
        "attention_distance": {"per_head": means["attention_distance"].tolist(),
                               "mean": means["attention_distance"].mean(1).tolist()},
        "nmi": {"per_head": means["nmi"].tolist(), "mean": means["nmi"].mean(1).tolist()},
        "fourier": {"delta_log_amplitude": curves[:, -1].tolist(), "curves": curves.tolist()},
        "token_cosine": means["token_cosine"].tolist(),
        "svd_spectrum": means["svd_spectrum"].tolist(),
        "svd_num_images": svd_num_images,
    }


def analyze(model: nn.Module, loader, max_images: int | None = None, device: str | torch.device = "cpu",
            spectrum_every: int = DEFAULT_SPECTRUM_EVERY) -> dict:
    """Per-depth means over the images of ``loader`` of every attention/representation metric.

    ``loader`` yields normalised image batches ``B×3×H×W`` or ``(images, labels)`` tuples;
    ``model`` (a timm ViT, already on ``device``) is run in eval mode through ONE
    :func:`capture` per batch; batches are folded into running sums, so the result does not
    depend on how the images are split into batches. Means are over images (and over heads
    for ``"mean"``). The singular-value spectra (per image, an ``N×N`` eigenproblem: the
    costliest metric: ~0.2× a forward pass of ViT-S/16 on a 2-core CPU even in float32) use every
    ``spectrum_every``-th image (global index): every 4th by default, ``spectrum_every=1`` for all.

    Returns (``L`` blocks, ``H`` heads, ``K = h − h//2``, ``R = min(N, C)``)::

        num_images, depth (L), num_heads (H), patch_size, grid [h, w], num_prefix_tokens
        attention_distance: {per_head: L×H pixels, mean: L}      # entry l−1 = block l
        nmi:                {per_head: L×H, mean: L}
        fourier:            {delta_log_amplitude: L+1, curves: (L+1)×K}   # entry 0 = embeddings
        token_cosine:       L+1
        svd_spectrum:       (L+1)×R   # per image: centred, divided by the largest, averaged
        svd_num_images
    """
    geo = model_geometry(model)
    _check_device(model, device)
    spectrum_selection(0, 0, spectrum_every)  # validate early
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    num_images = 0
    was_training = model.training
    model.eval()
    try:
        for images, _ in iterate_batches(loader, max_images, device):
            captured = capture(model, images)
            _check_captured(captured, geo)
            for name, (value, count) in batch_sums(captured, geo, num_images, spectrum_every).items():
                sums[name] = sums[name] + value if name in sums else value
                counts[name] = counts.get(name, 0) + count
            num_images += len(images)
            del captured
    finally:
        model.train(was_training)
    if num_images == 0:
        raise ValueError("analyze: the loader yielded no images")
    means = {name: value / counts[name] for name, value in sums.items()}
    return summarise(means, geo, num_images, counts["svd_spectrum"])
