"""The HTML book: assemble a Jupyter Book source tree from the executed notebooks, build it,
and check that it loads nothing from the network."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

from clvsmim.book.execute import ANSI_ESCAPE
from clvsmim.book.toc import CONFIG_NAME, MATHJAX_FILE, SKIP_DIRS, TOC_NAME, Entry, log, read_entries, strip_suffix


# --------------------------------------------------------------------------------------------
# HTML: assemble a Jupyter Book source tree from the executed notebooks, build, check
# --------------------------------------------------------------------------------------------
def _filter_toc(node: Any, drop: set[str]) -> Any:
    if isinstance(node, list):
        kept = [_filter_toc(x, drop) for x in node]
        return [x for x in kept if x is not None]
    if isinstance(node, dict):
        if "file" in node and strip_suffix(str(node["file"])) in drop:
            return None
        new = {}
        for k, v in node.items():
            v2 = _filter_toc(v, drop) if k in ("parts", "chapters", "sections", "entries") else v
            if k in ("parts", "chapters", "sections", "entries") and not v2:
                continue
            new[k] = v2
        if set(new) <= {"caption", "numbered"}:  # a part left with no chapters
            return None
        return new
    return node


def _sync(dest_root: Path, files: dict[str, Path | bytes]) -> None:
    """Make ``dest_root`` hold exactly ``files`` (rel path -> source file or bytes); unchanged
    files keep their mtime so that Sphinx rebuilds only what changed."""
    dest_root.mkdir(parents=True, exist_ok=True)
    for rel, src in files.items():
        dest = dest_root / rel
        data = src if isinstance(src, bytes) else src.read_bytes()
        if dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    keep = {str(Path(r)) for r in files}
    for p in sorted(dest_root.rglob("*"), reverse=True):
        rel = str(p.relative_to(dest_root))
        if p.is_file() and rel not in keep:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()


def _mathjax_source() -> Path | None:
    """MathJax 3 from the PyPI package ``django-static-mathjax`` (served locally, never a CDN);
    ``$CLVSMIM_MATHJAX`` may point at another copy of ``tex-svg-full.js``."""
    env = os.environ.get("CLVSMIM_MATHJAX")
    if env and Path(env).is_file():
        return Path(env)
    try:
        import mathjax  # lazy: optional (django-static-mathjax, the book extra); without it math is not offline
    except ImportError:
        log.warning("MathJax not installed (pip install django-static-mathjax): math will not render offline")
        return None
    path = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE
    return path if path.is_file() else None


def assemble_book(root: Path, out: Path, entries: list[Entry] | None = None,
                  toc_path: str | os.PathLike | None = None) -> Path:
    """Lay out ``<out>/book_src``: ``_config.yml``, a ``_toc.yml`` listing what can be built,
    the non-chapter files of every chapter folder (prose pages, ``data/``, ``_static/``),
    ``figures/`` and the executed notebooks in place of the ``.py`` chapters."""
    root, out = Path(root), Path(out)
    entries = entries if entries is not None else read_entries(root, toc_path)
    toc = yaml.safe_load((Path(toc_path) if toc_path else root / TOC_NAME).read_text()) or {}
    files: dict[str, Path | bytes] = {CONFIG_NAME: root / CONFIG_NAME}

    drop = set()
    for e in entries:
        if e.kind == "missing" or (e.kind == "chapter" and not (out / f"{e.file}.ipynb").is_file()):
            drop.add(e.file)
    if drop:
        log.warning("html: leaving out of the book (no executed notebook / no source): %s", ", ".join(sorted(drop)))
    if toc.get("root") and strip_suffix(str(toc["root"])) in drop:
        raise RuntimeError(f"the book's root page {toc['root']!r} cannot be built")
    files[TOC_NAME] = yaml.safe_dump(_filter_toc(toc, drop), sort_keys=False).encode()

    folders = sorted({str(Path(e.file).parent) for e in entries} - {"."})
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            rel_parts = p.relative_to(base).parts
            if not p.is_file() or any(x.startswith(".") or x in SKIP_DIRS for x in rel_parts):
                continue
            if p.suffix in (".py", ".pyc", ".ipynb"):
                continue
            files[str(Path(folder) / p.relative_to(base))] = p
    for e in entries:
        if e.kind == "page" and e.source is not None:
            files[str(e.source.relative_to(root))] = e.source
        elif e.kind == "chapter" and (out / f"{e.file}.ipynb").is_file():
            files[f"{e.file}.ipynb"] = out / f"{e.file}.ipynb"
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for p in fig_dir.iterdir():
            if p.is_file() and not p.name.startswith("."):
                files[f"figures/{p.name}"] = p
    explorers = out / "explorer"  # clvsmim.explorer data folders; pages load them from _static/explorer/
    if explorers.is_dir():
        static_root = (_static_dirs(root) or ["_static"])[0].rstrip("/")
        for p in explorers.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                files[f"{static_root}/explorer/{p.relative_to(explorers)}"] = p
    mj = _mathjax_source()
    if mj is not None:
        files[f"book/_static/mathjax/{MATHJAX_FILE}"] = mj
    static = _static_dirs(root)
    for s in static:  # Sphinx errors on a missing html_static_path entry
        if not any(k.startswith(s.rstrip("/") + "/") for k in files):
            files[f"{s.rstrip('/')}/.keep"] = b""
    src = out / "book_src"
    _sync(src, files)
    return src


def _static_dirs(root: Path) -> list[str]:
    cfg = yaml.safe_load((root / CONFIG_NAME).read_text()) or {}
    return list(((cfg.get("sphinx") or {}).get("config") or {}).get("html_static_path") or [])


def build_html(book_src: Path, out: Path, strict: bool = True) -> tuple[bool, Path, list[str]]:
    """``jupyter-book build`` (warnings are errors, nitpicky) into ``<out>/_build/html``, then
    :func:`check_offline`. Returns (ok, html dir, problems)."""
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(book_src), "--path-output", str(out), "--builder", "html", "--keep-going"]
    if strict:
        cmd += ["-W", "-n"]
    log.info("html: %s", " ".join(cmd[3:]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log_path = out / "book" / "html_build.log"
    log_path.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    html_dir = out / "_build" / "html"
    problems: list[str] = []
    if proc.returncode != 0:
        tail = [ANSI_ESCAPE.sub("", ln) for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-25:]
        problems.append(f"jupyter-book build exited {proc.returncode} (full log: {log_path})")
        problems += ["  " + ln for ln in tail]
    if html_dir.is_dir():
        problems += check_offline(html_dir)
    else:
        problems.append(f"no HTML at {html_dir}")
    log.info("html: %s in %.1fs", "ok" if not problems else "FAILED", time.perf_counter() - t0)
    return not problems, html_dir, problems


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.links.append((a.get("rel", ""), a["href"]))
        elif tag == "img" and a.get("src"):
            self.imgs.append(a["src"])


_REMOTE = re.compile(r"^(https?:)?//", re.I)


def page_refs(html_file: Path) -> _Refs:
    p = _Refs()
    p.feed(html_file.read_text(errors="replace"))
    return p


def check_offline(html_dir: Path) -> list[str]:
    """Problems that would stop the HTML from working offline: scripts, stylesheets or images
    loaded from the network, a local asset that is missing, math without the local MathJax."""
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        rel = page.relative_to(html_dir)
        if rel.parts[0] in ("_static", "_sources"):  # theme templates, not pages
            continue
        refs = page_refs(page)
        assets = [("script", s) for s in refs.scripts] + [("img", s) for s in refs.imgs]
        assets += [("stylesheet", h) for r, h in refs.links if "stylesheet" in r or "preload" in r]
        for kind, url in assets:
            if _REMOTE.match(url):
                problems.append(f"{rel}: {kind} from the network: {url}")
                continue
            if url.startswith("data:"):
                continue
            local = (page.parent / url.split("?")[0].split("#")[0]).resolve()
            if not local.is_file():
                problems.append(f"{rel}: {kind} not found: {url}")
    return problems
