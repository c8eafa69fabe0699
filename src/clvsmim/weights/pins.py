"""The sha256 pins of downloaded files, and checking a file against them before it is used.

Where no upstream source publishes a sha256 (all current entries), the first successful
download is trusted and *pinned*: its sha256 and size are written to the lock file, and every
later download or ``verify`` must match. The lock file is ``$CLVSMIM_WEIGHTS_LOCK`` if set,
else ``<cache>/weights.lock.json`` (``<cache>`` = :func:`clvsmim.paths.cache_dir`). Commit it
to share the pins: pins in the packaged ``clvsmim/weights/weights.lock.json`` are read too (a
development checkout can pin straight into it with
``CLVSMIM_WEIGHTS_LOCK=src/clvsmim/weights/weights.lock.json``).

A mismatch, or a truncated file, raises :class:`~clvsmim.weights.errors.ChecksumError` naming
expected vs found, and the bad file is moved aside to ``<file>.corrupt-<timestamp>``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from clvsmim.cache import write_json_atomic
from clvsmim.paths import cache_dir
from clvsmim.weights.errors import ChecksumError, DownloadError
from clvsmim.weights.registry import WeightEntry

CHUNK = 1 << 20  # bytes read (and downloaded) at a time
PACKAGED_LOCK = Path(__file__).with_name("weights.lock.json")


def lock_path() -> Path:
    """The user lock file: ``$CLVSMIM_WEIGHTS_LOCK``, else ``<cache>/weights.lock.json``."""
    env = os.environ.get("CLVSMIM_WEIGHTS_LOCK")
    return Path(env) if env else cache_dir() / "weights.lock.json"


def read_lock(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "size", "url", "pinned_at"}}`` from a lock file (empty if absent)."""
    path = Path(path) if path is not None else lock_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise DownloadError(f"lock file {path} is not valid JSON ({exc}); fix or delete it") from exc
    return dict(raw.get("entries", {}))


def _write_lock(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"_comment": "sha256 pins of downloaded files (clvsmim.weights); commit to share them",
            "version": 1, "entries": dict(sorted(entries.items()))}
    write_json_atomic(path, blob, indent=2)


def expected_digest(entry: WeightEntry, lock: str | Path | None = None) -> tuple[str | None, int | None, str]:
    """``(sha256, size, where)``: the registry's values, else a packaged pin, else a user pin."""
    if entry.sha256:
        return entry.sha256.lower(), entry.size, "registry"
    for where, path in (("packaged lock", PACKAGED_LOCK), ("lock file", Path(lock) if lock else lock_path())):
        pin = read_lock(path).get(entry.name)
        if pin and pin.get("sha256"):
            return str(pin["sha256"]).lower(), entry.size or pin.get("size"), f"{where} {path}"
    return None, entry.size, "unpinned"


def pin(entry: WeightEntry, sha256: str, size: int, lock: str | Path | None = None) -> Path:
    """Record ``sha256``/``size`` for ``entry`` in the user lock file; returns its path."""
    path = Path(lock) if lock else lock_path()
    entries = read_lock(path)
    entries[entry.name] = {"sha256": sha256, "size": size, "url": entry.url,
                           "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_lock(path, entries)
    return path



def file_digests(path: str | Path) -> tuple[str, str, int]:
    """``(sha256, md5, size)`` of a file, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def move_aside(path: Path, like: Path | None = None) -> Path:
    """Rename ``path`` to ``<like or path>.corrupt-<timestamp>`` (never overwriting)."""
    base = like or path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = base.with_name(f"{base.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = base.with_name(f"{base.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def check_file(entry: WeightEntry, path: Path, *, lock: str | Path | None = None, final: Path | None = None,
               move_bad: bool = True, pin_unpinned: bool = True) -> str:
    """Verify ``path`` against ``entry`` (size, md5 prefix, sha256); return the sha256.

    Unpinned entries are pinned (trust on first use) when ``pin_unpinned``. On failure the file
    is moved aside (``<final or path>.corrupt-<timestamp>``) when ``move_bad`` and
    :class:`ChecksumError` is raised.
    """
    final = final or path
    want_sha, want_size, where = expected_digest(entry, lock)

    def fail(what: str, expected, found) -> None:
        moved = move_aside(path, final) if move_bad else None
        tail = f"; the file was moved aside to {moved}" if moved else ""
        raise ChecksumError(
            f"{entry.name}: {what} mismatch for {final}: expected {expected}, found {found} "
            f"(expected value from {where if what != 'md5 prefix' else 'upstream README'}){tail}. "
            f"Fetch it again (`clvsmim weights fetch {entry.name}`); if the upstream file really changed, "
            f"remove its pin from {Path(lock) if lock else lock_path()}.",
            expected=expected, found=found, moved_to=moved)

    size = path.stat().st_size
    if want_size is not None and size != want_size:
        fail("size (truncated or wrong file)" if size < want_size else "size", f"{want_size} bytes", f"{size} bytes")
    sha, md5, size = file_digests(path)
    if entry.md5_prefix and not md5.startswith(entry.md5_prefix.lower()):
        fail("md5 prefix", entry.md5_prefix, md5)
    if want_sha is None:
        if pin_unpinned:
            where_pinned = pin(entry, sha, size, lock)
            print(f"[clvsmim.weights] {entry.name}: no published sha256; pinned {sha} ({size} bytes) "
                  f"in {where_pinned}", file=sys.stderr)
        return sha
    if sha != want_sha:
        fail("sha256", want_sha, sha)
    return sha
