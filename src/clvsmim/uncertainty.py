"""Standard errors of the claims' statistics, and the three-way verdict rule.

Two kinds of statistic, two kinds of standard error (SE):

* **means over the analysis images** (C1 attention distance, C2 NMI, C3 token cosine, C4
  Fourier Δ log amplitude, C5 silhouette): every one is the mean over images of a per-image
  value (:func:`clvsmim.claims.per_image.per_image_statistics` computes those values, cached next
  to the model). The SE of a difference between two models on the *same* images is the bootstrap SE over images
  of the paired difference (:func:`paired_bootstrap_se`); for C5 the per-image value is the
  mean silhouette of that image's tokens (their mean is the silhouette score; the bootstrap
  treats images as independent, which ignores that a token's silhouette depends on the others);
* **rates** (accuracies, the shape bias): the binomial SE ``sqrt(p(1−p)/n)``. A contrast of
  accuracies measured on the *same* evaluation images (CL − MIM, a depth against another, a gain
  against a gain) is a mean over images of ``Σ wₖ·correctₖ[i]``: its SE is that per-image value's
  standard deviation over √n (:func:`paired_rate_contrast_se`, from the per-image correctness an
  evaluation records, :func:`pack_correct`). Without per-image records (an old cache, a hand-made
  input) the variances are added as if the rates came from different images
  (:func:`rate_difference_se`), which overstates the SE where two models get the same images right.

Verdict rule (:func:`three_way`), with ``value`` the signed difference in the paper's
direction, ``se`` its SE and ``margin`` the claim's own margin: the threshold is
``max(margin, Z·se)`` (``Z = 2``); ``value > threshold`` → *holds*, ``value < −threshold`` →
*reversed*, otherwise *tie*. Without an SE (old caches, hand-made inputs) the threshold is the
margin alone and the claim's reason says so.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import numpy as np

__all__ = ["Z", "BOOTSTRAP_SAMPLES", "bootstrap_se", "paired_bootstrap_se", "binomial_se", "rate_difference_se",
           "paired_rate_contrast_se", "pack_correct", "unpack_correct", "threshold", "three_way", "per_image_values"]

#: How many standard errors a difference must exceed to count.
Z = 2.0
BOOTSTRAP_SAMPLES = 2000


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


def paired_rate_contrast_se(correct: Sequence[Sequence[bool]], weights: Sequence[float]) -> float:
    """SE of ``Σ wₖ·accuracyₖ`` when every accuracy is measured on the same ``n`` images:
    ``correct[k][i]`` says whether classifier ``k`` got image ``i`` right. The per-image value
    ``dᵢ = Σ wₖ·correct[k][i]`` has mean ``Σ wₖ·accuracyₖ``; the SE is ``sqrt(mean((d − d̄)²)/n)``
    (the binomial formula's convention: a single rate, ``weights=[1]``, gives ``binomial_se``)."""
    if len(correct) != len(weights) or not correct:
        raise ValueError(f"paired_rate_contrast_se: {len(correct)} correctness vectors but {len(weights)} weights")
    rows = [np.asarray(c, dtype=np.float64).reshape(-1) for c in correct]
    n = len(rows[0])
    if n == 0 or any(len(r) != n for r in rows):
        raise ValueError(f"paired_rate_contrast_se: need one value per image for every classifier on the same "
                         f"non-empty images, found lengths {[len(r) for r in rows]}")
    d = sum(w * r for w, r in zip(weights, rows))
    return float(math.sqrt(d.var() / n))


def pack_correct(correct: Sequence[bool]) -> dict[str, Any]:
    """Per-image correctness as strict JSON: ``{"num_images": n, "bits": base64 of the packed bits}``
    (2,048 images: 344 characters)."""
    bits = np.asarray(correct, dtype=bool).reshape(-1)
    return {"num_images": int(len(bits)), "bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}


def unpack_correct(record: dict[str, Any] | None) -> np.ndarray | None:
    """The boolean ``(n,)`` vector of :func:`pack_correct`'s record; None for None (not recorded).
    A record whose bits do not hold ``num_images`` values is an error that names both sizes."""
    if record is None:
        return None
    n = int(record["num_images"])
    raw = np.frombuffer(base64.b64decode(record["bits"]), dtype=np.uint8)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-image correctness record: {len(raw)} bytes of bits cannot hold num_images={n} "
                         f"(expected {(n + 7) // 8})")
    return np.unpackbits(raw)[:n].astype(bool)


def runs_of(record: Any) -> list[np.ndarray] | None:
    """The per-image correctness of every run behind an accuracy: a packed record is one run, a
    list of ``{"correct": packed}`` runs (``finetune_runs``) several; None where one is missing."""
    if isinstance(record, list):
        runs = [unpack_correct(r.get("correct")) if isinstance(r, dict) else None for r in record]
        return runs if runs and all(r is not None for r in runs) else None
    one = unpack_correct(record)
    return None if one is None else [one]


def accuracy_contrast_se(terms: Sequence[tuple[float, Any, dict | list | None]], num_eval: int | None = None
                         ) -> tuple[float | None, str | None]:
    """SE of ``Σ weight·accuracy`` over ``terms`` = ``[(weight ±1, accuracy, packed per-image
    correctness, or a list of runs ``[{"correct": packed}, ...]`` whose mean the accuracy is, or
    None), ...]`` and how it was computed: ``"paired"`` over the evaluation images when every term
    has its per-image record (:func:`paired_rate_contrast_se`; a term of
    several runs counts each image by the fraction of runs that get it right), ``"paired+runs"``
    when a term has several runs — then each such term adds its runs' accuracy variance / number of
    runs (the fine-tune's own randomness, which one run cannot show) —, else ``"binomial"`` on
    ``num_eval`` images as if the accuracies were independent, else ``(None, None)``."""
    rates = [acc for _, acc, _ in terms]
    runs = [runs_of(rec) for _, _, rec in terms]
    if all(r is not None for r in runs) and len({len(c) for r in runs for c in r}) == 1:
        weights = [w for w, _, _ in terms]
        per_image = [np.mean(np.stack(r).astype(np.float64), axis=0) for r in runs]
        se = paired_rate_contrast_se(per_image, weights)
        if all(len(r) == 1 for r in runs):
            return se, "paired"
        run_var = sum(w * w * float(np.var([c.mean() for c in r], ddof=1)) / len(r)
                      for w, r in zip(weights, runs) if len(r) > 1)
        return math.sqrt(se * se + run_var), "paired+runs"
    if num_eval and all(r is not None and 0 <= r <= 1 for r in rates):
        return rate_difference_se(rates, [num_eval] * len(rates)), "binomial"
    return None, None


def finetune_record(evaluation: dict[str, Any] | None) -> dict | list | None:
    """What :func:`accuracy_contrast_se` reads for a zoo evaluation's fine-tuning accuracy: every
    run's per-image record when the fine-tune was repeated (``finetune_runs``: the accuracy is their
    mean), else the one run's (``finetune_correct``); None where none is recorded."""
    if not evaluation:
        return None
    return evaluation.get("finetune_runs") or evaluation.get("finetune_correct")


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
