#!/usr/bin/env python
"""Check a built book in a headless browser, offline.

    python tests/browser_check.py <out>/_build/html [--out <out>] [--chromium /usr/bin/chromium]

For every content page (not the search / index pages, not ``_static``):

1. static check (Python): every ``<img src>`` resolves to an existing, non-empty file that
   decodes as an image (PIL for raster images, XML with an ``<svg>`` root for SVG; ``data:``
   URIs are decoded too);
2. browser check: a copy of the page with a small script added is opened in headless Chromium
   with ``--dump-dom``, with every host name unresolvable (so nothing can come from the
   network). The script waits for MathJax (if the page has one) and writes, into the DOM, the
   images that did not load (``naturalWidth == 0``) and whether the page's math was typeset;
3. a screenshot of the page goes to ``<out>/screenshots/<page>.png``.

Exits 1 listing the broken images (and untypeset math) per page; 0 when every page is clean.
``--no-browser`` runs only the static check (when Chromium is not installed).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from urllib.parse import unquote

SKIP_PAGES = {"genindex.html", "search.html", "index.html", "py-modindex.html"}
MARK = "clvsmim-browser-check"

CHECK_JS = """
<script>
(function () {
  function report() {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.getAttribute('src'); });
    var out = document.createElement('pre');
    out.id = '%(mark)s';
    out.textContent = JSON.stringify({
      images: imgs.length, broken: broken,
      math: document.querySelectorAll('.math').length,
      typeset: document.querySelectorAll('mjx-container').length,
      mathErrors: document.querySelectorAll('mjx-merror, merror').length
    });
    document.body.appendChild(out);
  }
  window.addEventListener('load', function () {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(report, report); }
    else if (document.querySelector('script[src*="mathjax"]')) { setTimeout(report, 3000); }
    else { report(); }
  });
})();
</script>
""" % {"mark": MARK}


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            src = dict(attrs).get("src")
            self.srcs.append(src or "")


def content_pages(html_dir: Path) -> list[Path]:
    pages = []
    for p in sorted(html_dir.rglob("*.html")):
        rel = p.relative_to(html_dir)
        if rel.parts[0] in ("_static", "_sources", "_images") or (len(rel.parts) == 1 and rel.name in SKIP_PAGES):
            continue
        if p.name.startswith(".") or MARK in p.name:
            continue
        pages.append(p)
    return pages


def _decodes(data: bytes, name: str) -> str | None:
    """None if ``data`` is a valid image, else why not."""
    if not data:
        return "empty file"
    if name.lower().endswith(".svg") or data.lstrip()[:5] in (b"<?xml", b"<svg ") or b"<svg" in data[:300]:
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            return f"invalid SVG ({exc})"
        return None if root.tag.endswith("svg") else f"XML root is <{root.tag}>, not <svg>"
    try:
        from PIL import Image

        with Image.open(BytesIO(data)) as im:
            im.load()
            if im.width == 0 or im.height == 0:
                return "zero-size image"
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a broken image
        return f"not decodable ({type(exc).__name__}: {exc})"
    return None


def static_check(page: Path) -> list[str]:
    """Broken ``<img>`` of one page, checked on disk."""
    parser = _Imgs()
    parser.feed(page.read_text(errors="replace"))
    problems = []
    for src in parser.srcs:
        if not src:
            problems.append("<img> without src")
            continue
        if src.startswith("data:"):
            head, _, payload = src.partition(",")
            try:
                data = base64.b64decode(payload) if ";base64" in head else unquote(payload).encode()
            except ValueError as exc:
                problems.append(f"{src[:40]}...: bad data URI ({exc})")
                continue
            why = _decodes(data, "inline.svg" if "svg" in head else "inline")
        elif re.match(r"^(https?:)?//", src):
            problems.append(f"{src}: loaded from the network")
            continue
        else:
            path = (page.parent / unquote(src.split("#")[0].split("?")[0])).resolve()
            if not path.is_file():
                problems.append(f"{src}: file not found")
                continue
            why = _decodes(path.read_bytes(), path.name)
        if why:
            problems.append(f"{src}: {why}")
    return problems


def chromium_flags(profile_dir: str) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={profile_dir}",
        # No name resolves: anything the page tried to fetch from the network would fail.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,1600",
    ]


def browser_check(page: Path, chromium: str, shot: Path, timeout: float = 90) -> tuple[list[str], dict]:
    """Load the page in headless Chromium: broken images, math typesetting, screenshot."""
    problems: list[str] = []
    html = page.read_text(errors="replace")
    probe = page.with_name(f".{page.stem}.{MARK}.html")  # same folder: relative links still resolve
    injected = re.sub(r"(?i)</body>", CHECK_JS + "</body>", html, count=1) if re.search(r"(?i)</body>", html) \
        else html + CHECK_JS
    info: dict = {}
    with tempfile.TemporaryDirectory(prefix="clvsmim-chromium-") as prof:
        try:
            probe.write_text(injected)
            cmd = [chromium, *chromium_flags(prof), "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            m = re.search(rf'<pre id="{MARK}"[^>]*>(.*?)</pre>', proc.stdout, re.S)
            if not m:
                problems.append(f"browser: no report from the page (chromium exit {proc.returncode}: "
                                f"{proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else ''})")
            else:
                import html as _html

                info = json.loads(_html.unescape(m.group(1)))
                for src in info.get("broken", []):
                    problems.append(f"{src}: did not load in the browser (naturalWidth 0)")
                if info.get("math") and not info.get("typeset"):
                    problems.append(f"{info['math']} math element(s) not typeset (MathJax did not run)")
                if info.get("mathErrors"):
                    problems.append(f"{info['mathErrors']} MathJax error(s) in the math")
        finally:
            probe.unlink(missing_ok=True)
        shot.parent.mkdir(parents=True, exist_ok=True)
        cmd = [chromium, *chromium_flags(prof), "--virtual-time-budget=15000", f"--screenshot={shot}",
               page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if not shot.is_file() or shot.stat().st_size == 0:
            problems.append(f"browser: no screenshot (chromium exit {proc.returncode})")
    return problems, info


def shot_name(html_dir: Path, page: Path) -> str:
    rel = page.relative_to(html_dir).with_suffix("")
    return "__".join(rel.parts[1:] if rel.parts[0] == "book" and len(rel.parts) > 1 else rel.parts) + ".png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None,
                    help="where screenshots/ goes (default: the book's <out>, two levels above html_dir)")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium")
                    or shutil.which("chromium-browser") or "/usr/bin/chromium")
    ap.add_argument("--no-browser", action="store_true", help="static check only")
    args = ap.parse_args(argv)

    html_dir = args.html_dir.resolve()
    if not html_dir.is_dir():
        print(f"no such HTML folder: {html_dir}", file=sys.stderr)
        return 2
    out = (args.out or html_dir.parent.parent).resolve()
    use_browser = not args.no_browser
    if use_browser and not Path(args.chromium).is_file() and not shutil.which(args.chromium):
        print(f"chromium not found ({args.chromium}); install it (apt-get install -y chromium) "
              "or pass --no-browser", file=sys.stderr)
        return 2

    pages = content_pages(html_dir)
    if not pages:
        print(f"no content pages under {html_dir}", file=sys.stderr)
        return 2
    failed = 0
    for page in pages:
        rel = page.relative_to(html_dir)
        problems = static_check(page)
        info: dict = {}
        if use_browser:
            more, info = browser_check(page, args.chromium, out / "screenshots" / shot_name(html_dir, page))
            problems += more
        summary = f"{info.get('images', '?')} images, math {info.get('typeset', 0)}/{info.get('math', 0)}" \
            if info else ""
        if problems:
            failed += 1
            print(f"FAIL {rel} {summary}")
            for p in problems:
                print(f"     {p}")
        else:
            print(f"ok   {rel} {summary}")
    if use_browser:
        print(f"screenshots: {out / 'screenshots'}")
    print(f"{len(pages) - failed} pages ok, {failed} with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
