"""Clean Colab notebooks of the chapters (``clvsmim notebooks``): a set-up cell that clones the
repository named in ``_config.yml``, the paper-scale parameters, no outputs."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from clvsmim.book.execute import PYTHON3_KERNELSPEC
from clvsmim.book.toc import CONFIG_NAME, SOURCE_BRANCH, find_root, read_entries


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
    import jupytext  # lazy: the book extra (jupytext, nbformat), needed only to write the Colab notebooks
    import nbformat  # lazy: the book extra

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
    import nbformat  # lazy: the book extra, needed only to write the Colab notebooks

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
