"""Shape vs texture bias on cue-conflict images and robustness to band-limited noise, both through
linear probes."""
from __future__ import annotations

import math

import torch
from torch import nn

from clvsmim.config import EvalConfig
from clvsmim.data import EVAL_SEED_OFFSET, load_synthetic
from clvsmim.evaluation.features import accuracy, extract_features, labels_of, num_classes_of, probe_predict
from clvsmim.models import geometry
from clvsmim.rng import hash_normal, sample_seed

# --------------------------------------------------------------------------- shape vs texture

#: (aligned training images, conflict evaluation images) of the shape-vs-texture probe (upper bounds).
SHAPE_TEXTURE_SIZES = (2048, 1024)
#: Noise band split, as a fraction of the Nyquist frequency (radial), and its RMS in [0, 1] pixel units.
NOISE_CUTOFF = 0.5
NOISE_STRENGTH = 0.1
NOISE_STEP = 0x0015E  # "step" of the noise's per-sample seeds (separates it from other uses)

def shape_bias_from_predictions(pred, shape_label, texture_label) -> dict[str, float]:
    """Shape bias of classifier decisions on cue-conflict images.

    ``texture_label`` is the class whose texture the image carries (in the synthetic data
    class ``k`` <-> texture ``k``, so it is the foreground texture index).
    ``shape_bias = #(pred == shape) / (#(pred == shape) + #(pred == texture class))``
    (NaN when no decision matches either cue); ``shape_acc`` / ``texture_acc`` are the
    fractions of all decisions that match each cue.
    """
    pred, shape, texture = (torch.as_tensor(v).long().reshape(-1) for v in (pred, shape_label, texture_label))
    if not (len(pred) == len(shape) == len(texture)):
        raise ValueError(f"need equal lengths, got {len(pred)}, {len(shape)}, {len(texture)}")
    shape_hits = int((pred == shape).sum())
    texture_hits = int(((pred == texture) & (texture != shape)).sum())
    decided = shape_hits + texture_hits
    n = max(len(pred), 1)
    return {"shape_bias": shape_hits / decided if decided else float("nan"),
            "shape_acc": shape_hits / n, "texture_acc": int((pred == texture).sum()) / n,
            "num_decided": decided}


def shape_bias_standard_error(bias: float, num_decided: int) -> float:
    """Binomial standard error ``sqrt(p(1-p)/n)`` of a shape bias ``p`` over ``n`` decided images."""
    if num_decided <= 0:
        raise ValueError(f"need at least one decided image, got {num_decided}")
    return math.sqrt(bias * (1.0 - bias) / num_decided)


def shape_texture_bias(encoder: nn.Module, cfg: EvalConfig, img_size: int, seed: int = 0, pool: str = "mean",
                       sizes: tuple[int, int] = SHAPE_TEXTURE_SIZES, **style: float) -> dict[str, float]:
    """Shape-vs-texture bias of a linear probe on the final-depth features.

    The probe is trained on ``sizes[0]`` "aligned" synthetic images (foreground texture ``k``
    on every shape ``k``: both cues predict the class; seed ``seed``) and evaluated on
    ``sizes[1]`` "conflict" images (shape ``k`` filled with the texture of another class ``j``;
    seed ``seed + EVAL_SEED_OFFSET``), both rendered with ``style`` (the data's ``texture_scale`` and
    ``background_contrast``, :func:`clvsmim.data.render_style`; the renderer's defaults when not given).
    See :func:`shape_bias_from_predictions`.
    """

    aligned = load_synthetic(sizes[0], img_size, seed=seed, mode="aligned", **style)
    conflict = load_synthetic(sizes[1], img_size, seed=seed + EVAL_SEED_OFFSET, mode="conflict", **style)
    f_train = extract_features(encoder, aligned.images, cfg.batch_size, pool, depths=[-1])[0]
    f_eval = extract_features(encoder, conflict.images, cfg.batch_size, pool, depths=[-1])[0]
    pred = probe_predict(f_train, aligned.shape, f_eval, cfg, seed, num_classes=aligned.num_classes)
    return shape_bias_from_predictions(pred, conflict.shape, conflict.texture)


# --------------------------------------------------------------------------- frequency noise

def band_limited_noise(seeds: torch.Tensor, img_size: int, band: str, cutoff: float = NOISE_CUTOFF,
                       strength: float = NOISE_STRENGTH) -> torch.Tensor:
    """Gaussian noise ``B×3×S×S`` restricted to low or high spatial frequencies, equal energy.

    White noise from the per-sample ``seeds`` is filtered in the Fourier domain: ``band="low"``
    keeps the radial frequencies ``0 < |f| <= cutoff·f_Nyquist``, ``band="high"`` those above
    (the DC term is dropped from both); each sample's noise is then rescaled to RMS
    ``strength`` (in [0, 1] pixel units), so both bands carry the same energy. The same white
    noise underlies both bands.
    """
    if band not in ("low", "high"):
        raise ValueError(f"band must be 'low' or 'high', got {band!r}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1) (fraction of Nyquist), got {cutoff}")
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    s = int(img_size)
    white = hash_normal(seeds, 3 * s * s).reshape(-1, 3, s, s)
    f = torch.fft.fftfreq(s)  # cycles / pixel, Nyquist = 0.5
    radius = torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2) / 0.5
    keep = (radius <= cutoff) if band == "low" else (radius > cutoff)
    keep &= radius > 0
    noise = torch.fft.ifft2(torch.fft.fft2(white) * keep).real
    rms = noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return noise * (strength / rms)


def noise_robustness(encoder: nn.Module, train_set, eval_set, cfg: EvalConfig, cutoff: float = NOISE_CUTOFF,
                     strength: float = NOISE_STRENGTH, seed: int = 0, pool: str = "mean",
                     clean_features: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """Accuracy of a linear probe (final depth, trained on clean training features) on the eval
    images: clean, plus low-frequency and plus high-frequency noise (:func:`band_limited_noise`,
    seeds ``sample_seed(seed, _, index)``; added in [0, 1] pixel units, not clipped).

    ``clean_features``: the final depth's ``pool`` features of the clean training and evaluation
    images (``N×C`` each) when already extracted; only the two noisy passes then run."""
    geo = geometry(encoder)
    img_size = geo.grid[0] * geo.patch_size

    def noisy(band: str):
        def transform(x01: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            seeds = sample_seed(seed, NOISE_STEP, idx)
            return x01 + band_limited_noise(seeds, img_size, band, cutoff, strength).to(x01.device)
        return transform

    y_train, y_eval = labels_of(train_set), labels_of(eval_set)
    if clean_features is None:
        clean_features = tuple(extract_features(encoder, data, cfg.batch_size, pool, depths=[-1])[0]
                               for data in (train_set, eval_set))
    f_train, f_clean = clean_features
    for name, feats, labels in (("training", f_train, y_train), ("evaluation", f_clean, y_eval)):
        if feats.ndim != 2 or len(feats) != len(labels):
            raise ValueError(f"noise_robustness: clean {name} features must be N×C with N = {len(labels)} images, "
                             f"found shape {tuple(feats.shape)}")
    tests = [f_clean] + [extract_features(encoder, eval_set, cfg.batch_size, pool, depths=[-1], transform=t)[0]
                         for t in (noisy("low"), noisy("high"))]
    preds = probe_predict(f_train, y_train, tests, cfg, seed, num_classes=num_classes_of(train_set, y_train, y_eval))
    clean, low, high = (accuracy(p, y_eval) for p in preds)
    return {"clean": clean, "low_freq": low, "high_freq": high, "cutoff": cutoff, "strength": strength}
