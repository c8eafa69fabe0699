"""Downloads with resume, checksum verification before use, and lock-file pinning.

* Files land in ``clvsmim.paths.cache_dir("weights")`` (or the ``cache`` folder passed).
  A download streams into ``<file>.part``; an interrupted one resumes from there with an HTTP
  ``Range`` request (automatically up to ``retries`` times, and on the next call).
* Nothing is used before it is verified: the size (when known) and the sha256 are checked
  first. A mismatch, or a truncated file, raises :class:`ChecksumError` naming expected vs
  found, and the bad file is moved aside to ``<file>.corrupt-<timestamp>``.
* Where no upstream source publishes a sha256 (all current entries), the first successful
  download is trusted and *pinned*: its sha256 and size are written to the lock file, and every
  later download or ``verify`` must match. The lock file is ``$CLVSMIM_WEIGHTS_LOCK`` if set,
  else ``<cache>/weights.lock.json`` (``<cache>`` = :func:`clvsmim.paths.cache_dir`). Commit it
  to share the pins: pins in the packaged ``clvsmim/weights/weights.lock.json`` are read too (a
  development checkout can pin straight into it with
  ``CLVSMIM_WEIGHTS_LOCK=src/clvsmim/weights/weights.lock.json``).
* Google Drive (``source="gdrive"``): the direct-download form may answer with an HTML
  confirmation page (followed automatically) or a quota page; then :class:`DownloadError`
  says how to download manually and where to put the file.

Only the standard library (``urllib``) is used, plus ``tqdm`` for the progress bar.
"""
from __future__ import annotations

import hashlib
import html.parser
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from clvsmim.cache import write_json_atomic
from clvsmim.paths import cache_dir
from clvsmim.weights.registry import IMAGENETTE, WeightEntry, all_entries, get_entry

CHUNK = 1 << 20
USER_AGENT = "clvsmim-weights/0.1 (+https://github.com/naver-ai/cl-vs-mim reproduction)"
PACKAGED_LOCK = Path(__file__).with_name("weights.lock.json")


class DownloadError(RuntimeError):
    """A download could not be completed (network, HTTP error, an HTML page instead of a file)."""


class ChecksumError(DownloadError):
    """A file does not match its expected size / checksum. ``moved_to`` is where it went."""

    def __init__(self, message: str, *, expected: str | int | None = None, found: str | int | None = None,
                 moved_to: Path | None = None):
        super().__init__(message)
        self.expected, self.found, self.moved_to = expected, found, moved_to


# ----------------------------------------------------------------------------- lock file
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


# ----------------------------------------------------------------------------- verification
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


# ----------------------------------------------------------------------------- HTTP
class _DriveForm(html.parser.HTMLParser):
    """Find Google Drive's "download anyway" form (or a ``confirm=`` link) in an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.confirm_href: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and (a.get("id") == "download-form" or "download" in a.get("action", "")):
            self.action, self._in_form = a.get("action"), True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", "") and self.confirm_href is None:
            self.confirm_href = a["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False

    def next_url(self, base: str) -> str | None:
        if self.action:
            query = urllib.parse.urlencode(self.fields)
            return urllib.parse.urljoin(base, self.action) + ("?" + query if query else "")
        if self.confirm_href:
            return urllib.parse.urljoin(base, self.confirm_href)
        return None


def _manual_hint(entry: WeightEntry, dest: Path) -> str:
    how = entry.manual or (f"Download {entry.url} in a browser and place it at the cache path, or pass its "
                           "path to load_checkpoint().")
    return f"{how}\nCache path for {entry.name}: {dest}"


class _Incomplete(Exception):
    pass


def _stream(url: str, part: Path, *, entry: WeightEntry, dest: Path, progress: bool, timeout: float) -> str | None:
    """One HTTP attempt into ``part`` (resuming). Returns a new URL to follow, or None when done."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: complete already, or a stale .part
            total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return None
            part.unlink()
            raise _Incomplete(f"stale partial file for {url} discarded") from exc
        if 500 <= exc.code < 600:
            raise _Incomplete(f"HTTP {exc.code} from {url}") from exc
        hint = ("\n" + _manual_hint(entry, dest)) if entry.source == "gdrive" else ""
        raise DownloadError(f"{entry.name}: HTTP {exc.code} {exc.reason} for {url}{hint}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Incomplete(f"{url}: {exc}") from exc

    with resp:
        ctype = resp.headers.get("Content-Type", "")
        status = getattr(resp, "status", 200)
        if status != 206 and "text/html" in ctype.lower():
            page = resp.read(2_000_000).decode("utf-8", "replace")
            form = _DriveForm()
            form.feed(page)
            nxt = form.next_url(resp.geturl())
            if nxt and nxt != url:
                return nxt
            quota = "quota" in page.lower() or "too many users" in page.lower()
            raise DownloadError(
                f"{entry.name}: {url} answered with an HTML page instead of the file"
                f"{' (Google Drive download quota exceeded)' if quota else ''}.\n{_manual_hint(entry, dest)}")
        if status == 206:
            start = (resp.headers.get("Content-Range") or "bytes 0-").split()[1].split("-")[0]
            if not start.isdigit() or int(start) != offset:
                part.unlink()
                raise _Incomplete(f"server resumed at byte {start}, expected {offset}; restarting")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = offset + remaining if remaining is not None else entry.size
        got = 0
        bar = _progress(total, offset, entry.filename or entry.name, progress)
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                        raise _Incomplete(f"connection dropped after {offset + got} bytes: {exc}") from exc
                    if not chunk:
                        break
                    fh.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        if remaining is not None and got < remaining:
            raise _Incomplete(f"connection closed after {offset + got} of {offset + remaining} bytes")
    return None


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled, leave=False)


def download(entry: WeightEntry, dest: Path, *, progress: bool = True, retries: int = 3,
             timeout: float = 60.0) -> Path:
    """Download ``entry.url`` into ``<dest>.part`` (resuming), WITHOUT verifying; returns the part."""
    if not entry.url:
        raise DownloadError(f"{entry.name} has no URL (source={entry.source!r})")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    url, hops, attempt, last = entry.url, 0, 0, ""
    while True:
        try:
            nxt = _stream(url, part, entry=entry, dest=dest, progress=progress, timeout=timeout)
        except _Incomplete as exc:
            attempt, last = attempt + 1, str(exc)
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{entry.name}: download failed after {retries + 1} attempts ({last}); {have} bytes kept in "
                    f"{part} — run the fetch again to resume.") from exc
            time.sleep(min(0.5 * attempt, 5.0))
            continue
        if nxt is None:
            return part
        hops += 1
        if hops > 3:
            raise DownloadError(f"{entry.name}: too many confirmation pages.\n{_manual_hint(entry, dest)}")
        url = nxt


# ----------------------------------------------------------------------------- public API
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


# ----------------------------------------------------------------------------- archives
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
