"""Where things are cached: ``$CLVSMIM_CACHE``, else ``$XDG_CACHE_HOME/clvsmim``, else ``~/.cache/clvsmim``."""
from __future__ import annotations

import os
from pathlib import Path

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
