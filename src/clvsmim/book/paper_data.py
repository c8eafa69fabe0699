"""The images of the paper book: Imagenette when none are given, and the probe images.

The official checkpoints are never analysed on the synthetic shapes: without ``--data`` the paper
book reads Imagenette (``train/`` and ``val/``; the analyses read ``val/``), fetched and
sha256-verified by :func:`clvsmim.weights.fetch_imagenette` (:func:`default_images`), or stops
with one error naming ``--data`` (:class:`DataUnavailableError`). :func:`probe_images` picks the
images of the probes and the short fine-tune, round-robin over the classes.
"""
from __future__ import annotations

import torch

from clvsmim.analysis.images import analysis_order
from clvsmim.config import load_profile
from clvsmim.data import get_batch, open_dataset
from clvsmim.weights import IMAGENETTE, fetch_imagenette
from clvsmim.weights.errors import DownloadError

__all__ = ["DataUnavailableError", "default_images", "book_data_root", "probe_images"]


class DataUnavailableError(DownloadError):
    """The paper book's default images (Imagenette) could not be fetched or verified."""


def default_images(progress: bool = True) -> str:
    """The folder holding Imagenette's ``train/`` and ``val/`` (the analyses read ``val/``),
    fetched, sha256-verified (pinned on first download, see :mod:`clvsmim.weights.download`) and
    extracted into the cache on first use. Raises :class:`DataUnavailableError` — one line,
    naming ``--data`` — when that fails (no network, a tampered archive, ...)."""
    try:
        return str(fetch_imagenette(progress=progress))
    except Exception as exc:  # DownloadError, ChecksumError, OSError, tarfile.TarError ...
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(reason) > 300:
            reason = reason[:297] + "..."
        raise DataUnavailableError(
            f"the paper book's default images, Imagenette ({IMAGENETTE.url}), could not be fetched ({reason}); "
            f"give an ImageFolder with --data PATH (in a notebook: data_root = \"PATH\")") from exc


def book_data_root(profile, source: str, data_root: str | None) -> str | None:
    """The images a chapter reads: ``data_root`` when given; with ``source="official"`` and a
    profile (name or :class:`~clvsmim.config.Profile`) without its own ``data.root``, Imagenette
    (:func:`default_images`); else ``None`` (the profile's data)."""
    if data_root is not None or source != "official":
        return data_root
    cfg = load_profile(profile) if isinstance(profile, str) else profile
    return None if cfg.data.root is not None else default_images()


def probe_images(profile, n: int | None = None):
    """Up to ``n`` (default ``profile.eval.num_analysis_images``) evaluation images of the
    profile's data taken round-robin over the classes (class order, then file order), so that
    every class gets a train and a test image: ``(uint8 n×3×S×S, int64 n)``."""
    n = n or profile.eval.num_analysis_images
    dataset = open_dataset(profile.data, "eval")
    order = analysis_order(torch.as_tensor(dataset.labels), len(dataset), n)
    return get_batch(dataset, order.sort().values)
