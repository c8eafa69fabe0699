"""The explorer's files: its data folder, a standalone page, and the HTML the book embeds.

A data folder (:func:`write_data_folder`) holds ``index.js`` (geometry, models, the images'
pixels, the colour map), one ``img<i>.<model>.js`` payload per image and model
(:mod:`clvsmim.explorer.payload`), the page's ``explorer.js`` / ``explorer.css`` (package data)
and ``explorer.npz`` (the same numbers for download; :func:`read_npz`). A page needs nothing
else: every file is loaded with ``<script>`` / ``<link>`` from a relative path, so it works
from ``file://`` and offline.
"""
from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps

from clvsmim.explorer.assets import ASSETS, asset_bytes, asset_text  # noqa: F401  (asset_bytes: re-exported)
from clvsmim.explorer.payload import (GLOBAL, Measured, decode_rows, encode_rows, js_assignment, js_payload,
                                      pack_payload, payload_file_name)

NPZ_NAME = "explorer.npz"
#: Colour map of the attention maps (matplotlib's name).
COLORMAP = "inferno"


def colormap_lut(name: str = COLORMAP) -> list[list[int]]:
    """256 RGB entries (0–255) of a matplotlib colour map."""
    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.rint(rgba[:, :3] * 255).astype(int).tolist()


@dataclass
class ModelEntry:
    """One model of the explorer: ``name`` (file key), ``label`` (shown), ``color`` (CSS),
    ``control`` (hidden until the reader asks for it) and its :class:`Measured` attention."""

    name: str
    label: str
    color: str
    measured: Measured
    control: bool = False


@dataclass
class DataFolder:
    folder: Path
    files: list[Path]
    page_bytes: int  # every file a page can load (payloads, index, script, stylesheet)
    npz_bytes: int


def _check(images: np.ndarray, models: Sequence[ModelEntry], geometry: Mapping[str, Any]) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"explorer images: expected uint8 n×S×S×3, found {images.dtype} {images.shape}")
    if not models:
        raise ValueError("explorer: no models")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"explorer: model names must be unique, found {names}")
    want = (len(images), geometry["depth"], geometry["heads"], geometry["grid"][0] * geometry["grid"][1])
    for m in models:
        found = m.measured.rows.shape[:4]
        if found != want:
            raise ValueError(f"explorer model {m.name!r}: attention rows of shape n×L×H×N = {found}, "
                             f"expected {want} (images × depth × heads × patches)")


def write_data_folder(folder: str | os.PathLike, data_id: str, images: np.ndarray, models: Sequence[ModelEntry],
                      geometry: Mapping[str, Any], titles: Sequence[str] | None = None,
                      start: Mapping[str, int] | None = None, description: str = "") -> DataFolder:
    """Write the explorer's data folder (replacing its old files).

    ``images``: uint8 ``n×S×S×3``; ``geometry``: ``{"depth", "heads", "grid": [h, w],
    "patch_size", "img_size"}``; ``start``: ``{"image", "query", "layer"}`` (image position,
    patch index, 1-based layer) the page opens on.
    """
    folder = Path(folder)
    images = np.asarray(images)
    _check(images, models, geometry)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("img*.js"):
        old.unlink()
    titles = list(titles) if titles is not None else [f"image {i}" for i in range(len(images))]
    files: list[Path] = []
    index_images = []
    for i, img in enumerate(images):
        entry = {"title": titles[i], "rgb": base64.b64encode(np.ascontiguousarray(img).tobytes()).decode("ascii"),
                 "files": {}}
        for m in models:
            name = payload_file_name(i, m.name)
            path = folder / name
            path.write_text(js_payload(data_id, name[:-3], pack_payload(m.measured, i)), encoding="ascii")
            files.append(path)
            entry["files"][m.name] = name
        index_images.append(entry)
    index = {"format": 1, "description": description, "geometry": dict(geometry),
             "models": [{"name": m.name, "label": m.label, "color": m.color, "control": bool(m.control)}
                        for m in models],
             "images": index_images, "start": dict(start or {}), "colormap": colormap_lut(),
             "download": NPZ_NAME}
    (folder / "index.js").write_text(js_assignment(data_id, "index", json.dumps(index, separators=(",", ":"))),
                                     encoding="utf-8")
    files.append(folder / "index.js")
    for name in ASSETS:
        (folder / name).write_text(asset_text(name), encoding="utf-8")
        files.append(folder / name)
    npz = folder / NPZ_NAME
    write_npz(npz, images, models, geometry, titles)
    return DataFolder(folder, files, sum(p.stat().st_size for p in files), npz.stat().st_size)


def write_npz(path: str | os.PathLike, images: np.ndarray, models: Sequence[ModelEntry],
              geometry: Mapping[str, Any], titles: Sequence[str]) -> None:
    """The explorer's numbers as ``.npz``: ``images``, ``titles``, ``models``, ``geometry`` (JSON)
    and per model ``<name>.codes`` / ``.scale`` (the encoded rows; :func:`read_npz` decodes),
    ``.query_distance``, ``.distance``, ``.nmi``."""

    arrays: dict[str, Any] = {"images": images, "titles": np.array(list(titles)),
                              "models": np.array([m.name for m in models]),
                              "geometry": np.array(json.dumps(dict(geometry)))}
    for m in models:
        codes, scale = encode_rows(m.measured.rows)
        arrays.update({f"{m.name}.codes": codes, f"{m.name}.scale": scale,
                       f"{m.name}.query_distance": m.measured.query_distance,
                       f"{m.name}.distance": m.measured.distance, f"{m.name}.nmi": m.measured.nmi})
    tmp = Path(path).with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read_npz(path: str | os.PathLike) -> dict[str, Any]:
    """``{"images", "titles", "geometry", "models": {name: {"rows" n×L×H×N×N (decoded),
    "query_distance", "distance", "nmi"}}}`` from :func:`write_npz`'s file."""

    with np.load(path) as z:
        out: dict[str, Any] = {"images": z["images"], "titles": [str(t) for t in z["titles"]],
                               "geometry": json.loads(str(z["geometry"])), "models": {}}
        for name in (str(n) for n in z["models"]):
            out["models"][name] = {"rows": decode_rows(z[f"{name}.codes"], z[f"{name}.scale"]),
                                   **{k: z[f"{name}.{k}"] for k in ("query_distance", "distance", "nmi")}}
    return out


# ----------------------------------------------------------------------------- HTML

def embedded_html(base: str, data_id: str, fallback: str = "") -> str:
    """The HTML fragment that shows the explorer whose data folder is at URL ``base`` (relative
    to the page, ending in ``/``). ``fallback`` is shown where JavaScript does not run."""
    if not base.endswith("/"):
        base += "/"
    dom_id = f"clvsmim-explorer-{data_id}"
    b, e = html.escape(base, quote=True), html.escape(dom_id, quote=True)
    opts = json.dumps({"base": base, "id": data_id})
    return (f'<link rel="stylesheet" href="{b}explorer.css">\n'
            f'<div id="{e}" class="cx-root">{html.escape(fallback or "The attention explorer needs JavaScript.")}'
            f'</div>\n'
            f'<script src="{b}index.js"></script>\n'
            f'<script src="{b}explorer.js"></script>\n'
            f'<script>ClvsmimExplorer.mount(document.getElementById({json.dumps(dom_id)}), {opts});</script>\n')


def standalone_page(path: str | os.PathLike, data_folder: str | os.PathLike, data_id: str, title: str,
                    intro: str = "") -> Path:
    """Write a standalone HTML page at ``path`` showing the explorer of ``data_folder`` (linked
    by its path relative to the page)."""
    path = Path(path)
    rel = os.path.relpath(Path(data_folder), path.parent).replace(os.sep, "/")
    doc = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
           f'<title>{html.escape(title)}</title>\n'
           '<style>body{max-width:1400px;margin:1em auto;padding:0 1em;font-family:system-ui,sans-serif}</style>\n'
           f'</head>\n<body>\n<h1>{html.escape(title)}</h1>\n'
           + (f'<p>{html.escape(intro)}</p>\n' if intro else "")
           + embedded_html(rel + "/", data_id) + '</body>\n</html>\n')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


__all__ = ["ASSETS", "GLOBAL", "NPZ_NAME", "ModelEntry", "DataFolder", "asset_text", "asset_bytes", "colormap_lut",
           "write_data_folder", "write_npz", "read_npz", "embedded_html", "standalone_page"]
