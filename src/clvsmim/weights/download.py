"""The verified local file of a registry entry: :func:`fetch` (download if needed, verify before
use), :func:`verify`, :func:`cached_path`.

* Files land in ``clvsmim.paths.cache_dir("weights")`` (or the ``cache`` folder passed); a
  download streams into ``<file>.part`` and resumes from there (:mod:`clvsmim.weights.transfer`).
* Nothing is used before it is verified: the size (when known) and the sha256 are checked
  first, against the registry or the lock file's pins (:mod:`clvsmim.weights.pins`); a bad
  file raises :class:`~clvsmim.weights.errors.ChecksumError` and is moved aside.
* Google Drive (``source="gdrive"``): the direct-download form may answer with an HTML
  confirmation page (followed automatically) or a quota page; then
  :class:`~clvsmim.weights.errors.DownloadError` says how to download manually and where to put the file.
"""
from __future__ import annotations

import os
from pathlib import Path

from clvsmim.paths import cache_dir
from clvsmim.weights.errors import DownloadError
from clvsmim.weights.pins import check_file, file_digests
from clvsmim.weights.registry import WeightEntry, all_entries, get_entry
from clvsmim.weights.transfer import download


def cached_path(name: str | WeightEntry, cache: str | Path | None = None) -> Path:
    """Where ``fetch`` keeps the file of ``name`` (whether or not it exists)."""
    entry = get_entry(name)
    if not entry.filename:
        raise DownloadError(f"{entry.name} is not a file of ours (source={entry.source!r}); "
                            "timm's hub caches it (use load_pretrained)")
    folder = Path(cache) if cache is not None else cache_dir("weights")
    return folder / entry.filename


def fetch(name: str | WeightEntry, cache: str | Path | None = None, progress: bool = True, *,
          lock: str | Path | None = None, retries: int = 3, timeout: float = 60.0) -> Path:
    """Return the verified local file of registry entry ``name``, downloading it if needed.

    An existing cached file is verified too (and pinned if unpinned). Raises
    :class:`ChecksumError` (bad file moved aside) or :class:`DownloadError`.

    Google Drive (``simmim_vit_b``) may refuse with a quota page. Then download the file in a
    browser (``https://drive.google.com/file/d/<id>/view``) and either place it at
    :func:`cached_path` (``fetch``/``verify`` then verify and pin it) or pass its path to
    ``load_checkpoint(path, allow_pickle=True)`` / ``load_pretrained(name, path=path, ...)``.
    """
    entry = get_entry(name)
    dest = cached_path(entry, cache)
    if dest.exists():
        check_file(entry, dest, lock=lock)
        return dest
    part = download(entry, dest, progress=progress, retries=retries, timeout=timeout)
    check_file(entry, part, lock=lock, final=dest)
    os.replace(part, dest)
    return dest


def verify(name_or_path: str | Path | WeightEntry, cache: str | Path | None = None, *,
           lock: str | Path | None = None) -> str:
    """Verify a cached registry file (by name) or a file path; return its sha256.

    A path whose file name is a registry entry's is checked against that entry (a bad file is
    reported, not moved, unless it is the cached copy); any other path just gets hashed.
    Unpinned entries are pinned on first verification.
    """
    entries = all_entries()
    if isinstance(name_or_path, WeightEntry) or (isinstance(name_or_path, str) and name_or_path in entries):
        entry = get_entry(name_or_path)
        path = cached_path(entry, cache)
        if not path.exists():
            raise FileNotFoundError(f"{entry.name} is not cached at {path}; run `clvsmim weights fetch {entry.name}`")
        return check_file(entry, path, lock=lock)
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file, and not a registry name (known: {sorted(entries)})")
    for entry in entries.values():
        if entry.filename and path.name == entry.filename:
            in_cache = path.resolve() == cached_path(entry, cache).resolve()
            return check_file(entry, path, lock=lock, move_bad=in_cache)
    return file_digests(path)[0]
