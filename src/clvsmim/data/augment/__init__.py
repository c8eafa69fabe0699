"""Batched, on-device augmentation and masking, with per-sample randomness from seeds.

Every random number is drawn by :func:`clvsmim.rng.hash_uniform` from the sample's own
int64 seed and a *stream* number, so the view of sample ``i`` is a pure function of
``(image_i, seed_i)``: it does not depend on the batch it was drawn in, the device, the
number of processes or on resuming. Each operation of each view uses its own stream
(constants below), so e.g. the crop of view 1 and the crop of view 2 are independent.

Inputs are ``B×3×H×W`` uint8 (or float in [0, 1]); the view builders return normalised
float32 (ImageNet mean / std). Everything is vectorised over the batch: a crop is one
per-sample axis-aligned affine sampling grid + one ``grid_sample`` call, colour ops are
element-wise with per-sample factors, the blur is separable with one kernel per sample
(sums of shifted slices, which beat a grouped convolution on CPU for these tiny kernels).

Differences to the torchvision / PIL pipelines of the upstream repos (all deliberate):

* crop boxes are continuous (sub-pixel) rather than rounded to integers, and the crop is
  resampled bilinearly from the float image (no anti-aliasing when shrinking);
* the horizontal flip is folded into the crop's affine map (flip commutes with every
  colour op and with the symmetric blur, so the order of the upstream recipe is kept);
* hue is shifted in HSV space with the result of ``torchvision.transforms.ColorJitter``
  (a vectorised HSV hexcone rotation, not a YIQ rotation); the four jitter operations are
  applied in a per-sample random order, as torchvision does;
* the gaussian blur is a truncated kernel of radius ``ceil(3·sigma_max)`` with reflect
  padding (PIL uses a box-filter approximation); :func:`moco_views` rescales MoCo v3's
  sigma range (0.1–2.0 px, meant for 224-px crops) to the output size by default, so a
  32-px view is blurred as much relative to its content (0.014–0.29 px) — the literal
  pixel values would low-pass tiny images far harder than upstream does ImageNet.

Modules: :mod:`~clvsmim.data.augment.pixels` (to float, normalisation, batch checks),
:mod:`~clvsmim.data.augment.streams` (the stream numbers), :mod:`~clvsmim.data.augment.crop`,
:mod:`~clvsmim.data.augment.colour`, :mod:`~clvsmim.data.augment.views` (the objectives' views),
:mod:`~clvsmim.data.augment.masking` (SimMIM / MAE masks, patchify).
"""
from __future__ import annotations

from clvsmim.data.augment.colour import (BLUR_SIGMA, GRAYSCALE_P, JITTER_P, JITTER_STRENGTH, adjust_brightness,
                                        adjust_contrast, adjust_hue, adjust_saturation, color_jitter, gaussian_blur,
                                        random_grayscale, random_solarize)
from clvsmim.data.augment.crop import CropBoxes, crop_boxes_to_grid, crop_params, random_resized_crop
from clvsmim.data.augment.masking import mae_masking, patchify, simmim_mask, unpatchify
from clvsmim.data.augment.pixels import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_view, normalize, to_float
from clvsmim.data.augment.streams import (MAE_MASK_STREAM, MAE_VIEW_STREAM, MOCO_VIEW_STREAMS, SIMMIM_MASK_STREAM,
                                         SIMMIM_VIEW_STREAM)
from clvsmim.data.augment.views import (BLUR_REFERENCE_SIZE, MOCO_BLUR_P, MOCO_SOLARIZE_P, blur_sigma_for, mae_view,
                                        moco_view, moco_views, simmim_view)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "to_float", "normalize", "denormalize", "eval_view",
    "MOCO_VIEW_STREAMS", "MOCO_BLUR_P", "MOCO_SOLARIZE_P", "SIMMIM_VIEW_STREAM", "MAE_VIEW_STREAM",
    "SIMMIM_MASK_STREAM", "MAE_MASK_STREAM",
    "CropBoxes", "crop_params", "crop_boxes_to_grid", "random_resized_crop",
    "JITTER_STRENGTH", "JITTER_P", "GRAYSCALE_P", "BLUR_SIGMA", "BLUR_REFERENCE_SIZE", "adjust_brightness",
    "adjust_contrast", "adjust_saturation", "adjust_hue", "color_jitter", "random_grayscale", "gaussian_blur",
    "random_solarize",
    "blur_sigma_for", "moco_view", "moco_views", "simmim_view", "mae_view",
    "simmim_mask", "mae_masking", "patchify", "unpatchify",
]
