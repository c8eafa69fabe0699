"""One file over HTTP into ``<file>.part``, resumable, NOT verified (:mod:`clvsmim.weights.pins`
does that): an interrupted download resumes with an HTTP ``Range`` request (up to ``retries``
times, and on the next call); Google Drive's "download anyway" page is followed, its quota
page becomes a :class:`~clvsmim.weights.errors.DownloadError` saying how to download by hand.

Only the standard library (``urllib``) is used, plus ``tqdm`` for the progress bar.
"""
from __future__ import annotations

import html.parser
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from clvsmim.weights.errors import DownloadError
from clvsmim.weights.pins import CHUNK
from clvsmim.weights.registry import WeightEntry

USER_AGENT = "clvsmim-weights/0.1 (+https://github.com/naver-ai/cl-vs-mim reproduction)"


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
