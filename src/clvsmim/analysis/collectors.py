"""Collectors: what one :func:`clvsmim.analysis.analyze` pass keeps from each captured batch.

:func:`~clvsmim.analysis.analyze` runs :func:`clvsmim.models.capture` ONCE per batch and hands
the :class:`~clvsmim.models.Captured` result to every collector. A collector says which parts
of the capture it reads (``attentions``, ``hidden_states``), folds each batch in
(:meth:`Collector.update`) and returns its result at the end (:meth:`Collector.result`).

=====================  ===================================================================
:class:`MetricSums`    per-depth means of every metric (distance, NMI, Fourier, cosine, SVD)
:class:`FourierSums`   per-depth Fourier Δ log amplitude curves only
:class:`PooledFeatures` mean-pooled (or CLS, or normed CLS) features ``N×C`` of chosen depths (probes)
:class:`PatchTokens`   patch tokens ``N×h·w×C`` of chosen depths, optionally of chosen images
:class:`QueryMaps`     attention maps of chosen query patches of one image at one block
=====================  ===================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from clvsmim.models import Captured, Geometry
from clvsmim.analysis.attention import attention_statistics, query_attention_map
from clvsmim.analysis.tokens import (POOL_MODES, diagonal_log_amplitude, per_image_spectra, pooled_features,
                                     token_cosine_similarity)

#: Precision of the per-image singular-value spectra (the costliest metric): float32 is ~1.6×
#: faster than float64 on the CPU; normalised values are within ~1e-3.
SPECTRUM_DTYPE = torch.float32


@dataclass(frozen=True)
class Batch:
    """One batch as a collector sees it: ``images`` ``B×3×H×W`` (normalised, on the model's
    device), ``labels`` ``B`` or None, ``first_index``: global index of ``images[0]``."""

    images: torch.Tensor
    labels: torch.Tensor | None
    first_index: int

    @property
    def positions(self) -> range:
        """Global indices of the batch's images."""
        return range(self.first_index, self.first_index + len(self.images))


def resolve_depths(depths: Sequence[int] | None, num_states: int) -> list[int]:
    """Depth indices in ``0..num_states-1`` (negative counts from the end; None = all)."""
    if depths is None:
        return list(range(num_states))
    out = []
    for d in depths:
        d = int(d)
        if not -num_states <= d < num_states:
            raise ValueError(f"depth {d} out of range for {num_states - 1} blocks (0..{num_states - 1})")
        out.append(d % num_states)
    return out


class Collector:
    """Base class: reads ``hidden_states`` only unless a subclass says otherwise.

    A collector with ``attentions`` and ``streams_attentions`` gets each block's attention
    weights in :meth:`observe_attention` during the forward pass instead of the stored list
    ``captured.attentions`` (empty then, unless another collector needs it): the maps are used
    while they are hot and never all held at once.
    """

    attentions = False
    streams_attentions = False
    hidden_states = True

    def start(self, geo: Geometry) -> None:
        """Called once before the first batch with the backbone's geometry."""
        self.geo = geo

    def observe_attention(self, block: int, attn: torch.Tensor, batch: Batch) -> None:  # pragma: no cover
        """Block ``block``'s (0-based) weights ``B×H×T×T`` of ``batch``, before :meth:`update`."""
        raise NotImplementedError

    def update(self, captured: Captured, batch: Batch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self):  # pragma: no cover - interface
        raise NotImplementedError


def spectrum_selection(first_index: int, batch_size: int, every: int) -> torch.Tensor:
    """Positions in a batch whose global image index is a multiple of ``every``."""
    if every < 1:
        raise ValueError(f"spectrum_every must be >= 1, found {every}")
    offset = (-first_index) % every
    return torch.arange(offset, max(offset, batch_size), every)  # empty when the batch ends before offset


def _sum_over_images(values) -> torch.Tensor:
    """Stack a per-depth list of per-image tensors and sum over images: float64 on the CPU."""
    return torch.stack([v.sum(0).double().cpu() for v in values])


def batch_sums(captured: Captured, geo: Geometry, first_index: int = 0, spectrum_every: int = 1,
               attention: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, tuple[torch.Tensor, int]]:
    """Every metric of one captured batch, summed over its images: ``name -> (sum, count)``.

    Sums are float64 on the CPU. ``attention_distance``/``nmi``: ``L×H``; ``log_amplitude``:
    ``(L+1)×K`` (diagonal log amplitude, not yet centred); ``token_cosine``: ``L+1``;
    ``svd_spectrum``: ``(L+1)×R`` over the images whose global index (``first_index`` +
    position) is a multiple of ``spectrum_every`` (absent when none is). ``attention``: the
    per-block ``(distance, nmi)`` of :func:`attention_statistics` when already computed
    (streamed), else they are computed from ``captured.attentions``.
    """
    p = geo.num_prefix_tokens
    batch = captured.hidden_states[0].shape[0]
    if attention is None:
        attention = [attention_statistics(a, geo.patch_size, p) for a in captured.attentions]
    distance, nmi = zip(*attention)
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
    return {name: (_sum_over_images(values), count) for name, (values, count) in per_depth.items()}


class _RunningSums(Collector):
    """Running ``name -> (sum, count)`` totals of per-image metrics over the batches."""

    def start(self, geo: Geometry) -> None:
        super().start(geo)
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.num_images = 0

    def add(self, totals: dict[str, tuple[torch.Tensor, int]], batch: Batch) -> None:
        for name, (value, count) in totals.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + count
        self.num_images += len(batch.images)

    def means(self) -> dict[str, torch.Tensor]:
        return {name: value / self.counts[name] for name, value in self.sums.items()}


class MetricSums(_RunningSums):
    """Per-depth means over images of every attention / representation metric.

    The result is the dict documented by :func:`clvsmim.analysis.analyze`. The singular-value
    spectra use every ``spectrum_every``-th image (global index).
    """

    attentions = True
    streams_attentions = True

    def __init__(self, spectrum_every: int = 4):
        spectrum_selection(0, 0, spectrum_every)  # validate early
        self.spectrum_every = spectrum_every
        self.streamed: list[tuple[torch.Tensor, torch.Tensor]] = []

    def observe_attention(self, block: int, attn: torch.Tensor, batch: Batch) -> None:
        if block == 0:
            self.streamed = []
        self.streamed.append(attention_statistics(attn, self.geo.patch_size, self.geo.num_prefix_tokens))

    def update(self, captured: Captured, batch: Batch) -> None:
        if len(self.streamed) != self.geo.depth:
            raise RuntimeError(f"MetricSums: {len(self.streamed)} streamed attention maps for {self.geo.depth} blocks")
        self.add(batch_sums(captured, self.geo, batch.first_index, self.spectrum_every, self.streamed), batch)
        self.streamed = []

    def result(self) -> dict:
        return summarise(self.means(), self.geo, self.num_images, self.counts.get("svd_spectrum", 0))


def summarise(means: dict[str, torch.Tensor], geo: Geometry, num_images: int, svd_num_images: int) -> dict:
    """The JSON-able result of :class:`MetricSums` from the per-image means of :func:`batch_sums`."""
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
        "svd_spectrum": means["svd_spectrum"].tolist() if "svd_spectrum" in means else [],
        "svd_num_images": svd_num_images,
    }


class FourierSums(_RunningSums):
    """Per-depth Fourier curves (mean log amplitude over images, minus the centre).

    Result: ``(L+1)×K`` float64 tensor; column ``-1`` is the Δ log amplitude of each depth.
    """

    def update(self, captured: Captured, batch: Batch) -> None:
        p = self.geo.num_prefix_tokens
        sums = _sum_over_images([diagonal_log_amplitude(z, p) for z in captured.hidden_states])
        self.add({"log_amplitude": (sums, len(batch.images))}, batch)

    def result(self) -> torch.Tensor:
        if not self.num_images:
            raise ValueError("FourierSums: no images")
        curve = self.means()["log_amplitude"]
        return curve - curve[:, :1]


class PooledFeatures(Collector):
    """Pooled features of chosen depths: ``(list of N×C float32 CPU tensors, labels N or None)``.

    ``mode``: one of :data:`~clvsmim.analysis.tokens.POOL_MODES` — ``"mean"`` (mean of the patch
    tokens), ``"cls"`` (token 0) or ``"cls_norm"`` (token 0, LayerNorm without affine; see
    :func:`~clvsmim.analysis.tokens.pooled_features`); ``depths``: which depths (0 = embeddings
    … L; negative from the end); default all ``L+1``. Two collectors of different modes share
    one :func:`~clvsmim.analysis.analyze` pass.
    """

    def __init__(self, mode: str = "mean", depths: Sequence[int] | None = None):
        if mode not in POOL_MODES:
            raise ValueError(f"PooledFeatures: mode must be one of {POOL_MODES}, found {mode!r}")
        self.mode, self.depths = mode, depths

    def start(self, geo: Geometry) -> None:
        super().start(geo)
        self.chosen = resolve_depths(self.depths, geo.depth + 1)
        self.buckets: list[list[torch.Tensor]] = [[] for _ in self.chosen]
        self.labels: list[torch.Tensor] = []

    def update(self, captured: Captured, batch: Batch) -> None:
        states = [captured.hidden_states[d] for d in self.chosen]
        for bucket, feats in zip(self.buckets, pooled_features(states, self.mode, self.geo.num_prefix_tokens)):
            bucket.append(feats.float().cpu())
        if batch.labels is not None:
            self.labels.append(batch.labels.cpu())

    def result(self) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if not self.buckets or not self.buckets[0]:
            raise ValueError("PooledFeatures: no images")
        labels = torch.cat(self.labels) if self.labels else None
        return [torch.cat(b) for b in self.buckets], labels


class PatchTokens(Collector):
    """Patch tokens (prefix dropped) of chosen depths: a list of float32 CPU ``n×h·w×C``.

    ``positions``: the global image indices to keep (in the order given); default: every image.
    """

    def __init__(self, depths: Sequence[int] | None = (-1,), positions: Sequence[int] | None = None):
        self.depths = depths
        self.positions = None if positions is None else [int(i) for i in positions]
        self.wanted = None if positions is None else set(self.positions)

    def start(self, geo: Geometry) -> None:
        super().start(geo)
        self.chosen = resolve_depths(self.depths, geo.depth + 1)
        self.kept: dict[int, list[torch.Tensor]] = {}

    def update(self, captured: Captured, batch: Batch) -> None:
        p = self.geo.num_prefix_tokens
        wanted = batch.positions if self.wanted is None else [i for i in batch.positions if i in self.wanted]
        rows = [i - batch.first_index for i in wanted]
        if not rows:
            return
        tokens = [captured.hidden_states[d][rows, p:].float().cpu() for d in self.chosen]
        for j, i in enumerate(wanted):
            self.kept[i] = [t[j] for t in tokens]

    def result(self) -> list[torch.Tensor]:
        order = sorted(self.kept) if self.positions is None else [i for i in self.positions if i in self.kept]
        if not order:
            raise ValueError("PatchTokens: no images")
        return [torch.stack([self.kept[i][k] for i in order]) for k in range(len(self.chosen))]


class QueryMaps(Collector):
    """Attention maps of ``queries`` ((row, col) patches) in image ``position`` at ``block``
    (1-based; negative counts from the end, default -1 = the last block): float64
    ``Q×H×h×w``, or None when the image never came."""

    attentions = True
    hidden_states = False

    def __init__(self, queries: Sequence[tuple[int, int]], block: int = -1, position: int = 0):
        if block == 0:
            raise ValueError("QueryMaps: block is 1-based (or negative from the end), found 0")
        self.queries, self.block, self.position = [tuple(q) for q in queries], int(block), int(position)
        self.maps: torch.Tensor | None = None

    def update(self, captured: Captured, batch: Batch) -> None:
        if self.position not in batch.positions:
            return
        row = self.position - batch.first_index
        attn = captured.attentions[self.block - 1 if self.block > 0 else self.block][row:row + 1]
        self.maps = torch.stack([query_attention_map(attn, q, self.geo.num_prefix_tokens)[0]
                                 for q in self.queries]).double().cpu()

    def result(self) -> torch.Tensor | None:
        return self.maps
