"""The book machinery: figure saving, the chapter runner (papermill), caching, the HTML build,
the Colab notebooks. Runs a tiny two-chapter book in a temporary project."""
from __future__ import annotations

import json
import shutil
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from clvsmim.book import execute, notebooks, toc  # noqa: E402
from clvsmim.book import html as book_html  # noqa: E402
from clvsmim.book import run as bookrun  # noqa: E402
from clvsmim.book import figures
from clvsmim.config import load_profile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_check  # noqa: E402

OK_CHAPTER = '''\
# %% [markdown]
# # A chapter that works
# The attention distance is $d = \\sum_j A_{ij}\\, \\lVert g_i - g_j \\rVert$.

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"

# %%
import json, os, sys
from pathlib import Path
out = Path(os.environ["CLVSMIM_BOOK_OUT"])
with open(out / "ok_runs.txt", "a") as fh:
    fh.write("run\\n")
(out / "kernel.json").write_text(json.dumps({
    "executable": sys.executable, "cwd": os.getcwd(), "profile": profile, "seed": seed,
    "device": device, "data_root": data_root, "chapter": os.environ.get("CLVSMIM_CHAPTER")}))

# %%
import matplotlib.pyplot as plt
from clvsmim.book.figures import save_figure, use_style, plot_kwargs
use_style()
fig, ax = plt.subplots()
ax.plot([0, 1, 2], [0.5, 0.9, 0.7], **plot_kwargs("moco"))
entry = save_figure(fig, "T-ok", {"depth": [0, 1, 2], "moco": [0.5, 0.9, 0.7]},
                    models=["moco"], caption="A tiny test figure.")
print(entry["files"])
'''

BAD_CHAPTER = '''\
# %% tags=["parameters"]
profile = "smoke"

# %%
x = 1

# %%
y = x + 1
raise ValueError("boom in the third cell")

# %% [markdown]
# Never reached.
'''

TOC = {"format": "jb-book", "root": "book/intro",
       "chapters": [{"file": "book/okchap"}, {"file": "book/badchap"}]}


def make_project(root: Path) -> Path:
    (root / "book").mkdir(parents=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    if (REPO / "book" / "_static").is_dir():  # not in git while empty: the runner creates it
        shutil.copytree(REPO / "book" / "_static", root / "book" / "_static")
    (root / "_toc.yml").write_text(yaml.safe_dump(TOC, sort_keys=False))
    (root / "book" / "intro.md").write_text("# A tiny book\n\nSome math: $x^2$.\n")
    (root / "book" / "okchap.py").write_text(OK_CHAPTER)
    (root / "book" / "badchap.py").write_text(BAD_CHAPTER)
    (root / "book" / "data").mkdir()
    (root / "book" / "data" / "numbers.csv").write_text("a,b\n1,2\n")
    return root


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """One full run (chapters + HTML) of the tiny book, shared by the tests below."""
    mp = pytest.MonkeyPatch()
    # Other work on the package must not invalidate the cache between the two runs here.
    mp.setattr(bookrun, "package_hash", lambda: "fixed-for-the-test")
    root = make_project(tmp_path_factory.mktemp("proj"))
    out = root / "_out"
    report = bookrun.run_book(root, "smoke", out=out, zoo=False, html=True)
    yield types.SimpleNamespace(root=root, out=out, report=report)
    mp.undo()


def _result(report, name):
    return next(r for r in report.results if r.file == f"book/{name}")


# ------------------------------------------------------------------------------ the runner
def test_failing_chapter_is_reported_by_cell_and_others_kept(book):
    bad = _result(book.report, "badchap")
    assert bad.status == "failed"
    assert bad.cell == 3, bad
    assert bad.line == 9  # the `raise` line of badchap.py
    assert (bad.ename, bad.evalue) == ("ValueError", "boom in the third cell")
    table = book.report.table()
    assert "book/badchap" in table and "cell 3" in table and "ValueError" in table
    assert book.report.exit_code != 0
    # the partial notebook is kept, with the error in it
    nb = nbformat.read(book.out / "book" / "badchap.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    summary = json.loads((book.out / "book" / "run_summary.json").read_text())
    assert {c["file"]: c["status"] for c in summary["chapters"]}["book/badchap"] == "failed"

    ok = _result(book.report, "okchap")
    assert ok.status == "ok"
    nb = nbformat.read(book.out / "book" / "okchap.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not any("clvsmim_cell" in c.metadata for c in nb.cells)
    assert not list((book.root / "book").rglob("*.ipynb"))  # nothing written into the sources


def test_kernel_runs_this_python_with_parameters_and_env(book):
    k = json.loads((book.out / "kernel.json").read_text())
    assert k["executable"] == sys.executable
    assert Path(k["cwd"]) == book.root / "book"
    assert (k["profile"], k["seed"], k["device"], k["data_root"]) == ("smoke", 0, "auto", None)
    assert k["chapter"] == "okchap"


def test_manifest_lists_the_figure_with_its_files(book):
    man = json.loads((book.out / "figures" / "manifest.json").read_text())
    e = man["T-ok"]
    assert e["chapter"] == "okchap" and e["profile"] == "smoke" and e["seed"] == 0
    assert e["models"] == ["moco"] and e["caption"] == "A tiny test figure."
    assert set(e["files"]) == {"T-ok.png", "T-ok.svg", "T-ok.json"}
    for name in e["files"]:
        assert (book.out / "figures" / name).stat().st_size > 0
    with Image.open(book.out / "figures" / "T-ok.png") as im:
        assert im.width > 50 and im.height > 50
    assert ET.parse(book.out / "figures" / "T-ok.svg").getroot().tag.endswith("svg")
    assert json.loads((book.out / "figures" / "T-ok.json").read_text())["moco"] == [0.5, 0.9, 0.7]


def test_html_book_has_the_chapter_page_and_works_offline(book):
    assert book.report.html == "built", book.report.html_problems
    html_dir = book.out / "_build" / "html"
    page = html_dir / "book" / "okchap.html"
    text = page.read_text()
    assert "A chapter that works" in text
    refs = book_html.page_refs(page)
    assert any(src.startswith("../_images/") for src in refs.imgs)  # the plot output
    assert browser_check.static_check(page) == []
    assert any("_static/mathjax/tex-svg-full.js" in s for s in refs.scripts)
    assert (html_dir / "_static" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    assert not [s for s in refs.scripts if s.startswith(("http:", "https:", "//"))]
    assert book_html.check_offline(html_dir) == []
    assert "https://colab.research.google.com/github/clvsmim/clvsmim/blob/notebooks/book/okchap.ipynb" in text
    assert (book.out / "book_src" / "book" / "data" / "numbers.csv").is_file()
    assert (book.out / "book_src" / "figures" / "T-ok.png").is_file()
    assert not list((book.out / "book_src").rglob("*.py"))


def test_second_run_skips_unchanged_chapter_and_force_reruns(book):
    nb = book.out / "book" / "okchap.ipynb"
    mtime = nb.stat().st_mtime_ns
    report = bookrun.run_book(book.root, "smoke", out=book.out, zoo=False, html=False)
    status = {r.file: r.status for r in report.results}
    assert status == {"book/intro": "page", "book/okchap": "cached", "book/badchap": "failed"}
    assert (book.out / "ok_runs.txt").read_text().count("run") == 1
    assert nb.stat().st_mtime_ns == mtime
    assert report.exit_code != 0

    report = bookrun.run_book(book.root, "smoke", out=book.out, zoo=False, html=False,
                              chapters=["okchap"], force=True)
    status = {r.file: r.status for r in report.results}
    assert status == {"book/intro": "page", "book/okchap": "ok", "book/badchap": "not-run"}
    assert (book.out / "ok_runs.txt").read_text().count("run") == 2
    assert report.exit_code == 0


def test_a_relative_profile_yaml_reaches_the_chapters_as_an_absolute_path(tmp_path, monkeypatch):
    """Chapters run in the chapter folder: a profile YAML named relative to the caller's cwd must
    still load there (``clvsmim book --profile benchmarks/mini_candidates/x.yaml``)."""
    root = make_project(tmp_path / "p")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny.yaml").write_text("base: smoke\nname: tiny\n")
    monkeypatch.chdir(tmp_path)
    report = bookrun.run_book(root, "profiles/tiny.yaml", out=tmp_path / "o", zoo=False, html=False,
                              chapters=["okchap"])
    assert {r.file: r.status for r in report.results}["book/okchap"] == "ok"
    seen = json.loads((tmp_path / "o" / "kernel.json").read_text())["profile"]
    assert seen == str(tmp_path / "profiles" / "tiny.yaml") and Path(seen).is_absolute()
    monkeypatch.chdir(root / "book")  # where the chapter ran
    assert load_profile(seen).name == "tiny"


def test_chapter_hash_depends_on_source_params_and_profile(tmp_path):
    src = tmp_path / "c.py"
    src.write_text("x = 1\n")
    base = bookrun.chapter_hash(src, {"seed": 0}, "smoke", "pkg")
    assert base == bookrun.chapter_hash(src, {"seed": 0}, "smoke", "pkg")
    assert base != bookrun.chapter_hash(src, {"seed": 1}, "smoke", "pkg")
    assert base != bookrun.chapter_hash(src, {"seed": 0}, "mini", "pkg")
    assert base != bookrun.chapter_hash(src, {"seed": 0}, "smoke", "pkg2")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lit.csv").write_text("a\n1\n")
    assert base != bookrun.chapter_hash(src, {"seed": 0}, "smoke", "pkg")
    src.write_text("x = 2\n")
    assert len({base, bookrun.chapter_hash(src, {"seed": 0}, "smoke", "pkg")}) == 2
    assert bookrun.package_hash() == bookrun.package_hash()


def test_missing_chapter_fails_and_is_left_out_of_the_html_toc(tmp_path):
    root = make_project(tmp_path / "p")
    toc = dict(TOC, chapters=[{"file": "book/okchap"}, {"file": "book/nothere"}])
    (root / "_toc.yml").write_text(yaml.safe_dump(toc))
    entries = bookrun.read_entries(root)
    assert [(e.file, e.kind) for e in entries] == [
        ("book/intro", "page"), ("book/okchap", "chapter"), ("book/nothere", "missing")]
    report = bookrun.run_book(root, "smoke", out=tmp_path / "o", zoo=False, html=False, chapters=["nothere"])
    assert {r.file: r.status for r in report.results}["book/nothere"] == "missing"
    assert report.exit_code != 0
    src = bookrun.assemble_book(root, tmp_path / "o", entries)
    built = yaml.safe_load((src / "_toc.yml").read_text())
    assert built == {"format": "jb-book", "root": "book/intro"}  # okchap never ran, nothere missing
    with pytest.raises(ValueError, match="unknown chapter"):
        bookrun.run_book(root, "smoke", out=tmp_path / "o", zoo=False, html=False, chapters=["nope"])


def test_real_toc_lists_intro_then_the_six_chapters():
    files = toc.toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    assert files == ["book/intro", "book/background", "book/behaviour", "book/representation",
                     "book/architecture", "book/hybrid", "book/summary"]
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["repository"] == {"url": "https://github.com/clvsmim/clvsmim", "path_to_book": "",
                                 "branch": "notebooks"}
    assert not cfg["sphinx"]["config"]["mathjax_path"].startswith(("http", "//"))
    from clvsmim.book.html import _mathjax_source
    from clvsmim.book.toc import MATHJAX_FILE
    assert cfg["sphinx"]["config"]["mathjax_path"] == f"mathjax/{MATHJAX_FILE}"
    assert _mathjax_source() is not None and _mathjax_source().stat().st_size > 100_000


def test_toc_files_walks_parts_and_sections():
    tree = {"root": "index", "parts": [{"caption": "A", "chapters": [
        {"file": "a.md", "sections": [{"file": "b"}]}, {"url": "https://x"}]}, {"chapters": [{"file": "c"}]}]}
    assert toc.toc_files(tree) == ["index", "a", "b", "c"]


def test_ensure_zoo_builds_the_profile_with_the_data_root(monkeypatch):
    calls = []
    monkeypatch.setattr(execute.zoo, "build", lambda profile: calls.append(profile) or "built")
    assert execute.ensure_zoo("smoke", "/data/x") == "built"
    assert execute.ensure_zoo(load_profile("smoke")) == "built"
    assert calls[0].name == "smoke" and calls[0].data.root == "/data/x" and calls[1].data.root is None


# ------------------------------------------------------------------------------ Colab notebooks
def test_render_notebooks_are_clean_with_colab_setup_and_paper_defaults(tmp_path):
    root = make_project(tmp_path / "p")
    written = notebooks.render_notebooks(tmp_path / "nbs", root)
    assert [p.relative_to(tmp_path / "nbs").as_posix() for p in written] == ["book/okchap.ipynb",
                                                                             "book/badchap.ipynb"]
    for path in written:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        first = nb.cells[0]
        assert first.cell_type == "code" and "colab-setup" in first.metadata["tags"]
        assert '"google.colab" in sys.modules' in first.source and "pip" in first.source
        exec(compile(first.source, "setup", "exec"), {})  # a no-op outside Colab
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert 'profile = "paper"' in params.source and "smoke" not in params.source
        assert 'device = "cuda"' in params.source
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None
        assert nb.metadata.kernelspec.name == "python3" and nb.metadata.accelerator == "GPU"
        assert "jupytext" not in nb.metadata
    again = notebooks.render_notebooks(tmp_path / "nbs2", root)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]  # deterministic


def test_set_param_keeps_comments_and_adds_missing():
    src = 'profile = "smoke"  # smoke | mini | paper\nseed = 0'
    out = notebooks._set_param(notebooks._set_param(src, "profile", "paper"), "device", "cuda")
    assert out == 'profile = "paper"  # smoke | mini | paper\nseed = 0\ndevice = "cuda"'


# ------------------------------------------------------------------------------ figures
def test_save_figure_writes_files_and_rejects_bad_data(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4], **figures.plot_kwargs("SimMIM"))
    e = figures.save_figure(fig, "F3", {"depth": np.arange(3), "mae": np.array([1.0, 2.0, 3.0])},
                            out_dir=tmp_path, chapter="behaviour", profile="mini", seed=7)
    assert e["files"] == ["F3.png", "F3.svg", "F3.json"] and e["seed"] == 7
    man = figures.read_manifest(tmp_path)
    assert man["F3"]["chapter"] == "behaviour" and man["F3"]["profile"] == "mini"

    with pytest.raises(ValueError, match=r"mae\[1\]"):
        figures.save_figure(fig, "F4", {"mae": [1.0, float("nan")]}, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"curves\.moco\[2\]"):
        figures.save_figure(fig, "F4", {"curves": {"moco": np.array([0.0, 1.0, np.inf])}}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="column 'acc'"):
        figures.save_figure(fig, "F4", pd.DataFrame({"acc": [1.0, np.nan]}), out_dir=tmp_path)
    for bad in ("F 3", "../F3", "", "F3.png", "é"):
        with pytest.raises(ValueError, match="bad figure id"):
            figures.save_figure(fig, bad, {"a": 1}, out_dir=tmp_path)
    with pytest.raises(TypeError):
        figures.save_figure(fig, "F5", None, out_dir=tmp_path)
    assert not (tmp_path / "figures" / "F4.png").exists()  # rejected before writing anything
    assert set(figures.read_manifest(tmp_path)) == {"F3"}

    df = pd.DataFrame({"acc": [71.5, np.nan]}, index=["moco", "mae"])
    figures.save_figure(fig, "A-lit", df, out_dir=tmp_path, allow_nan=True)
    assert (tmp_path / "figures" / "A-lit.csv").read_text().splitlines()[1] == "moco,71.5"
    plt.close(fig)


def test_save_figure_uses_env_and_git(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_BOOK_OUT", str(tmp_path / "o"))
    monkeypatch.setenv("CLVSMIM_PROFILE", "paper")
    monkeypatch.setenv("CLVSMIM_SEED", "3")
    monkeypatch.setenv("CLVSMIM_CHAPTER", "hybrid")
    fig = plt.figure()
    e = figures.save_figure(fig, "F9", [{"lam": 0.5, "ft": 80.0}])
    assert (e["profile"], e["seed"], e["chapter"]) == ("paper", 3, "hybrid")
    assert (tmp_path / "o" / "figures" / "F9.json").is_file()
    commit = figures.git_commit()
    assert commit is None or len(commit.split("-")[0]) == 40
    assert figures.git_commit(tmp_path) is None
    plt.close(fig)


def test_styles():
    assert figures.style_for("MoCo v3")["marker"] == "s" and figures.style_for("moco")["color"] == "#d62728"
    assert figures.style_for("SimMIM")["marker"] == "^" and figures.style_for("simmim")["color"] == "#1f77b4"
    assert figures.style_for("MAE")["marker"] == "v" and figures.style_for("mae")["color"] == "#08306b"
    assert figures.style_for("hybrid-0.4")["family"] == "hybrid"
    assert {figures.style_for(m)["family"] for m in ("dino", "moco")} == {"CL"}
    assert {figures.style_for(m)["family"] for m in ("beit", "mae", "simmim")} == {"MIM"}
    assert figures.lam_color(0) == "#1f77b4" and figures.lam_color(1) == "#d62728"
    with pytest.raises(KeyError):
        figures.style_for("resnet")
    figures.use_style()
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == "#d62728"


# ------------------------------------------------------------------------------ browser check
def test_browser_static_check_finds_broken_images(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    page = tmp_path / "page.html"
    page.write_text('<html><body><img src="good.png"><img src="missing.png"><img src="ok.png">'
                    '<img src="https://example.org/x.png"></body></html>')
    problems = browser_check.static_check(page)
    assert len(problems) == 3
    assert any("missing.png: file not found" in p for p in problems)
    assert any("ok.png: empty file" in p for p in problems)
    assert any("network" in p for p in problems)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed")
def test_browser_check_in_chromium(book):
    html_dir = book.out / "_build" / "html"
    page = html_dir / "book" / "okchap.html"
    problems, info = browser_check.browser_check(page, shutil.which("chromium"), book.out / "screenshots" / "okchap.png")
    assert problems == [], problems
    assert info["images"] >= 2 and info["broken"] == []
    assert info["math"] >= 1 and info["typeset"] == info["math"]  # MathJax ran offline
    assert (book.out / "screenshots" / "okchap.png").stat().st_size > 10_000


def test_real_chapters_render_for_colab_with_official_weights_where_they_take_a_source(tmp_path):
    written = {p.stem: p for p in notebooks.render_notebooks(tmp_path / "nbs", REPO)}
    assert set(written) == {"background", "behaviour", "representation", "architecture", "hybrid", "summary"}
    for name, path in written.items():
        params = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        chapter_source = (REPO / "book" / f"{name}.py").read_text()
        takes_source = any(line.startswith("source =") for line in chapter_source.splitlines())
        assert ('source = "official"' in params.source) == takes_source, (name, params.source)
        assert "source = \"zoo\"" not in params.source
