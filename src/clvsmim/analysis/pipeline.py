"""One-pass analysis of a backbone over batches: :func:`analyze` feeds pluggable collectors.

:func:`analyze` runs :func:`clvsmim.models.capture` ONCE per batch and hands the capture to
every collector of :mod:`clvsmim.analysis.collectors` (metric sums, pooled features for probes,
patch tokens for t-SNE and clustering, query maps), so memory stays at one batch of attention
maps and every consumer (``clvsmim analyze``, evaluation, claims, chapters) shares one loop.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from clvsmim.models import Captured, Geometry, capture, square_geometry
from clvsmim.analysis.collectors import Batch, Collector, MetricSums, batch_sums, spectrum_selection, summarise

__all__ = ["analyze", "iterate_batches", "batch_sums", "spectrum_selection", "summarise",
           "DEFAULT_SPECTRUM_EVERY"]

#: Default ``spectrum_every`` of :func:`analyze`: the spectrum is a mean over images, and a
#: quarter of them keeps ``analyze`` near 1.3× a bare forward pass (benchmarks/analysis_speed.py).
DEFAULT_SPECTRUM_EVERY = 4


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


def _check_captured(captured: Captured, geo: Geometry, attentions: bool, hidden_states: bool) -> None:
    """The capture must expose ``L`` attention maps and ``L+1`` hidden states (those asked for)."""
    if (hidden_states and len(captured.hidden_states) != geo.depth + 1) or \
            (attentions and len(captured.attentions) != geo.depth):
        raise RuntimeError(f"capture returned {len(captured.attentions)} attention maps and "
                           f"{len(captured.hidden_states)} hidden states; expected {geo.depth} and {geo.depth + 1}")


def _check_device(model: nn.Module, device) -> None:
    """The model's parameters must live on ``device`` (analyze does not move the model)."""
    param = next(model.parameters(), None)
    if param is not None and param.device.type != torch.device(device).type:
        raise ValueError(f"analyze: model is on {param.device} but device={device!r}; move the model first")


def analyze(model: nn.Module, batches: Iterable, collectors: Mapping[str, Collector] | None = None, *,
            max_images: int | None = None, device: str | torch.device = "cpu",
            spectrum_every: int = DEFAULT_SPECTRUM_EVERY):
    """ONE :func:`capture` per batch of ``batches``, fed to every collector.

    ``batches`` yields normalised images ``B×3×H×W`` or ``(images, labels)`` tuples; at most
    ``max_images`` are used. ``model`` (a timm ViT / BEiT, already on ``device``) runs in eval
    mode, restored afterwards. The capture records attention maps (hidden states) only when a
    collector reads them. With ``collectors`` (name → :class:`~clvsmim.analysis.collectors.Collector`), returns
    ``{name: collector.result()}``. Without, returns the per-depth means of every metric
    (:class:`~clvsmim.analysis.collectors.MetricSums`); batches are folded into running sums,
    so the result does not depend on how the images are split into batches. The singular-value
    spectra (per image an ``N×N`` eigenproblem, the costliest metric) use every
    ``spectrum_every``-th image (global index): every 4th by default, 1 for all.

    The metrics (``L`` blocks, ``H`` heads, ``K = h − h//2``, ``R = min(N, C)``)::

        num_images, depth (L), num_heads (H), patch_size, grid [h, w], num_prefix_tokens
        attention_distance: {per_head: L×H pixels, mean: L}      # entry l−1 = block l
        nmi:                {per_head: L×H, mean: L}
        fourier:            {delta_log_amplitude: L+1, curves: (L+1)×K}   # entry 0 = embeddings
        token_cosine:       L+1
        svd_spectrum:       (L+1)×R   # per image: centred, divided by the largest, averaged
        svd_num_images
    """
    metrics_only = collectors is None
    if metrics_only:
        collectors = {"metrics": MetricSums(spectrum_every)}
    geo = square_geometry(model)
    _check_device(model, device)
    streamers = [c for c in collectors.values() if c.attentions and c.streams_attentions]
    attentions = any(c.attentions and not c.streams_attentions for c in collectors.values())
    hidden_states = any(c.hidden_states for c in collectors.values())
    for c in collectors.values():
        c.start(geo)
    num_images = 0
    was_training = model.training
    model.eval()
    try:
        for images, labels in iterate_batches(batches, max_images, device):
            batch = Batch(images, labels, num_images)

            def stream(block: int, attn: torch.Tensor, batch: Batch = batch) -> None:
                for c in streamers:
                    c.observe_attention(block, attn, batch)

            captured = capture(model, images, attentions=attentions, hidden_states=hidden_states,
                               on_attention=stream if streamers else None)
            _check_captured(captured, geo, attentions, hidden_states)
            for c in collectors.values():
                c.update(captured, batch)
            num_images += len(images)
            del captured
    finally:
        model.train(was_training)
    if num_images == 0:
        raise ValueError("analyze: the loader yielded no images")
    results = {name: c.result() for name, c in collectors.items()}
    return results["metrics"] if metrics_only else results
