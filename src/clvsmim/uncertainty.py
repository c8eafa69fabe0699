"""Standard errors of the claims' statistics, and the three-way verdict rule.

Two kinds of statistic, two kinds of standard error (SE):

* **means over the analysis images** (C1 attention distance, C2 NMI, C3 token cosine, C4
  Fourier Δ log amplitude, C5 silhouette): every one is the mean over images of a per-image
  value (:func:`per_image_statistics` computes those values, cached next to the model). The
  SE of a difference between two models on the *same* images is the bootstrap SE over images
  of the paired difference (:func:`paired_bootstrap_se`); for C5 the per-image value is the
  mean silhouette of that image's tokens (their mean is the silhouette score; the bootstrap
  treats images as independent, which ignores that a token's silhouette depends on the others);
* **rates** (accuracies, the shape bias): the binomial SE ``sqrt(p(1−p)/n)``; differences of
  rates from different models add the variances (:func:`rate_difference_se`).

Verdict rule (:func:`three_way`), with ``value`` the signed difference in the paper's
direction, ``se`` its SE and ``margin`` the claim's own margin: the threshold is
``max(margin, Z·se)`` (``Z = 2``); ``value > threshold`` → *holds*, ``value < −threshold`` →
*reversed*, otherwise *tie*. Without an SE (old caches, hand-made inputs) the threshold is the
margin alone and the claim's reason says so.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from clvsmim.analysis.attention import attention_statistics
from clvsmim.analysis.collectors import Collector
from clvsmim.analysis.tokens import cosine_silhouette_samples, diagonal_log_amplitude, token_cosine_similarity

__all__ = ["Z", "BOOTSTRAP_SAMPLES", "PER_IMAGE_FORMAT", "bootstrap_se", "paired_bootstrap_se", "binomial_se",
           "rate_difference_se", "threshold", "three_way", "per_image_statistics",
           "per_image_values"]

#: How many standard errors a difference must exceed to count.
Z = 2.0
BOOTSTRAP_SAMPLES = 2000
#: Bump when :func:`per_image_statistics` changes its recipe.
PER_IMAGE_FORMAT = 1


def bootstrap_se(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> float:
    """Bootstrap SE of the mean of ``values`` (one per image): the standard deviation of the means
    of ``samples`` resamples with replacement (fixed ``seed``: deterministic). NaN for < 2 values."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(x) < 2 or not np.all(np.isfinite(x)):
        return float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(samples, len(x)))
    return float(x[idx].mean(axis=1).std(ddof=1))


def paired_bootstrap_se(a: Sequence[float], b: Sequence[float], samples: int = BOOTSTRAP_SAMPLES,
                        seed: int = 0) -> float:
    """Bootstrap SE over images of ``mean(a) − mean(b)`` when ``a[i]`` and ``b[i]`` are measured
    on the same image ``i`` (the images are resampled together)."""
    a, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_se: need one value per image for both, got {a.shape} and {b.shape}")
    return bootstrap_se(a - b, samples, seed)


def binomial_se(p: float, n: int) -> float:
    """``sqrt(p(1−p)/n)``: the SE of a rate ``p`` measured on ``n`` independent trials."""
    if n <= 0:
        raise ValueError(f"binomial_se: need n > 0 trials, got {n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial_se: a rate must lie in [0, 1], got {p}")
    return math.sqrt(p * (1.0 - p) / n)


def rate_difference_se(rates: Sequence[float], counts: Sequence[int]) -> float:
    """SE of a sum / difference of independent rates: ``sqrt(Σ p(1−p)/n)``."""
    if len(rates) != len(counts):
        raise ValueError(f"rate_difference_se: {len(rates)} rates but {len(counts)} counts")
    return math.sqrt(sum(binomial_se(p, n) ** 2 for p, n in zip(rates, counts)))


def threshold(margin: float, se: float | None) -> float:
    """``max(margin, Z·se)``; the margin alone when ``se`` is missing or not finite."""
    return max(margin, Z * se) if se is not None and math.isfinite(se) else margin


def three_way(value: float, se: float | None, margin: float) -> str:
    """``"holds"`` (beyond the threshold in the paper's direction), ``"reversed"`` (beyond it
    the other way) or ``"tie"`` (within ``max(margin, Z·se)``)."""
    t = threshold(margin, se)
    if value > t:
        return "holds"
    if value < -t:
        return "reversed"
    return "tie"


# --------------------------------------------------------------------------- per-image values

def per_image_values(per_image: dict[str, Any] | None, metric: str, depths: Sequence[int]) -> np.ndarray | None:
    """Per-image mean of ``metric`` over ``depths`` (indices into its per-depth list), ``(n,)``;
    None when absent (an old cache, a hand-made bundle)."""
    rows = (per_image or {}).get(metric)
    if not rows:
        return None
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim == 1:
        return x
    return x[:, list(depths)].mean(axis=1)


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


def per_image_statistics(ref, device: str = "auto", n: int | None = None) -> dict[str, Any]:
    """Per-image values behind C1–C5, on :func:`clvsmim.book.report.analysis_images`, cached as JSON
    next to the model. ``{"num_images": n, "attention_distance": n×L (mean over heads),
    "nmi": n×L, "token_cosine": n×(L+1), "fourier_delta": n×(L+1) (highest minus zero
    frequency of the diagonal log amplitude; its mean over images is the analysis' Δ log
    amplitude), "silhouette": n (mean silhouette of the image's tokens at the last depth)}``."""
    from clvsmim.claims import cached_json, model_cache_path

    n = n or ref.profile.eval.num_analysis_images
    path = model_cache_path(ref, "perimage", {"format": PER_IMAGE_FORMAT, "n": n})

    def compute() -> dict[str, Any]:
        from clvsmim.book.report import analysis_pass

        return analysis_pass(ref, {"rows": PerImageMetrics()}, device, n)["rows"]

    return cached_json(path, compute)
