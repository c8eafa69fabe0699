"""ModelRef: the one value that names a model for the analyses (profile with its data root, name, source)."""
import pytest

from clvsmim.claims import model_cache_path
from clvsmim.config import profile_from_dict
from clvsmim.methods import CONTROL, ModelRef


def test_source_is_checked_and_names_are_split():
    profile = profile_from_dict({"name": "tiny"})
    with pytest.raises(ValueError, match="source must be one of"):
        ModelRef(profile, "moco", "hub")
    ref = ModelRef(profile, "simmim-Ti")
    assert (ref.base, ref.label, ref.source) == ("simmim", "SimMIM (Ti)", "zoo")
    assert ref.named("moco") == ModelRef(profile, "moco")
    assert "tiny:simmim-Ti" in repr(ref)


def test_the_control_rule_keeps_source_profile_and_size():
    profile = profile_from_dict({"name": "tiny", "sizes": {"Ti": {"embed_dim": 16}, "S": {}}})
    assert ModelRef(profile, "moco-Ti").control() == ModelRef(profile, f"{CONTROL}-Ti")
    assert ModelRef(profile, "moco").control() == ModelRef(profile, CONTROL)
    assert ModelRef(profile, "hybrid-0.4").control() == ModelRef(profile, CONTROL)  # λ is not a size
    assert ModelRef(profile, "hybrid-0.4-Ti").control() == ModelRef(profile, f"{CONTROL}-Ti")
    # official checkpoints: one seeded ViT-B/16 control whatever the name
    assert ModelRef(profile, "mae", "official").control() == ModelRef(profile, CONTROL, "official")


def test_the_data_root_in_the_profile_decides_the_caches(tmp_path):
    """A resolved data root changes every per-model cache path (zoo and official): the analyses
    of two data sets never share a file, and the path depends on nothing else passed around."""
    profile = profile_from_dict({"name": "tiny"})
    elsewhere = profile.with_data_root(tmp_path / "photos")
    for source in ("zoo", "official"):
        a = model_cache_path(ModelRef(profile, "moco", source), "analysis", {"n": 4})
        b = model_cache_path(ModelRef(elsewhere, "moco", source), "analysis", {"n": 4})
        assert a != b
        assert model_cache_path(ModelRef(profile, "moco", source), "analysis", {"n": 4}) == a  # pure
