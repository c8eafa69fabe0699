"""One place where every figure of the book is saved, with the numbers behind it.

Every chapter saves each figure through :func:`save_figure`::

    from clvsmim.book.figures import save_figure, use_style, METHOD_STYLE
    use_style()
    fig, ax = plt.subplots()
    ...
    save_figure(fig, "F3", {"depth": depths, "moco": dist_moco, "simmim": dist_simmim},
                models=["moco", "simmim"], caption="Mean attention distance per depth.")

which writes ``<out>/figures/F3.png`` (150 dpi), ``F3.svg`` and the data as ``F3.json``
(dict or list; every number must be finite) or ``F3.csv`` (a pandas DataFrame), and records
the figure in ``<out>/figures/manifest.json``. ``<out>`` is ``$CLVSMIM_BOOK_OUT`` (set by
``clvsmim book``) or ``./_build/clvsmim``.

The plotting style is shared too: :func:`use_style` sets the rcParams and
:data:`METHOD_STYLE` gives the colour and marker of each method (CL red squares, MIM blue
triangles, hybrids purple); :func:`style_for` looks a method up by any spelling.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable

import matplotlib as mpl
import numpy as np
from cycler import cycler

from clvsmim.cache import write_text_atomic
from clvsmim.methods import METHODS

try:
    import fcntl  # POSIX: the manifest's lock
except ImportError:  # pragma: no cover - non-POSIX: atomic replace only
    fcntl = None

DEFAULT_OUT = Path("_build") / "clvsmim"
FIG_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
PNG_DPI = 150

# Families: contrastive learning (CL), masked image modeling (MIM), their combination.
FAMILY_COLOR = {"CL": "#d62728", "MIM": "#1f77b4", "hybrid": "#9467bd", "supervised": "#7f7f7f"}

#: Colour, marker and family of every method (from :data:`clvsmim.methods.METHODS`); all plots
#: draw methods with these.
METHOD_STYLE: dict[str, dict[str, Any]] = {key: method.style() for key, method in METHODS.items()}
_ALIASES = {
    "mocov3": "moco", "moco3": "moco", "mocov3vit": "moco", "cl": "moco",
    "dinov1": "dino",
    "simmimvit": "simmim", "mim": "simmim",
    "beitv1": "beit",
    "clmim": "hybrid", "mix": "hybrid",
    "deit": "supervised", "sup": "supervised",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def style_for(name: str) -> dict[str, Any]:
    """Style of a method by any spelling ("MoCo v3", "moco_v3", "SimMIM", "hybrid-0.4", ...).

    Returns a copy of the :data:`METHOD_STYLE` entry (keys ``label``, ``family``, ``color``,
    ``marker``, ``linestyle``). Names starting with ``hybrid`` map to the hybrid style; an
    unknown name raises ``KeyError`` listing the known ones.
    """
    key = _norm(name)
    if key in METHOD_STYLE:
        return dict(METHOD_STYLE[key])
    if key in _ALIASES:
        return dict(METHOD_STYLE[_ALIASES[key]])
    for prefix in ("hybrid", "clmim", "lam", "lambda"):
        if key.startswith(prefix):
            return dict(METHOD_STYLE["hybrid"])
    for known in METHOD_STYLE:  # "moco_vit_small" -> moco
        if key.startswith(known):
            return dict(METHOD_STYLE[known])
    raise KeyError(f"no plot style for method {name!r}; known: {sorted(METHOD_STYLE)}")


#: Style of a model that is no known method (e.g. a user's checkpoint in ``clvsmim analyze``).
OTHER_STYLE = {"color": "#333333", "marker": "o", "linestyle": "-"}


def plot_kwargs(name: str, **override: Any) -> dict[str, Any]:
    """Keyword arguments for ``ax.plot`` / ``ax.scatter`` for a method: colour, marker, label.

    A name that is no known method (:func:`style_for` raises) gets :data:`OTHER_STYLE`,
    labelled with the name itself.
    """
    try:
        s = style_for(name)
    except KeyError:
        s = {**OTHER_STYLE, "label": name}
    kw = {"color": s["color"], "marker": s["marker"], "label": s["label"], "linestyle": s["linestyle"]}
    kw.update(override)
    return kw


def lam_color(lam: float) -> str:
    """Colour of a hybrid model with weight ``lam`` on the CL loss: 0 = MIM blue ... 1 = CL red."""
    lam = min(max(float(lam), 0.0), 1.0)
    a = _hex_rgb(FAMILY_COLOR["MIM"])
    mid = _hex_rgb(FAMILY_COLOR["hybrid"])
    b = _hex_rgb(FAMILY_COLOR["CL"])
    if lam <= 0.5:
        t, lo, hi = lam / 0.5, a, mid
    else:
        t, lo, hi = (lam - 0.5) / 0.5, mid, b
    rgb = tuple(round(lo[i] + t * (hi[i] - lo[i])) for i in range(3))
    return "#%02x%02x%02x" % rgb


def _hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


STYLE_RC: dict[str, Any] = {
    "figure.figsize": (5.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": "tight",
    "font.family": "DejaVu Sans",  # ships with matplotlib: identical everywhere
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.6,
    "lines.markersize": 6,
    "image.cmap": "viridis",
    "svg.hashsalt": "clvsmim",  # stable ids inside the SVG files
}


def use_style() -> None:
    """Apply the book's matplotlib style (fonts, grid, spines, colour cycle CL red / MIM blue)."""
    rc = dict(STYLE_RC)
    order = ["moco", "simmim", "mae", "hybrid", "dino", "beit", "supervised"]
    rc["axes.prop_cycle"] = cycler(color=[METHOD_STYLE[k]["color"] for k in order])
    mpl.rcParams.update(rc)


# --------------------------------------------------------------------------------------------
# Provenance helpers
# --------------------------------------------------------------------------------------------
def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit hash of the git checkout holding ``path`` (default: this package), or None.

    A ``-dirty`` suffix marks uncommitted changes to tracked files.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    if where.is_file():
        where = where.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10)
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
        return commit or None
    except (OSError, subprocess.SubprocessError):
        return None


def book_out_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """Where the book's outputs go: ``out_dir``, else ``$CLVSMIM_BOOK_OUT``, else ``./_build/clvsmim``."""
    if out_dir is not None:
        return Path(out_dir)
    env = os.environ.get("CLVSMIM_BOOK_OUT")
    return Path(env) if env else DEFAULT_OUT


def figures_dir(out_dir: str | os.PathLike | None = None) -> Path:
    path = book_out_dir(out_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Data checks
# --------------------------------------------------------------------------------------------
def _to_plain(obj: Any, where: str) -> Any:
    """Turn numpy / torch / pandas / Path values into JSON types; raise on non-finite numbers."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"figure data has a non-finite value ({obj}) at {where or 'top level'}")
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"figure data key {k!r} at {where or 'top level'} is not a str/number")
            out[str(k)] = _to_plain(v, f"{where}.{k}" if where else str(k))
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    # torch / pandas are recognised by their module name, never imported here
    mod = type(obj).__module__.split(".")[0]
    if mod == "torch":
        return _to_plain(obj.detach().cpu().tolist(), where)
    if mod == "pandas":
        if hasattr(obj, "to_dict"):
            return _to_plain(obj.to_dict(), where)
    if mod == "numpy":
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "fc" and not np.all(np.isfinite(obj)):
                bad = np.argwhere(~np.isfinite(obj))[0]
                idx = "".join(f"[{int(i)}]" for i in bad)
                raise ValueError(f"figure data has a non-finite value ({obj[tuple(bad)]}) at "
                                 f"{where or 'top level'}{idx}")
            return obj.tolist()
        if isinstance(obj, np.generic):
            return _to_plain(obj.item(), where)
    raise TypeError(f"figure data at {where or 'top level'} has unsupported type {type(obj).__name__}")


def _check_frame(df: Any, allow_nan: bool) -> None:
    for col in df.columns:
        values = df[col]
        if values.dtype.kind not in "fc":
            continue
        arr = values.to_numpy()
        bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
        if bad.any():
            row = df.index[int(np.argmax(bad))]
            raise ValueError(f"figure data column {col!r} has a non-finite value ({arr[bad][0]}) at row {row!r}")


# --------------------------------------------------------------------------------------------
# Manifest (read-modify-write under a lock, written atomically)
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        if fcntl is None:  # pragma: no cover - non-POSIX: atomic replace only
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_manifest(out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The figure manifest ``{fig_id: entry}`` (empty if no figure was saved yet)."""
    path = book_out_dir(out_dir) / "figures" / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _register(fig_dir: Path, fig_id: str, entry: dict[str, Any]) -> None:
    manifest = fig_dir / "manifest.json"
    with _locked(fig_dir / ".manifest.lock"):
        current = json.loads(manifest.read_text()) if manifest.is_file() else {}
        current[fig_id] = entry
        write_text_atomic(manifest, json.dumps(dict(sorted(current.items())), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# The one saving function
# --------------------------------------------------------------------------------------------
def save_figure(fig: Any, fig_id: str, data: Any, out_dir: str | os.PathLike | None = None,
                chapter: str | None = None, models: Iterable[str] | None = None,
                caption: str | None = None, *, profile: str | None = None, seed: int | None = None,
                allow_nan: bool = False) -> dict[str, Any]:
    """Save ``fig`` as ``<out>/figures/<fig_id>.png`` and ``.svg`` with the data behind it.

    ``data``: a dict / list (written as ``<fig_id>.json``; every float must be finite, else
    ``ValueError`` naming the key) or a pandas DataFrame (``<fig_id>.csv``; non-finite numbers
    are rejected too, naming the column, unless ``allow_nan=True`` lets NaN mark missing
    cells). ``fig_id``: ``F0`` ... ``F10`` for the paper's figures, ``A-<name>`` for further
    analyses; letters, digits, ``_`` and ``-`` only. ``chapter`` / ``profile`` / ``seed``
    default to ``$CLVSMIM_CHAPTER`` / ``$CLVSMIM_PROFILE`` / ``$CLVSMIM_SEED`` (set by
    ``clvsmim book``). Returns the manifest entry, with absolute paths under ``paths``.
    The figure is neither closed nor shown: the notebook still displays it.
    """
    if not isinstance(fig_id, str) or not FIG_ID_RE.match(fig_id):
        raise ValueError(f"bad figure id {fig_id!r}: use letters, digits, '_' and '-' only (e.g. 'F3', 'A-svd')")
    if data is None:
        raise TypeError(f"figure {fig_id}: every figure needs the data behind it (dict, list or DataFrame)")

    # Validate the data before writing anything.
    is_frame = type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "to_csv")
    if is_frame and not hasattr(data, "columns"):  # Series
        data = data.to_frame()
    if is_frame:
        _check_frame(data, allow_nan)
        plain = None
    elif isinstance(data, (dict, list, tuple)):
        plain = _to_plain(data, "")
    else:
        raise TypeError(f"figure {fig_id}: data must be a dict, list or pandas DataFrame, "
                        f"not {type(data).__name__}")

    fig_dir = figures_dir(out_dir)
    png, svg = fig_dir / f"{fig_id}.png", fig_dir / f"{fig_id}.svg"
    data_path = fig_dir / f"{fig_id}.{'csv' if is_frame else 'json'}"
    stale = fig_dir / f"{fig_id}.{'json' if is_frame else 'csv'}"

    fig.savefig(png, dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    if is_frame:
        text = data.to_csv(index=True)
    else:
        text = json.dumps(plain, indent=1, allow_nan=False) + "\n"
    write_text_atomic(data_path, text)
    with contextlib.suppress(FileNotFoundError):
        stale.unlink()

    if seed is None and os.environ.get("CLVSMIM_SEED", "").strip():
        seed = int(os.environ["CLVSMIM_SEED"])
    entry = {
        "files": [png.name, svg.name, data_path.name],
        "chapter": chapter or os.environ.get("CLVSMIM_CHAPTER") or None,
        "profile": profile or os.environ.get("CLVSMIM_PROFILE") or None,
        "models": sorted(set(models)) if models else [],
        "seed": seed,
        "git_commit": git_commit(),
        "caption": caption,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _register(fig_dir, fig_id, entry)
    return {**entry, "id": fig_id, "paths": {"png": str(png.resolve()), "svg": str(svg.resolve()),
                                             "data": str(data_path.resolve())}}


def set_depth_ticks(ax: Any, depths: Iterable[int], max_ticks: int = 8) -> None:
    """Integer depth ticks on ``ax``'s x axis, at most about ``max_ticks`` of them."""
    depths = sorted(set(depths))
    if depths:
        ax.set_xticks(depths[::max(1, len(depths) // max_ticks)])


def bare_axes(ax: Any) -> None:
    """An axes that shows an image only: no ticks, no grid, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
