"""The chapter convention: chapter modules share helpers through ``chapters.common`` only, the
chapter files name the profile ``cfg`` and their chapter module ``ch``, and sentence helpers
return what their names say."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np

from clvsmim.book.chapters import common

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = REPO / "src" / "clvsmim" / "book" / "chapters"
#: A chapter module is the one named after a chapter of the book; the others (common, attention_maps)
#: are helpers that any chapter module may import.
CHAPTER_NAMES = {p.stem for p in CHAPTERS.glob("*.py")} & {p.stem for p in (REPO / "book").glob("*.py")}


def _imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_chapter_module_imports_another_chapter():
    assert {"behaviour", "representation", "summary"} <= CHAPTER_NAMES
    for path in [*CHAPTERS.glob("*.py"), *(REPO / "src" / "clvsmim" / "book" / "plots").glob("*.py")]:
        own = path.stem if path.parent == CHAPTERS else None
        others = {f"clvsmim.book.chapters.{n}" for n in CHAPTER_NAMES if n != own}
        if path.parent != CHAPTERS:  # a plot module may not reach into any chapter module
            others = {f"clvsmim.book.chapters.{n}" for n in CHAPTER_NAMES}
        assert not (_imported_modules(path) & others), f"{path.name} imports {_imported_modules(path) & others}"


def test_chapter_files_call_the_profile_cfg_and_the_module_ch():
    for path in sorted((REPO / "book").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)
                    and any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "chapter_profile"
                            for c in ast.walk(n.value))}
        assert assigned == {"cfg"}, f"{path.name}: the profile from its setup (chapter_profile) named {assigned}"
        aliases = {a.asname for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and n.module == "clvsmim.book.chapters" for a in n.names}
        assert aliases == {"ch"}, f"{path.name}: chapter module imported as {aliases}"
        chapters = {m.split(".")[3] for m in _imported_modules(path)
                    if m.startswith("clvsmim.book.chapters.") and m.split(".")[3] in CHAPTER_NAMES}
        assert chapters == {path.stem}, f"{path.name} imports the chapter modules {chapters}"


def test_fmt_number_formats_any_real_and_refuses_the_rest():
    assert common.fmt_number(np.float32(0.125), 2) == "0.12"  # banker's rounding of the binary value
    assert common.fmt_number(3, 1, "px") == "3.0 px"
    for bad in (None, math.nan, math.inf, "0.5"):
        assert common.fmt_number(bad) == "n/a"


def test_compare_sentence_and_cluster_note_from_common():
    s = common.compare_sentence("x", "A", 2.0, "B", 1.0, ">", "", 1)
    assert s.endswith("**agrees**.") and "A 2.0 vs B 1.0" in s
    assert "0.100" in common.cluster_strength_note(0.1) and common.cluster_strength_note(0.3) == ""


def test_figure_records_are_built_by_the_chapter_modules():
    from clvsmim.book.chapters import representation as rep

    spectra = {"moco": [1.0, 0.0, 0.0], "simmim": [1.0, 1.0, 1.0], "depth": 4}
    record = rep.svd_record(spectra)
    assert record["depth"] == 4 and record["moco"] == [1.0, 0.0, 0.0]
    assert record["effective_rank"]["moco"] == 1.0 and abs(record["effective_rank"]["simmim"] - 3.0) < 1e-12
    tsne = {"moco": {"coords": [[0.0, 1.0], [2.0, 3.0]], "image": [0, 1], "label": [5, 5], "class_names": ["a"],
                     "silhouette_image": 0.3, "silhouette_class": 0.1, "perplexity": 1.0, "tokens_per_image": 1}}
    t = rep.tsne_record(tsne)["moco"]
    assert t["x"] == [0.0, 2.0] and t["y"] == [1.0, 3.0] and "coords" not in t and "tokens_per_image" not in t
    rows = {"moco": {"shape_bias": 0.6, "shape_acc": 0.5, "texture_acc": 0.3, "clean": 0.9, "low_freq": 0.8,
                     "high_freq": 0.7, "num_decided": 10}}
    assert rep.shape_texture_record(rows, ["moco"]) == {"moco": {"shape_bias": 0.6, "shape_acc": 0.5,
                                                                 "texture_acc": 0.3}}
    assert rep.noise_record(rows, ["moco"]) == {"moco": {"clean": 0.9, "low_freq": 0.8, "high_freq": 0.7}}
