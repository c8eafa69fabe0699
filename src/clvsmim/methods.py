"""The one registry of the book's methods: short name → label, family, plot style, official checkpoint.

Every other table derives from :data:`METHODS`: the plot styles of :mod:`clvsmim.book.figures`, the
legend names of :func:`display_name`, and the official checkpoint behind a short name
(:data:`OFFICIAL_NAMES`, used by the book's ``source="official"`` and ``clvsmim analyze --model``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from clvsmim.config import Profile

__all__ = ["Method", "METHODS", "OFFICIAL_NAMES", "CONTROL", "SOURCES", "ModelRef", "display_name"]


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

#: Where a model's weights come from: the profile's own trained zoo, or the official checkpoints.
SOURCES = ("zoo", "official")

#: Short name → official checkpoint name of :mod:`clvsmim.weights`.
OFFICIAL_NAMES: dict[str, str] = {k: m.official for k, m in METHODS.items() if m.official}


def display_name(name: str) -> str:
    """``moco`` -> ``MoCo v3``, ``hybrid-0.4`` -> ``hybrid λ=0.4``, ``simmim-Ti`` -> ``SimMIM (Ti)``."""
    base, _, rest = name.partition("-")
    if base == "hybrid":
        return f"hybrid λ={rest}"
    label = "random init" if base == CONTROL else (METHODS[base].label if base in METHODS else base)
    return f"{label} ({rest})" if rest else label


@dataclass(frozen=True)
class ModelRef:
    """One model an analysis looks at: what every model-level helper of the book takes.

    ``profile`` carries the data the model is analysed on (its root resolved once, at the entry
    point, with :meth:`Profile.with_data_root`); ``name`` is the short name (``moco``,
    ``simmim-Ti``, ``hybrid-0.4``, ``random`` …); ``source`` says where the weights come from:
    ``"zoo"`` (trained by the profile's zoo) or ``"official"`` (the official ViT-B/16
    checkpoints; the control is then the untrained ViT-B/16 built from the profile's seed).
    """

    profile: Profile
    name: str
    source: str = "zoo"

    def __repr__(self) -> str:
        return f"ModelRef({self.profile.name}:{self.name}, {self.source})"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")

    @property
    def base(self) -> str:
        """The method's short name without size or λ: ``simmim-Ti`` -> ``simmim``."""
        return self.name.partition("-")[0]

    @property
    def label(self) -> str:
        """The legend name (:func:`display_name`)."""
        return display_name(self.name)

    def named(self, name: str) -> "ModelRef":
        """The model ``name`` of the same profile and source."""
        return replace(self, name=name)

    def control(self) -> "ModelRef":
        """The untrained control a result of this model is compared with: same profile, same
        source (zoo: the zoo's untrained model of the same size; official: the seeded ViT-B/16)."""
        last = self.name.rpartition("-")[2]
        size = last if self.source == "zoo" and last in self.profile.sizes else ""
        return self.named(f"{CONTROL}-{size}" if size else CONTROL)
