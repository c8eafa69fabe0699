"""The views of each objective, normalised: MoCo v3's two asymmetric views (crop, jitter,
grayscale, blur, solarize), SimMIM's and MAE's crop + flip."""
from __future__ import annotations

import torch

from clvsmim.data.augment.colour import (BLUR_SIGMA, JITTER_STRENGTH, color_jitter, gaussian_blur, random_grayscale,
                                        random_solarize)
from clvsmim.data.augment.crop import random_resized_crop
from clvsmim.data.augment.pixels import check_batch, normalize, size_pair
from clvsmim.data.augment.streams import (BLUR, CROP, GRAY, JITTER, MAE_VIEW_STREAM, MOCO_VIEW_STREAMS,
                                         SIMMIM_VIEW_STREAM, SOLARIZE)

MOCO_BLUR_P = (1.0, 0.1)  # view 1, view 2 (MoCo v3's asymmetric augmentation)
MOCO_SOLARIZE_P = (0.0, 0.2)
BLUR_REFERENCE_SIZE = 224  # the view size MoCo v3's blur sigma range (pixels) is meant for


def blur_sigma_for(out_size: int) -> tuple[float, float]:
    """MoCo v3's blur sigma range (0.1–2.0 px at 224 px) rescaled to ``out_size`` pixels,
    so a 32-px view is blurred as much, relative to its content, as a 224-px one."""
    f = out_size / BLUR_REFERENCE_SIZE
    return BLUR_SIGMA[0] * f, BLUR_SIGMA[1] * f


def moco_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int, min_scale: float,
              blur_p: float | torch.Tensor, solarize_p: float | torch.Tensor, stream: int | torch.Tensor,
              blur_sigma=None) -> torch.Tensor:
    """One MoCo v3 view (normalised): crop+flip, jitter (p 0.8), grayscale (p 0.2), blur, solarize.

    ``blur_p``, ``solarize_p`` and ``stream`` may be ``(B,)`` tensors (a value per sample)."""
    seeds = check_batch(images, seeds)
    x = random_resized_crop(images, seeds, out_size, scale=(min_scale, 1.0), stream=stream + CROP)
    x = color_jitter(x, seeds, stream=stream + JITTER, **JITTER_STRENGTH)
    x = random_grayscale(x, seeds, stream=stream + GRAY)
    sigma = blur_sigma_for(size_pair(out_size)[0]) if blur_sigma is None else tuple(blur_sigma)
    x = gaussian_blur(x, seeds, p=blur_p, sigma=sigma, stream=stream + BLUR)
    x = random_solarize(x, seeds, p=solarize_p, stream=stream + SOLARIZE)
    return normalize(x)


def moco_views(images: torch.Tensor, seeds: torch.Tensor, out_size: int, min_scale: float = 0.08,
               blur_sigma=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two asymmetric MoCo v3 views, normalised floats ``B×3×out×out``.

    View 1: blur p = 1.0, no solarize. View 2: blur p = 0.1, solarize p = 0.2. Both: crop
    scale ``(min_scale, 1)``, flip, colour jitter (0.4, 0.4, 0.2, 0.1) p = 0.8, grayscale
    p = 0.2. ``blur_sigma=None`` uses 0.1–2.0 px rescaled from 224 px to ``out_size``
    (:func:`blur_sigma_for`); pass ``(0.1, 2.0)`` for the literal upstream pixel values.
    Both views are made in ONE batched pass over ``2B`` samples (each with its view's stream
    and probabilities): half the kernel launches of two passes, the same numbers.
    """
    seeds = check_batch(images, seeds)
    b = seeds.shape[0]

    def per_view(values, dtype):
        return torch.tensor(values, dtype=dtype, device=seeds.device).repeat_interleave(b)

    both = moco_view(images.repeat(2, 1, 1, 1), seeds.repeat(2), out_size, min_scale,
                     per_view(MOCO_BLUR_P, torch.float32), per_view(MOCO_SOLARIZE_P, torch.float32),
                     per_view(MOCO_VIEW_STREAMS, torch.int64), blur_sigma)
    return both[:b], both[b:]


def simmim_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int,
                min_scale: float = 0.67, stream: int = SIMMIM_VIEW_STREAM) -> torch.Tensor:
    """SimMIM's view: random resized crop (scale ``(min_scale, 1)``) + flip, normalised."""
    return normalize(random_resized_crop(images, seeds, out_size, scale=(min_scale, 1.0), stream=stream))


def mae_view(images: torch.Tensor, seeds: torch.Tensor, out_size: int,
             min_scale: float = 0.2) -> torch.Tensor:
    """MAE's view: random resized crop (scale ``(min_scale, 1)``) + flip, normalised."""
    return simmim_view(images, seeds, out_size, min_scale, stream=MAE_VIEW_STREAM)
