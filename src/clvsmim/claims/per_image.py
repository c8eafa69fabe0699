"""Per-image values behind the claims C1–C5, so that a difference between two models gets a
paired bootstrap standard error over images (:func:`clvsmim.uncertainty.paired_bootstrap_se`):
one :func:`clvsmim.analysis.analyze` pass with the :class:`PerImageMetrics` collector, cached as
JSON next to the model."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clvsmim.analysis.attention import attention_statistics
from clvsmim.analysis.collectors import Collector
from clvsmim.analysis.tokens import cosine_silhouette_samples, diagonal_log_amplitude, token_cosine_similarity
from clvsmim.book.report import analysis_pass, model_cache_path
from clvsmim.cache import cached_json
from clvsmim.methods import ModelRef

__all__ = ["PER_IMAGE_FORMAT", "PerImageMetrics", "per_image_statistics"]

#: Bump when :func:`per_image_statistics` changes its recipe.
PER_IMAGE_FORMAT = 1


class PerImageMetrics(Collector):
    """Per image: attention distance and NMI per block (mean over heads), token cosine and the
    Fourier Δ (highest minus zero frequency of the diagonal log amplitude) per depth, and the
    last-depth patch tokens (for each image's silhouette). Result: lists of per-image rows."""

    attentions = True

    def start(self, geo) -> None:
        super().start(geo)
        self.rows: dict[str, list[torch.Tensor]] = {"attention_distance": [], "nmi": [], "token_cosine": [],
                                                    "fourier_delta": []}
        self.last: list[torch.Tensor] = []

    def update(self, captured, batch) -> None:
        geo, p = self.geo, self.geo.num_prefix_tokens
        dist, nmi = zip(*(attention_statistics(a, geo.patch_size, p) for a in captured.attentions))
        self.rows["attention_distance"].append(torch.stack([d.mean(1) for d in dist], 1).double().cpu())
        self.rows["nmi"].append(torch.stack([v.mean(1) for v in nmi], 1).double().cpu())
        states = captured.hidden_states
        self.rows["token_cosine"].append(torch.stack([token_cosine_similarity(z, p) for z in states], 1).double().cpu())
        amp = [diagonal_log_amplitude(z, p) for z in states]
        self.rows["fourier_delta"].append(torch.stack([a[:, -1] - a[:, 0] for a in amp], 1).double().cpu())
        self.last.append(states[-1][:, p:].float().cpu())

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: torch.cat(v).tolist() for k, v in self.rows.items()}
        tokens = torch.cat(self.last)  # (n, N, C)
        ids = np.repeat(np.arange(tokens.shape[0]), tokens.shape[1])
        s = cosine_silhouette_samples(tokens.reshape(-1, tokens.shape[-1]).numpy(), ids)
        out["silhouette"] = s.reshape(tokens.shape[0], tokens.shape[1]).mean(axis=1).tolist()
        out["num_images"] = int(tokens.shape[0])
        return out


def per_image_statistics(ref: ModelRef, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """Per-image values behind C1–C5, on :func:`clvsmim.book.report.analysis_images`, cached as JSON
    next to the model. ``{"num_images": n, "attention_distance": n×L (mean over heads),
    "nmi": n×L, "token_cosine": n×(L+1), "fourier_delta": n×(L+1) (highest minus zero
    frequency of the diagonal log amplitude; its mean over images is the analysis' Δ log
    amplitude), "silhouette": n (mean silhouette of the image's tokens at the last depth)}``."""
    n = n or ref.profile.eval.num_analysis_images
    path = model_cache_path(ref, "perimage", {"format": PER_IMAGE_FORMAT, "n": n})

    def compute() -> dict[str, Any]:
        return analysis_pass(ref, {"rows": PerImageMetrics()}, device, n)["rows"]

    return cached_json(path, compute)
