"""One registry of methods: every derived table agrees with clvsmim.methods.METHODS."""
from clvsmim.analysis import backbones
from clvsmim.book import figures
from clvsmim.book import report
from clvsmim.methods import METHODS, OFFICIAL_NAMES, display_name
from clvsmim.weights import REGISTRY


def test_derived_tables_come_from_the_registry():
    assert set(figures.METHOD_STYLE) == set(METHODS)
    for key, method in METHODS.items():
        assert figures.style_for(key)["color"] == method.color and figures.style_for(key)["label"] == method.label
    assert report.OFFICIAL_NAMES is OFFICIAL_NAMES and backbones.OFFICIAL_NAMES is OFFICIAL_NAMES
    assert set(OFFICIAL_NAMES.values()) <= set(REGISTRY)  # every short name resolves to a real checkpoint
    assert OFFICIAL_NAMES["moco"] == "moco_v3_vit_b" and "hybrid" not in OFFICIAL_NAMES


def test_display_names():
    assert display_name("moco") == "MoCo v3" and display_name("simmim-Ti") == "SimMIM (Ti)"
    assert display_name("hybrid-0.4") == "hybrid λ=0.4" and display_name("random") == "random init"
    assert display_name("unknown") == "unknown"
