"""The explorer page's script and stylesheet: package data of :mod:`clvsmim.explorer`, and their size
(part of the page's byte budget)."""
from __future__ import annotations

from importlib import resources

__all__ = ["ASSETS", "asset_text", "asset_bytes"]

#: The page's script and stylesheet (package data of ``clvsmim.explorer``).
ASSETS = ("explorer.js", "explorer.css")


def asset_text(name: str) -> str:
    """The text of the asset ``name`` (one of :data:`ASSETS`)."""
    if name not in ASSETS:
        raise ValueError(f"unknown explorer asset {name!r}; expected one of {ASSETS}")
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def asset_bytes() -> int:
    """Bytes of :data:`ASSETS` together."""
    return sum(len(asset_text(a).encode()) for a in ASSETS)
