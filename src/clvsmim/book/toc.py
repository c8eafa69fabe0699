"""The book's layout: the project root, the table of contents, and the hashes that decide
whether a chapter runs again."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from clvsmim.config import PROFILE_DIR
from clvsmim.paths import PACKAGE_DIR

log = logging.getLogger("clvsmim.book")

TOC_NAME = "_toc.yml"
CONFIG_NAME = "_config.yml"
KERNEL_NAME = "clvsmim-book"
NOTEBOOKS_BRANCH = "notebooks"  # the branch holding the rendered Colab notebooks
SOURCE_BRANCH = "main"
CHAPTER_SUFFIX = ".py"
PAGE_SUFFIXES = (".md", ".ipynb", ".rst")
PARAMETERS = ("profile", "data_root", "seed", "device", "source", "images")
SOURCES = ("zoo", "official")


def default_source(profile: str) -> str:
    """``official`` for the ``paper`` profile (its ViT-B/16 zoo would take thousands of GPU-hours),
    ``zoo`` otherwise."""
    return "official" if Path(str(profile)).stem == "paper" else "zoo"
SKIP_DIRS = {"__pycache__", "_build", ".ipynb_checkpoints"}
MATHJAX_FILE = "tex-svg-full.js"  # MathJax 3 with every TeX extension and SVG output: one file



# --------------------------------------------------------------------------------------------
# Project layout and table of contents
# --------------------------------------------------------------------------------------------
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: the first folder at or above ``start`` (default: cwd) holding
    ``_toc.yml`` and ``_config.yml``; else the checkout this package lives in."""
    here = Path(start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / TOC_NAME).is_file() and (cand / CONFIG_NAME).is_file():
            return cand
    pkg_root = PACKAGE_DIR.parents[1]
    if (pkg_root / TOC_NAME).is_file():
        return pkg_root
    raise FileNotFoundError(f"no {TOC_NAME} + {CONFIG_NAME} at or above {here}; pass --root")


def toc_files(toc: dict[str, Any]) -> list[str]:
    """Every ``file`` entry of a jupyter-book ``_toc.yml`` (``root`` first), in reading order."""
    out: list[str] = []
    if toc.get("root"):
        out.append(strip_suffix(str(toc["root"])))

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                out.append(strip_suffix(str(node["file"])))
            if "glob" in node:
                log.warning("toc: 'glob' entries are not run by clvsmim book: %s", node["glob"])
            for key in ("parts", "chapters", "sections", "entries"):
                if key in node:
                    walk(node[key])

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def strip_suffix(file: str) -> str:
    p = Path(file)
    return str(p.with_suffix("")) if p.suffix in (CHAPTER_SUFFIX, *PAGE_SUFFIXES) else file


@dataclass
class Entry:
    """One toc entry: ``file`` as written in the toc (no suffix), its kind and source file."""

    file: str
    kind: str  # "chapter" (.py, executed) | "page" (.md/.ipynb/.rst, copied) | "missing"
    source: Path | None

    @property
    def name(self) -> str:
        return Path(self.file).name


def read_entries(root: str | os.PathLike, toc_path: str | os.PathLike | None = None) -> list[Entry]:
    """The toc's entries, each resolved to a chapter (``<file>.py``), a page or ``missing``."""
    root = Path(root)
    toc_path = Path(toc_path) if toc_path else root / TOC_NAME
    toc = yaml.safe_load(toc_path.read_text()) or {}
    entries = []
    for file in toc_files(toc):
        py = root / f"{file}{CHAPTER_SUFFIX}"
        if py.is_file():
            entries.append(Entry(file, "chapter", py))
            continue
        page = next((root / f"{file}{s}" for s in PAGE_SUFFIXES if (root / f"{file}{s}").is_file()), None)
        entries.append(Entry(file, "page", page) if page else Entry(file, "missing", None))
    return entries


# --------------------------------------------------------------------------------------------
# Hashes (what decides whether a chapter runs again)
# --------------------------------------------------------------------------------------------
def _hash_files(paths: Iterable[Path], base: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(base)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def package_hash() -> str:
    """sha256 over the ``clvsmim`` package's source and data files (``.py``, ``.yaml``, ...)."""
    pkg = PACKAGE_DIR
    files = [p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix in {".py", ".yaml", ".yml", ".json", ".csv", ".txt", ".toml"}]
    return _hash_files(files, pkg)


def _data_hash(chapter_dir: Path) -> str:
    data = chapter_dir / "data"
    files = [p for p in data.rglob("*") if p.is_file()] if data.is_dir() else []
    return _hash_files(files, chapter_dir)


def profile_path(profile: str) -> Path:
    """The YAML file of a profile name (``smoke``/``mini``/``paper``) or path."""

    p = Path(profile)
    return p if p.suffix else PROFILE_DIR / f"{profile}.yaml"


def chapter_hash(source: Path, params: dict[str, Any], profile: str, pkg_hash: str) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    prof = profile_path(profile)
    h.update(prof.read_bytes() if prof.is_file() else str(profile).encode())
    h.update(pkg_hash.encode())
    h.update(_data_hash(source.parent).encode())
    return h.hexdigest()
