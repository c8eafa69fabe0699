"""The one registry of the book's methods: short name → label, family, plot style, official checkpoint.

Every other table derives from :data:`METHODS`: the plot styles of :mod:`clvsmim.book.figures`, the
legend names of :func:`display_name`, and the official checkpoint behind a short name
(:data:`OFFICIAL_NAMES`, used by the book's ``source="official"`` and ``clvsmim analyze --model``).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Method", "METHODS", "OFFICIAL_NAMES", "CONTROL", "display_name"]


@dataclass(frozen=True)
class Method:
    """One method: how it is labelled and drawn, and its official ViT-B/16 checkpoint (if any)."""

    label: str
    family: str  # "CL", "MIM", "hybrid", "supervised", "control"
    color: str
    marker: str
    linestyle: str = "-"
    official: str | None = None  # registry name of clvsmim.weights

    def style(self) -> dict[str, str]:
        """The plot style dict of :func:`clvsmim.book.figures.style_for`."""
        return {"label": self.label, "family": self.family, "color": self.color, "marker": self.marker,
                "linestyle": self.linestyle}


#: Short name → method. Colours: CL red, MIM blue, hybrids purple.
METHODS: dict[str, Method] = {
    "moco": Method("MoCo v3", "CL", "#d62728", "s", "-", official="moco_v3_vit_b"),
    "dino": Method("DINO", "CL", "#99000d", "D", "-.", official="dino_vit_b"),
    "simmim": Method("SimMIM", "MIM", "#1f77b4", "^", "-", official="simmim_vit_b"),
    "mae": Method("MAE", "MIM", "#08306b", "v", "--", official="mae_vit_b"),
    "beit": Method("BEiT", "MIM", "#6baed6", ">", ":"),
    "hybrid": Method("CL + MIM", "hybrid", "#9467bd", "o", "-"),
    "supervised": Method("Supervised", "supervised", "#7f7f7f", "x", ":"),
}

#: The untrained control: same architecture, random initialisation from the seed (never trained,
#: never downloaded). Not a plotted method, so it has no entry in :data:`METHODS`.
CONTROL = "random"

#: Short name → official checkpoint name of :mod:`clvsmim.weights`.
OFFICIAL_NAMES: dict[str, str] = {k: m.official for k, m in METHODS.items() if m.official}


def display_name(name: str) -> str:
    """``moco`` -> ``MoCo v3``, ``hybrid-0.4`` -> ``hybrid λ=0.4``, ``simmim-Ti`` -> ``SimMIM (Ti)``."""
    base, _, rest = name.partition("-")
    if base == "hybrid":
        return f"hybrid λ={rest}"
    label = "random init" if base == CONTROL else (METHODS[base].label if base in METHODS else base)
    return f"{label} ({rest})" if rest else label
