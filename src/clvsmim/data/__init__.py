"""Data: the embedded synthetic shape/texture dataset, and real images from a folder.

No network is needed: the default dataset is *generated* in code, deterministically.
Each image shows ONE foreground shape (random position, scale, rotation) filled with one
texture family, on a background filled with a *different* texture family. Every sample
carries its shape label (the classification label), the texture label of its foreground and
the foreground mask, which makes three analyses of the paper possible on it:

* shape-vs-texture bias: ``mode="conflict"`` pairs every shape with the texture associated
  with a different class (class ``k`` is associated with texture ``k``);
* per-token segmentation: :meth:`SyntheticSet.token_targets`;
* classification (linear probing, fine-tuning) on ``mode="independent"`` data.

Sample ``i`` is a pure function of ``(seed, i)`` (counter-based randomness, :mod:`clvsmim.rng`),
so ``make_synthetic(k, seed=s)`` is the prefix of ``make_synthetic(n, seed=s)`` for ``k <= n``;
the same seed at another ``img_size`` renders the same scenes at another resolution. Within a
seed, the modes share the geometry and the shape labels; only the textures differ.

The renderer lives in :mod:`clvsmim.data.render`, the in-memory set and its disk cache in
:mod:`clvsmim.data.synthetic`. Real images: :class:`ImageFolderDataset` (:mod:`clvsmim.data.folder`,
class sub-folders, evaluation transform of the paper). :func:`open_dataset` picks one or the other from a :class:`~clvsmim.config.DataConfig`.
Augmentation and normalisation live in :mod:`clvsmim.data.augment`, not here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from clvsmim.config import DataConfig
from clvsmim.data.folder import IMAGE_EXTENSIONS, ImageFolderDataset, eval_transform
from clvsmim.data.render import (BACKGROUND_CONTRAST, EVAL_SEED_OFFSET, GENERATOR_VERSION, IMAGENET_MEAN,
                                 IMAGENET_STD, MODES, SHAPES, TEXTURES, check_background_contrast, check_texture_scale)
from clvsmim.data.synthetic import SyntheticSet, load_synthetic, make_synthetic, synthetic_cache_path

__all__ = ["open_dataset", "get_batch", "SyntheticSet", "make_synthetic", "load_synthetic", "synthetic_cache_path",
           "ImageFolderDataset", "eval_transform", "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "SHAPES",
           "TEXTURES", "MODES", "GENERATOR_VERSION", "EVAL_SEED_OFFSET", "check_texture_scale",
           "BACKGROUND_CONTRAST", "check_background_contrast", "render_style"]

# Entry points for the rest of the package.
# --------------------------------------------------------------------------------------

def render_style(data_cfg: DataConfig) -> dict[str, float]:
    """The synthetic renderer's appearance settings of ``data_cfg``, as keyword arguments of
    :func:`load_synthetic` / :func:`make_synthetic` (``texture_scale``, ``background_contrast``)."""
    return {"texture_scale": data_cfg.texture_scale, "background_contrast": data_cfg.background_contrast}


def open_dataset(data_cfg: DataConfig, split: str) -> SyntheticSet | ImageFolderDataset:
    """The train or eval split: synthetic when ``data_cfg.root`` is None, else an image folder.

    Synthetic: ``num_train`` / ``num_eval`` images, the eval split from ``seed + EVAL_SEED_OFFSET``.
    Folder: ``root/train`` / ``root/val`` when they exist, else ``root`` itself for both splits.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    root = data_cfg.root
    if root is None:
        style = render_style(data_cfg)
        if split == "train":
            return load_synthetic(data_cfg.num_train, data_cfg.img_size, seed=data_cfg.seed, **style)
        return load_synthetic(data_cfg.num_eval, data_cfg.img_size, seed=data_cfg.seed + EVAL_SEED_OFFSET, **style)
    sub = Path(root) / ("train" if split == "train" else "val")
    return ImageFolderDataset(sub if sub.is_dir() else root, data_cfg.img_size)


def get_batch(dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 B×3×S×S, labels int64 B) of ``dataset[indices]``."""
    indices = torch.as_tensor(indices, dtype=torch.int64)
    if isinstance(dataset, SyntheticSet):
        return dataset.images[indices], dataset.shape[indices]
    items = [dataset[int(i)] for i in indices]
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.stack([image for image, _ in items]), labels
