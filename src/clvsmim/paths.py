"""Where things are cached: ``$CLVSMIM_CACHE``, else ``$XDG_CACHE_HOME/clvsmim``, else ``~/.cache/clvsmim``."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

#: The installed ``clvsmim`` package folder (``src/clvsmim`` in a checkout).
PACKAGE_DIR = Path(__file__).resolve().parent


def cache_path(*parts: str) -> Path:
    """The cache root (or a path below it), not created: for lookups that must leave no trace."""
    root = os.environ.get("CLVSMIM_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "clvsmim"
    return base.joinpath(*parts)


def cache_dir(*parts: str) -> Path:
    """The cache root (or a sub-folder of it), created on demand."""
    path = cache_path(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_root_at(root: str | os.PathLike) -> Iterator[Path]:
    """The cache root moved to ``root`` inside the block (``$CLVSMIM_CACHE``, which spawned workers
    inherit), restored after it."""
    before = os.environ.get("CLVSMIM_CACHE")
    os.environ["CLVSMIM_CACHE"] = str(root)
    try:
        yield Path(root)
    finally:
        if before is None:
            os.environ.pop("CLVSMIM_CACHE", None)
        else:
            os.environ["CLVSMIM_CACHE"] = before
