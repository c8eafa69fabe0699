"""Which images ``clvsmim analyze --data`` means: the synthetic set rendered at the model's size,
an image folder, or a tensor; taken class by class in turn."""
from __future__ import annotations

from pathlib import Path

import torch

from clvsmim.analysis.backbones import AnalyzeError
from clvsmim.data import EVAL_SEED_OFFSET, SHAPES, ImageFolderDataset, SyntheticSet, make_synthetic

#: Bumped when the layout of ``metrics.json`` changes.


# ----------------------------------------------------------------------------- data
class TensorImages(torch.utils.data.Dataset):
    """Images (uint8, or float in [0, 1]) ``N×3×S×S`` with optional labels, as a dataset."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise AnalyzeError(f"expected images of shape N×3×S×S (uint8, or float in [0, 1]), found {found}")
        if labels is not None:
            labels = torch.as_tensor(labels).long().reshape(-1)
            if len(labels) != len(images):
                raise AnalyzeError(f"expected one label per image, found {len(labels)} labels for {len(images)} images")
        self.images, self._labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], (-1 if self._labels is None else int(self._labels[i]))

    @property
    def labels(self) -> torch.Tensor | None:
        return self._labels


def as_dataset(data) -> torch.utils.data.Dataset:
    if isinstance(data, torch.Tensor):
        return TensorImages(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return TensorImages(data[0], data[1])
    if isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return data
    raise AnalyzeError(f"expected a dataset, an image tensor N×3×S×S or (images, labels), found {type(data).__name__}")


def dataset_labels(dataset) -> torch.Tensor | None:
    """All labels of ``dataset`` without decoding images (``.labels`` / ``.shape``), else None."""

    if isinstance(dataset, SyntheticSet):
        return dataset.shape
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels).long().reshape(-1)
    return labels if len(labels) == len(dataset) else None


def analysis_order(labels: torch.Tensor | None, size: int, n: int) -> torch.Tensor:
    """Indices of the ``n`` images to analyse: class by class in turn (round-robin) when labels
    exist, so the first ``n`` cover the classes evenly; else ``0 … n−1``."""
    n = min(n, size)
    if labels is None:
        return torch.arange(n)
    classes, cls = labels.unique(return_inverse=True)
    rank = torch.zeros(size, dtype=torch.int64)
    for c in range(len(classes)):
        members = (cls == c).nonzero().squeeze(1)
        rank[members] = torch.arange(len(members))
    return torch.argsort(rank * len(classes) + cls, stable=True)[:n]


def open_analysis_data(spec: str, img_size: int, num_images: int, seed: int = 0):
    """``(dataset, description)`` for ``--data``: ``synthetic`` or an ImageFolder PATH."""

    if spec == "synthetic":
        dataset = make_synthetic(num_images, img_size, seed=seed + EVAL_SEED_OFFSET)
        return dataset, {"name": "synthetic", "description": f"embedded synthetic shapes ({len(SHAPES)} shape "
                         f"classes × textures), evaluation seed {seed + EVAL_SEED_OFFSET}",
                         "classes": list(SHAPES), "img_size": img_size}
    root = Path(spec).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"--data {spec}: no such folder (give 'synthetic' or an ImageFolder root "
                                "with one sub-folder per class)")
    if not root.is_dir():
        raise AnalyzeError(f"--data {spec} is a file; give 'synthetic' or an ImageFolder root")
    sub = root / "val"
    folder = sub if sub.is_dir() else root
    try:
        dataset = ImageFolderDataset(folder, img_size)
    except ValueError as exc:
        raise AnalyzeError(str(exc)) from exc
    return dataset, {"name": str(root), "description": f"ImageFolder {folder} ({len(dataset)} images, "
                     f"{dataset.num_classes} classes), evaluation transform at {img_size} px",
                     "classes": list(dataset.classes), "img_size": img_size}
