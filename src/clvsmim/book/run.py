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

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from clvsmim.book.execute import ChapterResult, ensure_zoo, execute_chapter
from clvsmim.book.html import assemble_book, build_html
from clvsmim.book.paperbook import SWEEP_PROFILE, book_data_root, built_sweep
from clvsmim.book.toc import (CHAPTER_SUFFIX, SOURCES, Entry, chapter_hash, default_source, find_root, log,
                              package_hash, read_entries)
from clvsmim.cache import write_json_atomic
from clvsmim.config import load_profile
from clvsmim.data import open_dataset


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


def defines_parameter(source: Path, name: str) -> bool:
    """Whether the chapter file ``source`` assigns ``name`` at the start of a line (its parameters
    cell): the runner passes chapter-specific parameters such as ``sweep_profile`` only there."""
    return re.search(rf"^{re.escape(name)}\s*=", Path(source).read_text(), re.M) is not None


def check_image_count(profile: str, data: str | os.PathLike, images: int | None = None) -> int:
    """The number of evaluation images in the folder ``data``; raises one ``ValueError`` naming
    the count found, the folder and ``--images`` when the analyses ask for more."""

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
             images: int | None = None, sweep_profile: str | None = None) -> BookReport:
    """Execute the book's chapters and build its HTML; see the module docstring.

    ``source`` (default :func:`default_source`): ``zoo`` builds and reads the profile's zoo,
    ``official`` reads the official checkpoints and builds no zoo; without ``data`` it reads
    Imagenette, fetched and verified (:func:`clvsmim.book.paperbook.book_data_root`), or stops with
    one error naming ``--data``. ``images``: the number of analysis images (default: the profile's).
    ``sweep_profile`` (``official`` only; default ``gpu``): the profile whose zoo, when built on
    the same images, gives the λ sweep and the size trend (the chapters whose parameters cell
    defines ``sweep_profile`` receive it); it is never trained here."""
    if Path(str(profile)).suffix:  # a profile YAML: the chapters run in their own folder, so pass it absolute
        profile = str(Path(str(profile)).resolve())
    source = source or default_source(str(profile))
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, found {source!r}")
    if images is not None and int(images) < 2:
        raise ValueError(f"--images: the analyses need at least 2 images, found {images}")
    if source == "official" and data is None:  # the official checkpoints read photographs: Imagenette
        data = book_data_root(str(profile), source, None)
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
    sweep = {}  # official: the GPU-sized profile, and whether its zoo is built (a chapter re-runs once it is)
    if source == "official":
        sweep_profile = sweep_profile or SWEEP_PROFILE
        built = built_sweep(sweep_profile, params["data_root"], images) is not None
        sweep = {"sweep_profile": sweep_profile}
        log.info("sweep: profile %s, zoo %s", sweep_profile, "built" if built else "not built (C8, C11, F9: literature)")
    elif sweep_profile is not None:
        raise ValueError("--sweep-profile applies to --source official only (the zoo source trains its own sweep)")
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
        chapter_params = {**params, **{k: v for k, v in sweep.items() if defines_parameter(entry.source, k)}}
        digest = chapter_hash(entry.source, {**chapter_params, **({"sweep_built": built} if sweep else {})},
                              str(profile), pkg_hash)
        if not force and executed.is_file() and hashes.get(entry.file, {}).get("hash") == digest:
            log.info("%s: unchanged, using %s", entry.file, executed)
            report.results.append(ChapterResult(entry.file, "cached", notebook=executed))
            continue
        log.info("%s: executing ...", entry.file)
        res = execute_chapter(entry, root, out, chapter_params, timeout=timeout, env=env)
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
