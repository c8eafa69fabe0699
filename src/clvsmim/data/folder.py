"""Real images: an image folder with class sub-folders, read with the paper's evaluation
transform."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

# --------------------------------------------------------------------------------------
# Real images.
# --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def eval_transform(img_size: int) -> v2.Compose:
    """The paper's evaluation transform: resize the shorter side to round(S·256/224), centre-crop S.

    Takes a PIL image, returns uint8 3×S×S.
    """
    return v2.Compose([
        v2.Resize(round(img_size * 256 / 224), interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(img_size),
        v2.PILToTensor(),
    ])


def _scan_image_folder(root: Path, extensions: Sequence[str]) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and (path, label) of every image below each class sub-folder."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"no class sub-folders in {root}; expected {root}/<class>/<image> "
                         f"with extensions {tuple(extensions)}")
    suffixes = {e.lower() for e in extensions}
    samples = [(path, label) for label, name in enumerate(classes)
               for path in sorted((root / name).rglob("*"))
               if path.suffix.lower() in suffixes and path.is_file()]
    if not samples:
        raise ValueError(f"no images with extensions {tuple(extensions)} in the class sub-folders of {root}")
    return classes, samples


def _read_rgb(path: Path) -> Image.Image:
    """Decode an image file fully, as RGB (raises OSError / ValueError when unreadable)."""
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageFolderDataset(Dataset):
    """``root/<class>/**/<image>`` files, read with the evaluation transform of the paper.

    ``dataset[i] -> (uint8 3×S×S, label)``. Unreadable files never crash: ``verify=True``
    drops them up front; otherwise ``__getitem__`` returns the next readable image instead.
    Either way ``num_unreadable`` counts them and one warning names the count and an example.
    """

    def __init__(self, root: str | os.PathLike, img_size: int,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, verify: bool = False):
        self.root = Path(root)
        self.img_size = img_size
        self.classes, self.samples = _scan_image_folder(self.root, extensions)
        self.transform = eval_transform(img_size)
        self.unreadable: list[Path] = []
        self._warned = False
        if verify:
            self._drop_unreadable()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> torch.Tensor:
        """int64 (N,) class index of each file."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    @property
    def num_unreadable(self) -> int:
        return len(self.unreadable)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        for offset in range(len(self.samples)):
            path, label = self.samples[(int(i) + offset) % len(self.samples)]
            try:
                return self.transform(_read_rgb(path)), label
            except (OSError, ValueError, SyntaxError) as error:
                self._record_unreadable(path, error)
        raise RuntimeError(f"no readable image in {self.root} ({self.num_unreadable} unreadable files)")

    def _record_unreadable(self, path: Path, error: Exception) -> None:
        if path not in self.unreadable:
            self.unreadable.append(path)
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.root}: skipping unreadable image file(s) ({self.num_unreadable} so far), "
                          f"e.g. {path}: {error}", stacklevel=3)

    def _drop_unreadable(self) -> None:
        """Decode every file once; remove those that fail, with one summarising warning."""
        readable = []
        for path, label in self.samples:
            try:
                _read_rgb(path)
                readable.append((path, label))
            except (OSError, ValueError, SyntaxError):
                self.unreadable.append(path)
        if self.unreadable:
            self._warned = True
            warnings.warn(f"{self.root}: {self.num_unreadable} unreadable image file(s) dropped, "
                          f"e.g. {self.unreadable[0]}", stacklevel=3)
        if not readable:
            raise ValueError(f"no readable images in {self.root} ({self.num_unreadable} unreadable)")
        self.samples = readable
