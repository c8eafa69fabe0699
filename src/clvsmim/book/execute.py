"""Executing one chapter: the zoo hook, the kernel running this very Python, papermill, and
the report of a failing cell (chapter, cell number, source line)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clvsmim.train import zoo
from clvsmim.paths import PACKAGE_DIR
from clvsmim.config import Profile, load_profile
from clvsmim.book.toc import KERNEL_NAME, Entry, log


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
    return zoo.build(prof.with_data_root(None if data is None else str(data)))


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


def _set_environ(values: dict[str, str | None]) -> None:
    """Set every variable of ``values``; ``None`` removes it."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _environ(values: dict[str, str | None]):
    """The environment with ``values`` applied for the ``with`` block, then restored."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


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


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _error_line(text: str, marker: int | None, cell_source: str, traceback: list[str]) -> int | None:
    """Line of the chapter file that raised: the cell's marker line plus the line number
    IPython reports in the traceback ("Cell In[4], line 2"), checked against the file;
    else the marker line."""
    if marker is None:
        return None
    hits = re.findall(r"Cell In\[\d+\], line (\d+)", ANSI_ESCAPE.sub("", "\n".join(traceback)))
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
    import jupytext  # lazy: the book extra (jupytext, nbformat, papermill), needed only to execute chapters
    import nbformat  # lazy: the book extra
    import papermill  # lazy: the book extra
    from papermill.exceptions import PapermillExecutionError  # lazy: the book extra

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
