"""What every chapter shares: its setup (:func:`chapter_profile`), showing a list of sentences, the literature table, the zoo's
evaluations by short name, number formatting and the sentence that compares a measurement with
the paper.

Conventions of the chapter modules (``book/chapters/<chapter>.py``), which import their shared
helpers from here and never from one another:

* a function named ``*_sentences`` returns a list of lines, shown with :func:`show_bullets`;
* a function named ``*_paragraph`` or ``*_note`` returns Markdown text (``*_note``: a clause
  or short remark to append to other text, possibly empty);
* a function named ``*_sentence`` returns one sentence (plain Markdown text).
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Sequence

from clvsmim.book import report
from clvsmim.book.figures import use_style
from clvsmim.book.paper_data import book_data_root
from clvsmim.config import Profile, load_profile
from clvsmim.data import open_dataset
from clvsmim.methods import ModelRef
from clvsmim.train import zoo

__all__ = ["chapter_profile", "show_bullets", "LITERATURE_COLUMNS", "STATUSES", "FAMILIES", "SIZE_ORDER", "PAPER_RUN_MARK",
           "read_literature", "evaluations_by_name", "control_analysis", "fmt_number", "verdict", "compare_sentence",
           "WEAK_SILHOUETTE", "cluster_strength_note", "eval_size"]

LITERATURE_COLUMNS = ("method", "family", "size", "params_m", "linear_probe", "finetune", "coco_ap_box",
                      "status", "source")
#: How reliable a literature number is; only ``verified`` rows are drawn with filled markers.
STATUSES = ("verified", "partly verified", "approximate", "recalled")
FAMILIES = ("CL", "MIM", "supervised")
#: ViT sizes from small to large (the x axis of F1b).
SIZE_ORDER = ("Ti", "S", "B", "L", "H")
#: Suffix of a literature method name for the paper's own runs (its Figure 1b marks them †):
#: numbers read off the paper's figure, not published elsewhere, drawn as their own series.
PAPER_RUN_MARK = "†"
#: A silhouette below this is read as no substantial cluster structure (Kaufman & Rousseeuw's
#: rule of thumb): a claim that CL clusters *more* than MIM can hold while CL barely clusters.
WEAK_SILHOUETTE = 0.25


def chapter_profile(profile: str | Path, images: int | None = None, source: str = "zoo",
                    data_root: str | None = None) -> Profile:
    """A chapter's setup from its parameters cell: the book's figure style, and the profile
    ``profile`` (a name or YAML path; ``images`` replaces its number of analysis images) reading
    the images :func:`~clvsmim.book.paper_data.book_data_root` gives for ``source`` and
    ``data_root`` (``source="official"`` without either: Imagenette)."""
    use_style()
    cfg = load_profile(profile, images)
    return cfg.with_data_root(book_data_root(cfg, source, data_root))


def show_bullets(lines: list[str], empty: str = "*(nothing to compare)*") -> None:
    """Display ``lines`` as a Markdown bullet list in a notebook (``empty`` when there are none)."""
    from IPython.display import Markdown, display  # lazy: IPython (the book extra) exists only in a notebook

    display(Markdown("\n".join(f"- {line}" for line in lines) if lines else empty))


# --------------------------------------------------------------------------- the literature table

def read_literature(path: str | Path = "data/literature.csv"):
    """The literature table as a DataFrame, validated.

    Every row needs a ``source`` (non-empty) and a ``status`` among :data:`STATUSES`; the
    family is one of :data:`FAMILIES`, the size one of :data:`SIZE_ORDER`; the number
    columns are floats (NaN where the source gives none). Raises ``ValueError`` naming the row.
    """
    import pandas as pd  # lazy: the command line imports this module; only the chapters read the table

    df = pd.read_csv(path, dtype={"source": str, "status": str})
    missing = [c for c in LITERATURE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(LITERATURE_COLUMNS)}")
    for i, row in df.iterrows():
        where = f"{path}, row {i + 2} ({row['method']} {row['size']})"
        if not isinstance(row["source"], str) or not row["source"].strip():
            raise ValueError(f"{where}: every literature number needs a source")
        if row["status"] not in STATUSES:
            raise ValueError(f"{where}: status {row['status']!r} is not one of {STATUSES}")
        if row["family"] not in FAMILIES:
            raise ValueError(f"{where}: family {row['family']!r} is not one of {FAMILIES}")
        if row["size"] not in SIZE_ORDER:
            raise ValueError(f"{where}: size {row['size']!r} is not one of {SIZE_ORDER}")
    for col in ("params_m", "linear_probe", "finetune", "coco_ap_box"):
        df[col] = pd.to_numeric(df[col], errors="raise").astype(float)
    return df


# --------------------------------------------------------------------------- the zoo's evaluations

def evaluations_by_name(profile, names: Sequence[str], progress: bool = False) -> dict[str, dict[str, Any]]:
    """``{short name: zoo evaluation}`` for the zoo models ``names`` (built ones only; cached)."""

    keys = {}
    for name in names:
        try:
            keys[name] = zoo.resolve(profile, name).key
        except KeyError:
            continue  # e.g. a size this profile does not have
    results = zoo.evaluations(profile, only=sorted(set(keys)), missing="skip", progress=progress)
    return {name: results[key] for name, key in keys.items() if key in results}


def control_analysis(ref: ModelRef, device: str = "auto"):
    """:func:`clvsmim.book.report.model_analysis` of the untrained control of ``ref``
    (:meth:`ModelRef.control`), or ``None`` when it is not built (zoo). Next to official
    checkpoints it is built from the seed (:func:`clvsmim.book.paperbook.random_control`)."""
    try:
        return report.model_analysis(ref.control(), device=device)
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- numbers and sentences

def fmt_number(value: float | None, digits: int = 2, unit: str = "") -> str:
    """``value`` with ``digits`` decimals and ``unit`` after a space (``"n/a"`` when it is missing,
    not a number or not finite)."""
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def verdict(a: float | None, b: float | None, expected: str, tol: float = 0.0) -> str:
    """``"agrees"`` when ``a expected b`` holds (``expected`` is ``">"`` or ``"<"``) by more
    than ``tol``, ``"differs"`` otherwise, ``"n/a"`` when a value is missing."""
    if expected not in (">", "<"):
        raise ValueError(f"expected must be '>' or '<', got {expected!r}")
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    return "agrees" if ((a - b) > tol if expected == ">" else (b - a) > tol) else "differs"


def compare_sentence(quantity: str, a: str, a_value: float | None, b: str, b_value: float | None,
                     expected: str, unit: str = "", digits: int = 2, tol: float | None = None) -> str:
    """One markdown sentence: the measured values, the paper's direction and whether they agree.

    ``compare_sentence("late-layer attention distance", "MoCo v3", 9.8, "SimMIM", 6.1, ">", "px", 1)``
    -> ``"late-layer attention distance: MoCo v3 9.8 px vs SimMIM 6.1 px. The paper finds
    MoCo v3 > SimMIM; here the measurement **agrees**."``

    A difference no larger than ``tol`` (default: half a unit of the last shown digit) is a
    tie: the sentence says the measurement **differs** because the two are equal at the
    shown precision — a tie never counts as agreement.
    """
    tol = 0.5 * 10.0 ** (-digits) if tol is None else float(tol)
    v = verdict(a_value, b_value, expected, tol)
    measured = f"{quantity}: {a} {fmt_number(a_value, digits, unit)} vs {b} {fmt_number(b_value, digits, unit)}."
    paper = f"The paper finds {a} {expected} {b}"
    if v == "n/a":
        return f"{measured} {paper}; here it cannot be checked (a value is missing)."
    if v == "differs" and abs(float(a_value) - float(b_value)) <= tol:
        return f"{measured} {paper}; here the two are equal at this precision, so the measurement **differs**."
    return f"{measured} {paper}; here the measurement **{v}**."


def cluster_strength_note(cl_silhouette: float | None, threshold: float = WEAK_SILHOUETTE) -> str:
    """A clause saying CL's own clustering by image is weak in absolute terms (its silhouette is
    below ``threshold``), or ``""`` when it is not (or unknown)."""
    if cl_silhouette is None or not isinstance(cl_silhouette, (int, float)) or not math.isfinite(cl_silhouette):
        return ""
    if cl_silhouette >= threshold:
        return ""
    return (f"CL's own silhouette by image, {fmt_number(cl_silhouette, 3)}, is below {threshold:g}: weak per-image "
            f"clustering in absolute terms")


def eval_size(profile) -> int | None:
    """Number of evaluation images (what every accuracy of the zoo's evaluations is over), or
    ``None`` when the split cannot be opened."""
    try:
        return len(open_dataset(profile.eval_data(), "eval"))
    except (OSError, ValueError, TypeError):
        return None
