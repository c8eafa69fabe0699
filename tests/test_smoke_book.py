"""The smoke book, end to end: every poster figure, every chapter, the HTML, a browser.

CI builds the smoke book once (``make smoke-book``) and points ``CLVSMIM_SMOKE_BOOK`` at it;
without that variable the book is built here into a temporary folder (minutes).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIGURE_IDS = [f"F{i}" for i in range(11)]

pytestmark = pytest.mark.slow


def _chapters() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [c["file"] for c in toc["chapters"]]


@pytest.fixture(scope="module")
def book_out(tmp_path_factory) -> Path:
    env_out = os.environ.get("CLVSMIM_SMOKE_BOOK")
    if env_out:
        out = Path(env_out)
        if not out.is_absolute():
            out = REPO / out
        assert (out / "figures" / "manifest.json").is_file(), f"CLVSMIM_SMOKE_BOOK={env_out} holds no built book"
        return out
    out = tmp_path_factory.mktemp("smoke-book")
    proc = subprocess.run([sys.executable, "-m", "clvsmim", "book", "--profile", "smoke", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"smoke book failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def _finite(obj, where="data"):
    if isinstance(obj, float):
        assert math.isfinite(obj), f"non-finite value at {where}"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")


def test_every_poster_figure_is_in_the_manifest_with_files_and_finite_data(book_out):
    manifest = json.loads((book_out / "figures" / "manifest.json").read_text())
    figures = manifest.get("figures", manifest)
    missing = [f for f in FIGURE_IDS if f not in figures]
    assert not missing, f"figures missing from the manifest: {missing}"
    for fig_id in FIGURE_IDS:
        for ext in ("png", "svg"):
            path = book_out / "figures" / f"{fig_id}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, f"{path} missing or empty"
        data_json = book_out / "figures" / f"{fig_id}.json"
        data_csv = book_out / "figures" / f"{fig_id}.csv"
        assert data_json.is_file() or data_csv.is_file(), f"{fig_id}: no data file"
        if data_json.is_file():
            _finite(json.loads(data_json.read_text()), fig_id)
        entry = figures[fig_id]
        assert entry.get("chapter") and entry.get("profile") == "smoke", f"{fig_id}: manifest entry {entry}"


def test_every_chapter_executed_without_error(book_out):
    for chapter in _chapters():
        path = book_out / f"{chapter}.ipynb"
        assert path.is_file(), f"{chapter}: no executed notebook at {path}"
        nb = nbformat.read(path, as_version=4)
        errors = [(i, o.get("ename"), o.get("evalue")) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
                  for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{chapter}: error outputs {errors}"


def test_html_has_a_page_per_chapter(book_out):
    html = book_out / "_build" / "html"
    for chapter in _chapters():
        page = html / f"{chapter}.html"
        assert page.is_file() and page.stat().st_size > 2000, f"no HTML page for {chapter} at {page}"
        text = page.read_text()
        assert "<img" in text, f"{page} shows no figure"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_every_chapter_page_loads_in_chromium_with_all_images(book_out):
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "browser_check.py"), str(book_out / "_build" / "html"),
                           "--out", str(book_out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"browser check failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    shots = list((book_out / "screenshots").glob("*.png"))
    assert len(shots) >= len(_chapters()), f"expected a screenshot per chapter, found {[s.name for s in shots]}"
