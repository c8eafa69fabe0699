"""Data set archives: safe tar extraction (no absolute paths, ``..``, outward links or devices)
and Imagenette, downloaded, verified and extracted atomically."""
from __future__ import annotations

import os
import shutil
import tarfile
import time
from pathlib import Path

from clvsmim.paths import cache_dir
from clvsmim.weights.download import fetch
from clvsmim.weights.errors import DownloadError
from clvsmim.weights.registry import IMAGENETTE, WeightEntry


def _safe_members(tar: tarfile.TarFile, target: Path):
    root = target.resolve()
    for m in tar.getmembers():
        name = m.name
        if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in Path(name).parts:
            raise DownloadError(f"refusing to extract {name!r}: path leaves the target folder")
        if not (root / name).resolve().is_relative_to(root):
            raise DownloadError(f"refusing to extract {name!r}: path leaves the target folder")
        if m.issym() or m.islnk():
            link = Path(m.linkname)
            resolved = ((root / name).parent / link if m.issym() else root / link).resolve()
            if link.is_absolute() or not resolved.is_relative_to(root):
                raise DownloadError(f"refusing to extract link {name!r} -> {m.linkname!r}: it points outside")
        elif not (m.isfile() or m.isdir()):
            raise DownloadError(f"refusing to extract {name!r}: not a regular file or folder")
        yield m


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a tar archive into ``target``, refusing absolute paths, ``..``, outward links,
    devices; uses tarfile's ``data`` filter where available too."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = list(_safe_members(tar, target))
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **kwargs)
    return target


def _find_split_root(folder: Path) -> Path | None:
    for cand in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if (cand / "train").is_dir() and (cand / "val").is_dir():
            return cand
    return None


def fetch_imagenette(dest: str | Path | None = None, progress: bool = True, *, entry: WeightEntry = IMAGENETTE,
                     cache: str | Path | None = None, lock: str | Path | None = None) -> Path:
    """Download (verified, resumable) and safely extract Imagenette; return the folder holding
    ``train/`` and ``val/``. ``dest`` defaults to ``cache_dir("data")``; the archive is kept in
    ``cache`` (default ``cache_dir("weights")``). Extraction is atomic (temporary folder, then
    rename) and skipped when already done."""
    dest = Path(dest) if dest is not None else cache_dir("data")
    stem = (entry.filename or entry.name).removesuffix(".tgz").removesuffix(".tar.gz")
    final = dest / stem
    if (final / ".complete").exists():
        root = _find_split_root(final)
        if root is not None:
            return root
    archive = fetch(entry, cache=cache, progress=progress, lock=lock)
    tmp = dest / f".{stem}.extracting"
    if tmp.exists():
        shutil.rmtree(tmp)
    safe_extract(archive, tmp)
    inner = tmp / stem if (tmp / stem).is_dir() else tmp
    if _find_split_root(inner) is None:
        shutil.rmtree(tmp)
        raise DownloadError(f"{archive} holds no folder with train/ and val/")
    if final.exists():
        shutil.rmtree(final)
    os.replace(inner, final)
    if tmp.exists():
        shutil.rmtree(tmp)
    (final / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
    return _find_split_root(final)
