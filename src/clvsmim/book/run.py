"""Run the book: ``clvsmim book`` executes the chapters and builds the HTML; ``clvsmim notebooks``
renders clean notebooks for Colab.

``clvsmim book --profile smoke [--data PATH] [--out DIR] [--chapters a,b] [--no-html] [--force]
[--source zoo|official] [--images N] [--device cpu]``

1. :func:`ensure_zoo` builds the model zoo for the profile (``clvsmim.train.zoo.build``), when that
   module exists — not with ``--source official`` (the default of the ``paper`` profile): then
   the chapters read the official ViT-B/16 checkpoints (:mod:`clvsmim.book.paperbook`) and train nothing.
2. Every chapter listed in ``_toc.yml`` whose source is a jupytext percent-format ``.py`` file
   is executed with papermill, in toc order, in a kernel running this very Python
   (``sys.executable``), with the chapter's folder as working directory. The parameters cell
   (tagged ``parameters``) receives ``profile``, ``data_root``, ``seed``, ``device``, ``source``
   and ``images`` (``None``: the profile's ``eval.num_analysis_images``); the
   kernel's environment has ``CLVSMIM_BOOK_OUT``, ``CLVSMIM_PROFILE``, ``CLVSMIM_SEED``,
   ``CLVSMIM_DEVICE``, ``CLVSMIM_DATA`` and ``CLVSMIM_CHAPTER``. Executed notebooks go to
   ``<out>/<toc file>.ipynb`` (e.g. ``<out>/book/behaviour.ipynb``), never into the sources.
3. A failing chapter is reported by chapter, cell number and source line; the other chapters
   still run; a summary table closes the run and the exit code is non-zero.
4. A chapter whose executed notebook exists and whose input hash (chapter source, parameters,
   profile YAML, the package's sources, the chapter folder's data files) is unchanged is not
   executed again (``<out>/book/.hashes.json``); ``--force`` re-runs everything.
5. A Jupyter Book source tree is assembled in ``<out>/book_src`` (config, toc, prose pages,
   data, figures, executed notebooks in place of the ``.py`` chapters) and built with
   ``jupyter-book build -W -n --keep-going`` into ``<out>/_build/html``; the HTML is then
   checked to load nothing from the network (MathJax is served from ``_static``).

Chapter contract (for the authors of ``book/*.py``):

* jupytext percent format; the first cell is markdown with the ``# Title``;
* a code cell tagged ``parameters`` (``# %% tags=["parameters"]``) defining exactly
  ``profile = "smoke"``, ``data_root = None``, ``seed = 0``, ``device = "auto"``,
  ``source = "zoo"``, ``images = None`` (more chapter-specific defaults may follow; the runner
  overrides these six);
* every figure is saved with :func:`clvsmim.book.figures.save_figure` (id ``F<n>`` or ``A-<name>``,
  with the data behind it) and left open so that the notebook shows it; a markdown cell may
  show a saved file with ``![caption](../figures/F3.svg)``;
* read shipped data relative to the chapter folder (``data/...``, the working directory);
  write nothing into the source tree: outputs go under ``$CLVSMIM_BOOK_OUT``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

import yaml

from clvsmim.train import zoo
from clvsmim.cache import write_json_atomic
from clvsmim.paths import PACKAGE_DIR
from clvsmim.config import Profile, load_profile

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
        out.append(_strip_suffix(str(toc["root"])))

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                out.append(_strip_suffix(str(node["file"])))
            if "glob" in node:
                log.warning("toc: 'glob' entries are not run by clvsmim book: %s", node["glob"])
            for key in ("parts", "chapters", "sections", "entries"):
                if key in node:
                    walk(node[key])

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def _strip_suffix(file: str) -> str:
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
    from clvsmim.config import PROFILE_DIR

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


# --------------------------------------------------------------------------------------------
# Zoo hook
# --------------------------------------------------------------------------------------------
def ensure_zoo(profile: Any, data: str | os.PathLike | None = None) -> Any:
    """Build (or find cached) every model the chapters need: :func:`clvsmim.train.zoo.build`.

    ``profile`` is a name, a YAML path or a :class:`~clvsmim.config.Profile`; ``data`` (an
    ImageFolder root) replaces the profile's ``data.root``.
    """
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    log.info("zoo: building / checking the models of profile %r", prof.name)
    return zoo.build(prof, data_root=None if data is None else str(data))


# --------------------------------------------------------------------------------------------
# Kernel and environment
# --------------------------------------------------------------------------------------------
def ensure_kernel(out: Path) -> Path:
    """Write a kernelspec ``clvsmim-book`` running ``sys.executable`` under ``<out>/.jupyter``.

    Returned folder goes first on ``JUPYTER_PATH``, so papermill's kernel is this interpreter
    (the virtual environment's), whatever other ``python3`` kernels the machine has.
    """
    jp = out / ".jupyter"
    kdir = jp / "kernels" / KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (clvsmim book)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    text = json.dumps(spec, indent=1) + "\n"
    kfile = kdir / "kernel.json"
    if not kfile.is_file() or kfile.read_text() != text:
        kfile.write_text(text)
    return jp


@contextlib.contextmanager
def _environ(values: dict[str, str | None]):
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


PYTHON3_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


# --------------------------------------------------------------------------------------------
# Executing one chapter
# --------------------------------------------------------------------------------------------
@dataclass
class ChapterResult:
    file: str
    status: str  # ok | cached | failed | missing | page | not-run
    seconds: float = 0.0
    notebook: Path | None = None
    cell: int | None = None  # 1-based cell number in the chapter source
    line: int | None = None  # line of that cell's "# %%" marker in the .py file
    exec_count: int | None = None
    ename: str | None = None
    evalue: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "missing")

    def detail(self) -> str:
        if self.status == "missing":
            return "no source file for this toc entry"
        if self.status != "failed":
            return ""
        where = f"cell {self.cell}" if self.cell else "cell ?"
        extra = []
        if self.line:
            extra.append(f"line {self.line}")
        if self.exec_count is not None:
            extra.append(f"In [{self.exec_count}]")
        if extra:
            where += f" ({', '.join(extra)})"
        return f"{where}: {self.ename}: {self.evalue}"


def _cell_lines(text: str, n_cells: int) -> list[int | None]:
    """Line (1-based) of each cell's ``# %%`` marker, when they can be matched to the cells."""
    marks = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith("# %%")]
    if len(marks) == n_cells:
        return marks
    if len(marks) == n_cells - 1:  # code before the first marker forms a first cell
        return [None, *marks]
    return [None] * n_cells


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_line(text: str, marker: int | None, cell_source: str, traceback: list[str]) -> int | None:
    """Line of the chapter file that raised: the cell's marker line plus the line number
    IPython reports in the traceback ("Cell In[4], line 2"), checked against the file;
    else the marker line."""
    if marker is None:
        return None
    hits = re.findall(r"Cell In\[\d+\], line (\d+)", _ANSI.sub("", "\n".join(traceback)))
    file_lines = text.splitlines()
    cell_lines = cell_source.splitlines()
    if hits:
        k = int(hits[0])
        if 1 <= k <= len(cell_lines):
            want = cell_lines[k - 1]
            for cand in range(marker + 1, min(len(file_lines), marker + 1 + len(cell_lines) + 5) + 1):
                if file_lines[cand - 1] == want and cand - marker >= k:
                    return cand
    return marker


def _failing_cell(nb: Any) -> tuple[Any | None, dict[str, Any] | None]:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return cell, output
    for cell in nb.cells:
        status = cell.get("metadata", {}).get("papermill", {})
        if status.get("exception") or status.get("status") in ("running", "failed"):
            return cell, None
    return None, None


def execute_chapter(entry: Entry, root: Path, out: Path, params: dict[str, Any], *,
                    timeout: float | None = None, start_timeout: float = 120,
                    env: dict[str, str] | None = None) -> ChapterResult:
    """Execute one ``.py`` chapter with papermill into ``<out>/<file>.ipynb``."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    assert entry.source is not None
    text = entry.source.read_text()
    nb = jupytext.read(entry.source)
    lines = _cell_lines(text, len(nb.cells))
    for i, cell in enumerate(nb.cells):
        cell.metadata["clvsmim_cell"] = i + 1
    nb.metadata["kernelspec"] = dict(PYTHON3_KERNELSPEC)
    nb.metadata.pop("jupytext", None)

    output = out / f"{entry.file}.ipynb"
    staged = out / ".bookrun" / "input" / f"{entry.file}.ipynb"
    for p in (output, staged):
        p.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, staged)
    with contextlib.suppress(FileNotFoundError):
        output.unlink()

    jupyter_dir = ensure_kernel(out)
    jpath = os.pathsep.join(x for x in (str(jupyter_dir), os.environ.get("JUPYTER_PATH")) if x)
    pkg_parent = str(PACKAGE_DIR.parent)  # the kernel imports this very clvsmim
    pypath = os.pathsep.join(x for x in (pkg_parent, os.environ.get("PYTHONPATH")) if x)
    kernel_env = {
        "JUPYTER_PATH": jpath,
        "PYTHONPATH": pypath,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "CLVSMIM_CHAPTER": entry.name,
        **(env or {}),
    }
    result = ChapterResult(entry.file, "ok", notebook=output)
    t0 = time.perf_counter()
    error: BaseException | None = None
    try:
        with _environ(kernel_env):
            papermill.execute_notebook(
                str(staged), str(output), parameters=params, kernel_name=KERNEL_NAME,
                cwd=str(entry.source.parent), progress_bar=False, log_output=False,
                start_timeout=start_timeout, execution_timeout=timeout,
            )
    except PapermillExecutionError as exc:
        error = exc
        result.status, result.ename, result.evalue = "failed", exc.ename, exc.evalue
        result.exec_count = exc.exec_count
    except Exception as exc:  # dead kernel, timeout, bad notebook ...
        error = exc
        result.status, result.ename, result.evalue = "failed", type(exc).__name__, str(exc).strip()[:500]
    result.seconds = time.perf_counter() - t0

    # Tidy the executed notebook: find the failing cell, drop helper metadata, standard kernel.
    if output.is_file():
        done = nbformat.read(output, as_version=4)
        if error is not None:
            cell, err = _failing_cell(done)
            if cell is not None:
                result.cell = cell.metadata.get("clvsmim_cell")
                if result.cell:
                    result.line = _error_line(text, lines[result.cell - 1], cell.source,
                                              err.get("traceback", []) if err else [])
                if err is not None:
                    result.ename, result.evalue = err.get("ename"), err.get("evalue")
                if result.exec_count is None:
                    result.exec_count = cell.get("execution_count")
        injected = any("injected-parameters" in c.metadata.get("tags", []) for c in done.cells)
        for cell in done.cells:
            cell.metadata.pop("clvsmim_cell", None)
            tags = cell.metadata.get("tags", [])
            if injected and "parameters" in tags and "hide-cell" not in tags:
                cell.metadata["tags"] = [*tags, "hide-cell"]  # defaults folded; the values used show
        if not any(c.cell_type == "markdown" and re.search(r"^# \S", c.source, re.M) for c in done.cells):
            log.warning("%s: no '# title' markdown cell; the book uses %r", entry.file, entry.name)
            done.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {entry.name}"))
        done.metadata["kernelspec"] = dict(PYTHON3_KERNELSPEC)
        pm = done.metadata.get("papermill", {})
        pm["input_path"] = str(entry.source.relative_to(root)) if entry.source.is_relative_to(root) else str(entry.source)
        pm["output_path"] = f"{entry.file}.ipynb"
        nbformat.write(done, output)
    else:
        result.notebook = None
    return result


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
@dataclass
class BookReport:
    results: list[ChapterResult] = field(default_factory=list)
    html: str = "skipped"  # built | failed | skipped
    html_dir: Path | None = None
    html_problems: list[str] = field(default_factory=list)
    out: Path | None = None
    zoo_error: str | None = None

    @property
    def exit_code(self) -> int:
        failed = any(r.failed for r in self.results) or self.html == "failed" or self.zoo_error
        return 1 if failed else 0

    def table(self) -> str:
        rows = [("chapter", "status", "time", "detail")]
        for r in self.results:
            t = f"{r.seconds:.1f}s" if r.status in ("ok", "failed") else "-"
            rows.append((r.file, r.status.upper() if r.failed else r.status, t, r.detail()))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
        lines.insert(1, "-" * max(len(x) for x in lines))
        if self.zoo_error:
            lines.append(f"ZOO: FAILED: {self.zoo_error}")
        lines.append(f"HTML: {self.html}" + (f" -> {self.html_dir}" if self.html == "built" else ""))
        lines += [f"  {p}" for p in self.html_problems]
        return "\n".join(x.rstrip() for x in lines)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _select(entries: list[Entry], chapters: Iterable[str] | None) -> set[str] | None:
    if not chapters:
        return None
    wanted = {c.strip() for c in chapters if c.strip()}
    known = {e.file: e for e in entries if e.kind != "page"}
    chosen = {f for f, e in known.items() if f in wanted or e.name in wanted}
    unknown = wanted - {f for f in chosen} - {known[f].name for f in chosen}
    if unknown:
        raise ValueError(f"unknown chapter(s) {sorted(unknown)}; the toc has {[e.name for e in known.values()]}")
    return chosen


def check_image_count(profile: str, data: str | os.PathLike, images: int | None = None) -> int:
    """The number of evaluation images in the folder ``data``; raises one ``ValueError`` naming
    the count found, the folder and ``--images`` when the analyses ask for more."""
    from clvsmim.config import load_profile
    from clvsmim.data import open_dataset

    prof = load_profile(profile, images)
    wanted = prof.eval.num_analysis_images
    dataset = open_dataset(prof.with_data_root(data).data, "eval")
    if len(dataset) < wanted:
        asked = f"--images {images}" if images is not None else f"profile {prof.name}: eval.num_analysis_images"
        raise ValueError(f"the image folder {getattr(dataset, 'root', data)} holds {len(dataset)} images, the analyses "
                         f"ask for {wanted} ({asked}): lower --images to {len(dataset)} or fewer, or give a "
                         f"larger folder with --data")
    return len(dataset)


def run_book(root: str | os.PathLike | None = None, profile: str = "smoke", *,
             data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
             chapters: Iterable[str] | None = None, html: bool = True, force: bool = False,
             seed: int = 0, device: str = "auto", timeout: float | None = None,
             zoo: bool = True, toc_path: str | os.PathLike | None = None, source: str | None = None,
             images: int | None = None) -> BookReport:
    """Execute the book's chapters and build its HTML; see the module docstring.

    ``source`` (default :func:`default_source`): ``zoo`` builds and reads the profile's zoo,
    ``official`` reads the official checkpoints and builds no zoo. ``images``: the number of
    analysis images (default: the profile's)."""
    source = source or default_source(str(profile))
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, found {source!r}")
    if images is not None and int(images) < 2:
        raise ValueError(f"--images: the analyses need at least 2 images, found {images}")
    if source == "official" and data is None:
        from clvsmim.config import load_profile

        if load_profile(str(profile)).data.root is None:
            raise ValueError("--source official analyses real photographs: give an ImageFolder with --data "
                             "(e.g. DATA=$(clvsmim weights imagenette))")
    if data is not None:
        check_image_count(str(profile), data, images)
    root = Path(root).resolve() if root else find_root()
    out = Path(out).resolve() if out else root / "_build" / "clvsmim" / Path(str(profile)).stem
    out.mkdir(parents=True, exist_ok=True)
    entries = read_entries(root, toc_path)
    selected = _select(entries, chapters)
    report = BookReport(out=out)

    params = {"profile": str(profile), "data_root": str(Path(data).resolve()) if data else None,
              "seed": int(seed), "device": device, "source": source,
              "images": None if images is None else int(images)}
    env = {"CLVSMIM_BOOK_OUT": str(out), "CLVSMIM_PROFILE": str(profile), "CLVSMIM_SEED": str(int(seed)),
           "CLVSMIM_DEVICE": device, "CLVSMIM_DATA": params["data_root"]}

    hashes_path = out / "book" / ".hashes.json"
    hashes_path.parent.mkdir(parents=True, exist_ok=True)
    hashes = _load_json(hashes_path)
    pkg_hash = package_hash()

    to_run = [e for e in entries if e.kind == "chapter" and (selected is None or e.file in selected)]
    if zoo and to_run and source == "zoo":
        t0 = time.perf_counter()
        try:
            ensure_zoo(profile, data)
        except Exception as exc:  # the chapters still run: each reports what it misses
            log.error("zoo: build failed: %s: %s", type(exc).__name__, exc)
            report.zoo_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        else:
            log.info("zoo: ready (%.1fs)", time.perf_counter() - t0)

    for entry in entries:
        if entry.kind == "page":
            report.results.append(ChapterResult(entry.file, "page"))
            continue
        if entry.kind == "missing":
            log.error("%s: listed in the toc but no %s%s (or page) exists", entry.file, entry.file, CHAPTER_SUFFIX)
            report.results.append(ChapterResult(entry.file, "missing"))
            continue
        executed = out / f"{entry.file}.ipynb"
        if selected is not None and entry.file not in selected:
            report.results.append(ChapterResult(entry.file, "not-run", notebook=executed if executed.is_file() else None))
            continue
        digest = chapter_hash(entry.source, params, str(profile), pkg_hash)
        if not force and executed.is_file() and hashes.get(entry.file, {}).get("hash") == digest:
            log.info("%s: unchanged, using %s", entry.file, executed)
            report.results.append(ChapterResult(entry.file, "cached", notebook=executed))
            continue
        log.info("%s: executing ...", entry.file)
        res = execute_chapter(entry, root, out, params, timeout=timeout, env=env)
        report.results.append(res)
        if res.status == "ok":
            hashes[entry.file] = {"hash": digest, "seconds": round(res.seconds, 2),
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            log.info("%s: ok in %.1fs", entry.file, res.seconds)
        else:
            hashes.pop(entry.file, None)
            log.error("%s: FAILED at %s", entry.file, res.detail())
        write_json_atomic(hashes_path, hashes, indent=1, sort_keys=True)

    if html:
        src = assemble_book(root, out, entries, toc_path=toc_path)
        ok, html_dir, problems = build_html(src, out)
        report.html = "built" if ok else "failed"
        report.html_dir, report.html_problems = html_dir, problems
    summary = {"profile": str(profile), "params": params, "html": report.html, "zoo_error": report.zoo_error,
               "chapters": [{**{k: (str(v) if isinstance(v, Path) else v)
                                for k, v in dataclasses.asdict(r).items()}, "detail": r.detail()}
                            for r in report.results]}
    (out / "book" / "run_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return report


# --------------------------------------------------------------------------------------------
# HTML: assemble a Jupyter Book source tree from the executed notebooks, build, check
# --------------------------------------------------------------------------------------------
def _filter_toc(node: Any, drop: set[str]) -> Any:
    if isinstance(node, list):
        kept = [_filter_toc(x, drop) for x in node]
        return [x for x in kept if x is not None]
    if isinstance(node, dict):
        if "file" in node and _strip_suffix(str(node["file"])) in drop:
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
        import mathjax  # django-static-mathjax
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
    if toc.get("root") and _strip_suffix(str(toc["root"])) in drop:
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
        tail = [_ANSI.sub("", ln) for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-25:]
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


# --------------------------------------------------------------------------------------------
# Colab notebooks
# --------------------------------------------------------------------------------------------
COLAB_SETUP = '''\
# Set-up on Google Colab: fetch the companion repository and install it (does nothing elsewhere).
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/clvsmim"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", "{repo}", "/content/clvsmim"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/clvsmim"], check=True)
    sys.path.insert(0, "/content/clvsmim/src")
    os.chdir("/content/clvsmim/{folder}")'''


def repository_url(root: str | os.PathLike) -> str:
    """The repository the Colab set-up cell clones and the launch buttons open: ``repository.url``
    of ``<root>/_config.yml`` (the one place to change when publishing a fork)."""
    path = Path(root) / CONFIG_NAME
    url = ((yaml.safe_load(path.read_text()) or {}).get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{path}: no repository.url (the Git URL the Colab notebooks clone)")
    return str(url)


def _set_param(source: str, name: str, value: Any) -> str:
    pat = re.compile(rf"^{name}(\s*:[^=\n]+)?\s*=\s*[^#\n]*?(\s*#.*)?$", re.M)
    line = f"{name} = {json.dumps(value) if isinstance(value, str) else repr(value)}"
    if pat.search(source):
        return pat.sub(lambda m: line + (m.group(2) or ""), source, count=1)
    return source.rstrip("\n") + ("\n" if source.strip() else "") + line


def render_notebook(source: Path, folder: str, *, profile: str = "paper", device: str = "cuda",
                    repo: str | None = None, branch: str = SOURCE_BRANCH) -> Any:
    """A clean, output-free notebook of one jupytext chapter for Colab: a set-up cell first
    (cloning ``repo``, default :func:`repository_url` of the project), the parameters cell
    defaulted to ``profile``/``device``."""
    import jupytext
    import nbformat

    repo = repo or repository_url(find_root(source.parent))
    nb = jupytext.read(source)
    params = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if params is None:
        params = nbformat.v4.new_code_cell("", metadata={"tags": ["parameters"]})
        nb.cells.insert(0, params)
    src = params.source
    src = _set_param(src, "profile", profile)
    src = _set_param(src, "device", device)
    if profile == "paper" and re.search(r"^source\s*=", src, re.M):
        src = _set_param(src, "source", "official")  # Colab has network: the official ViT-B/16 weights
    params.source = src
    setup = nbformat.v4.new_code_cell(COLAB_SETUP.format(repo=repo, branch=branch, folder=folder),
                                      metadata={"tags": ["colab-setup"]})
    nb.cells.insert(0, setup)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata = nbformat.NotebookNode({
        "kernelspec": dict(PYTHON3_KERNELSPEC),
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": [], "gpuType": "T4"},
    })
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nb


def render_notebooks(out_dir: str | os.PathLike, root: str | os.PathLike | None = None, *,
                     profile: str = "paper", device: str = "cuda",
                     toc_path: str | os.PathLike | None = None) -> list[Path]:
    """Write ``<out_dir>/<toc file>.ipynb`` for every ``.py`` chapter (the content of the
    ``notebooks`` branch that the book's Colab buttons open)."""
    import nbformat

    root = Path(root).resolve() if root else find_root()
    out_dir = Path(out_dir)
    written = []
    for e in read_entries(root, toc_path):
        if e.kind != "chapter":
            continue
        nb = render_notebook(e.source, str(Path(e.file).parent), profile=profile, device=device,
                             repo=repository_url(root))
        dest = out_dir / f"{e.file}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
        written.append(dest)
    return written
