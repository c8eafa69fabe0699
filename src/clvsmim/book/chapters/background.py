"""Data behind the *background* chapter: F0 (CL vs MIM inputs, made with the project's real
augmentation and masking) and A-dataset (the embedded shape/texture data set).

:func:`overview_data` runs :func:`clvsmim.data.augment.moco_views`,
:func:`clvsmim.data.augment.simmim_mask` and :func:`clvsmim.data.augment.mae_masking` — the very
functions the training objectives call — on a few evaluation images, with per-sample seeds
from :func:`clvsmim.rng.sample_seed`, and reports the mask ratios actually realised (SimMIM
masks whole mask patches, so the realised ratio is ``round(ratio·count) / count``).
:func:`dataset_samples` shows one scene per shape class in the *aligned* mode (texture ``k`` on
shape ``k``) and the same scene in the *conflict* mode (same shape and position, another
class's texture), with its foreground mask.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from clvsmim.book.report import analysis_images
from clvsmim.data import SHAPES, TEXTURES, load_synthetic, open_dataset, render_style
from clvsmim.data.augment import denormalize, mae_masking, moco_views, simmim_mask, to_float
from clvsmim.rng import sample_seed

__all__ = ["overview_data", "dataset_samples", "mask_to_pixels", "grey_out", "describe_overview"]


def mask_to_pixels(token_mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Token mask ``B×h×w`` (bool) -> pixel mask ``B×(h·p)×(w·p)``."""
    return token_mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)


def grey_out(images01: torch.Tensor, pixel_mask: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    """Images ``B×3×H×W`` in [0, 1] with the masked pixels set to ``grey`` (as the objectives show them)."""
    return torch.where(pixel_mask.unsqueeze(1), torch.full_like(images01, grey), images01)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).float().cpu().numpy()


def _labels_of(profile, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Shape / texture names of evaluation images (class index only for an image folder)."""
    dataset = open_dataset(profile.data, "eval")
    out = []
    for i in ids:
        if hasattr(dataset, "texture"):
            out.append({"shape": SHAPES[int(dataset.shape[i])], "texture": TEXTURES[int(dataset.texture[i])]})
        else:
            out.append({"class": int(dataset.labels[i])})
    return out


def overview_data(profile, n: int = 3, seed: int = 0, step: int = 0) -> dict[str, Any]:
    """The inputs each objective sees for the first ``n`` evaluation images.

    Returns ``images`` / ``view1`` / ``view2`` / ``simmim`` / ``mae`` (``n×H×W×3`` float in
    [0, 1]; masked patches grey), ``simmim_mask`` / ``mae_mask`` (token masks ``n×h×w``) and
    ``record``: the JSON-able facts (image ids, labels, per-sample seeds, nominal and realised
    mask ratios, patch sizes) that F0 saves.
    """

    images, _ = analysis_images(profile, n)
    ids = torch.arange(n)
    seeds = sample_seed(seed, step, ids)
    size = profile.model.img_size
    patch = profile.model.patch_size
    grid = size // patch
    v1, v2 = moco_views(images, seeds, size, min_scale=profile.moco.crop_min_scale)
    sim = simmim_mask(seeds, grid, patch, profile.simmim.mask_patch_size, profile.simmim.mask_ratio)
    _, mae_flat, _ = mae_masking(seeds, n, grid * grid, profile.mae.mask_ratio)
    mae = mae_flat.bool().view(n, grid, grid)
    x01 = to_float(images)
    record = {
        "image_ids": ids.tolist(), "labels": _labels_of(profile, ids.tolist()),
        "seeds": seeds.tolist(), "seed": seed, "step": step, "img_size": size, "patch_size": patch,
        "moco": {"crop_min_scale": profile.moco.crop_min_scale, "tau": profile.moco.tau},
        "simmim": {"mask_ratio": profile.simmim.mask_ratio, "mask_patch_size": profile.simmim.mask_patch_size,
                   "realised_ratio": sim.float().mean(dim=(1, 2)).tolist()},
        "mae": {"mask_ratio": profile.mae.mask_ratio, "realised_ratio": mae.float().mean(dim=(1, 2)).tolist()},
    }
    return {
        "images": _hwc(x01), "view1": _hwc(denormalize(v1)), "view2": _hwc(denormalize(v2)),
        "simmim": _hwc(grey_out(x01, mask_to_pixels(sim, patch))),
        "mae": _hwc(grey_out(x01, mask_to_pixels(mae, patch))),
        "simmim_mask": sim.numpy(), "mae_mask": mae.numpy(), "record": record,
    }


def describe_overview(record: dict[str, Any]) -> str:
    """A markdown sentence on the masks actually drawn (nominal vs realised ratios)."""
    s, m = record["simmim"], record["mae"]
    sim_real = float(np.mean(s["realised_ratio"]))
    mae_real = float(np.mean(m["realised_ratio"]))
    side = record["img_size"] // s["mask_patch_size"]
    text = (f"SimMIM masks {side}×{side} = {side * side} mask patches of {s['mask_patch_size']} px "
            f"(each covers {(s['mask_patch_size'] // record['patch_size']) ** 2} tokens of "
            f"{record['patch_size']} px): a nominal ratio of {s['mask_ratio']:.2f} realises "
            f"{sim_real:.2f} of the tokens. MAE drops {m['mask_ratio']:.2f} of the tokens; realised "
            f"{mae_real:.2f}.")
    if abs(sim_real - s["mask_ratio"]) > 0.05:
        text += (" The SimMIM ratio differs from the nominal one because only whole mask patches can be "
                 "masked at this image size.")
    return text


def dataset_samples(profile, classes: Sequence[int] | None = None, n_scan: int = 256) -> dict[str, Any]:
    """One scene per shape class (``classes``, default all): its *aligned* rendering (texture
    ``k`` on shape ``k``), the *conflict* rendering of the same scene (same shape and
    geometry, another class's texture) and the foreground mask, at the profile's resolution.

    Returns ``aligned`` / ``conflict`` (``k×H×W×3`` in [0, 1]), ``mask`` (``k×H×W`` bool) and a
    JSON-able ``record`` (indices, seed, shape and texture names of both renderings).
    """

    size, seed = profile.data.img_size, profile.data.seed
    style = render_style(profile.data)
    aligned = load_synthetic(n_scan, size, seed=seed, mode="aligned", **style)
    conflict = load_synthetic(n_scan, size, seed=seed, mode="conflict", **style)
    classes = list(range(len(SHAPES))) if classes is None else list(classes)
    idx = []
    for k in classes:
        hits = (aligned.shape == k).nonzero().flatten()
        if len(hits):
            idx.append(int(hits[0]))
    sel = torch.tensor(idx, dtype=torch.int64)
    record = {
        "seed": seed, "img_size": size, "indices": idx, **style,
        "aligned": [{"shape": SHAPES[int(aligned.shape[i])], "texture": TEXTURES[int(aligned.texture[i])]}
                    for i in idx],
        "conflict": [{"shape": SHAPES[int(conflict.shape[i])], "texture": TEXTURES[int(conflict.texture[i])]}
                     for i in idx],
        "foreground_fraction": aligned.mask[sel].float().mean(dim=(1, 2)).tolist(),
        "num_shapes": len(SHAPES), "num_textures": len(TEXTURES),
    }
    return {"aligned": _hwc(aligned.images[sel].float() / 255), "conflict": _hwc(conflict.images[sel].float() / 255),
            "mask": aligned.mask[sel].numpy(), "record": record}
