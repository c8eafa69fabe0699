"""The synthetic dataset held in memory (:class:`SyntheticSet`), generated (:func:`make_synthetic`)
and cached on disk (:func:`load_synthetic`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from clvsmim.cache import save_torch_atomic
from clvsmim.config import config_key
from clvsmim.paths import cache_dir
from clvsmim.data.render import (BACKGROUND_CONTRAST, GENERATOR_VERSION, MODES, PIXELS_PER_CHUNK, SHAPES, TEXTURES,
                                 check_background_contrast, check_texture_scale, data_seeds, render_chunk)

# --------------------------------------------------------------------------------------
# The dataset.
# --------------------------------------------------------------------------------------

@dataclass(eq=False)
class SyntheticSet(Dataset):
    """A generated dataset held in memory.

    images: uint8 N×3×S×S; shape: int64 (N,) class label; texture: int64 (N,) foreground
    texture family; mask: bool N×S×S foreground; background: int64 (N,) background texture
    family (optional); mode: how texture relates to shape ("independent", "aligned", "conflict").
    """

    images: torch.Tensor
    shape: torch.Tensor
    texture: torch.Tensor
    mask: torch.Tensor
    background: torch.Tensor | None = None
    mode: str = "independent"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(image uint8 3×S×S, shape label)."""
        return self.images[i], int(self.shape[i])

    @property
    def labels(self) -> torch.Tensor:
        """The classification label (the shape), int64 (N,)."""
        return self.shape

    @property
    def num_classes(self) -> int:
        return len(SHAPES)

    @property
    def classes(self) -> list[str]:
        return list(SHAPES)

    @property
    def texture_classes(self) -> list[str]:
        return list(TEXTURES)

    @property
    def img_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, idx) -> "SyntheticSet":
        """The samples ``idx`` (indices, slice or boolean mask) as a new set."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx)
        return SyntheticSet(
            images=self.images[idx], shape=self.shape[idx], texture=self.texture[idx],
            mask=self.mask[idx], background=None if self.background is None else self.background[idx],
            mode=self.mode,
        )

    def token_targets(self, patch_size: int) -> torch.Tensor:
        """Fraction of foreground pixels per patch: float N×h×w in [0, 1], h = w = S / patch_size."""
        if self.img_size % patch_size:
            raise ValueError(f"image size {self.img_size} is not a multiple of patch size {patch_size}")
        return F.avg_pool2d(self.mask.unsqueeze(1).float(), patch_size)[:, 0]

    def token_majority(self, patch_size: int) -> torch.Tensor:
        """Binary per-token segmentation target: bool N×h×w, True where > half the patch is foreground."""
        return self.token_targets(patch_size) > 0.5

    def to_dict(self) -> dict:
        return {"images": self.images, "shape": self.shape, "texture": self.texture,
                "mask": self.mask, "background": self.background, "mode": self.mode}


def make_synthetic(n: int, img_size: int = 32, seed: int = 0, mode: str = "independent",
                   texture_scale: float = 1.0, background_contrast: float = BACKGROUND_CONTRAST) -> SyntheticSet:
    """Generate ``n`` images of ``img_size``² pixels; sample ``i`` depends only on
    ``(seed, i, mode, img_size, texture_scale, background_contrast)``.

    mode: "independent" (shape and texture uniform, independent), "aligned" (texture == shape
    index: both cues agree), "conflict" (texture of a different, random class).
    texture_scale: texture periods (and the noise grain) relative to the default of 1/7 … 1/4
    of the image width; 2.0 draws textures twice as coarse.
    background_contrast: the background texture's colour contrast relative to the foreground's
    (:data:`~clvsmim.data.render.BACKGROUND_CONTRAST` by default; 0 draws a flat background).
    """
    texture_scale = check_texture_scale(texture_scale)
    background_contrast = check_background_contrast(background_contrast)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if n < 0 or img_size < 1:
        raise ValueError(f"need n >= 0 and img_size >= 1, got n={n}, img_size={img_size}")
    chunk = max(1, PIXELS_PER_CHUNK // (img_size * img_size))
    starts = range(0, max(n, 1), chunk)  # one (possibly empty) chunk at least
    parts = [render_chunk(data_seeds(seed, start, min(n, start + chunk)), mode, img_size, texture_scale,
                          background_contrast) for start in starts]
    fields = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return SyntheticSet(**fields, mode=mode)


# --------------------------------------------------------------------------------------
# Cache.
# --------------------------------------------------------------------------------------

def synthetic_cache_path(n: int, img_size: int, seed: int, mode: str, texture_scale: float = 1.0,
                         background_contrast: float = BACKGROUND_CONTRAST) -> Path:
    """Where :func:`load_synthetic` keeps a set (key covers all arguments and the version)."""
    fields = {"version": GENERATOR_VERSION, "n": n, "img_size": img_size, "seed": seed, "mode": mode}
    if float(texture_scale) != 1.0:  # defaults keep the keys of earlier versions
        fields["texture_scale"] = float(texture_scale)
    if float(background_contrast) != BACKGROUND_CONTRAST:
        fields["background_contrast"] = float(background_contrast)
    key = config_key(fields)
    return cache_dir("data") / f"synthetic-{mode}-n{n}-s{img_size}-seed{seed}-{key}.pt"


def _read_cached(path: Path, n: int, img_size: int) -> SyntheticSet | None:
    """The cached set, or None when missing, unreadable or of the wrong size."""
    if not path.is_file():
        return None
    try:
        fields = torch.load(path, map_location="cpu", weights_only=True)
        dataset = SyntheticSet(**fields)
    except Exception:  # corrupt / truncated / foreign file: regenerate
        return None
    if tuple(dataset.images.shape) != (n, 3, img_size, img_size) or len(dataset.shape) != n:
        return None
    return dataset


def load_synthetic(n: int, img_size: int = 32, seed: int = 0, mode: str = "independent",
                   cache: bool = True, texture_scale: float = 1.0,
                   background_contrast: float = BACKGROUND_CONTRAST) -> SyntheticSet:
    """:func:`make_synthetic`, cached under ``cache_dir("data")``; a corrupt cache file is regenerated."""
    style = (texture_scale, background_contrast)
    if not cache:
        return make_synthetic(n, img_size, seed, mode, *style)
    path = synthetic_cache_path(n, img_size, seed, mode, *style)
    dataset = _read_cached(path, n, img_size)
    if dataset is None:
        dataset = make_synthetic(n, img_size, seed, mode, *style)
        save_torch_atomic(dataset.to_dict(), path)
    return dataset
