"""ModelRef: the one value that names a model for the analyses (profile with its data root, name, source)."""
import pytest
import torch

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


def test_an_official_checkpoint_is_read_once_and_every_caller_gets_its_own_copy(monkeypatch, tmp_path):
    from clvsmim.book import report
    from clvsmim.config import ModelConfig, load_profile
    from clvsmim.models import build_vit
    from clvsmim.weights.download import cached_path

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path))
    checkpoint = cached_path(report.OFFICIAL_NAMES["moco"])
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"stand-in")  # the reader is faked; the file's identity is the cache key

    reads = []

    def fake_read(name, allow_pickle=False):
        reads.append(name)
        torch.manual_seed(len(reads))
        return build_vit(ModelConfig(img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2))

    monkeypatch.setattr(report, "_OFFICIAL_READ", {})
    monkeypatch.setattr(report, "load_pretrained", fake_read)
    monkeypatch.setattr(report, "random_control", lambda seed: fake_read(f"control-{seed}"))
    profile = load_profile("paper")
    first, second = (report.backbone(ModelRef(profile, "moco", "official")) for _ in range(2))
    assert reads == [report.OFFICIAL_NAMES["moco"]] and first is not second
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    with torch.no_grad():
        first.pos_embed.add_(1.0)  # a caller changing its model leaves the next caller's alone
    assert not torch.equal(report.backbone(ModelRef(profile, "moco", "official")).pos_embed, first.pos_embed)
    report.backbone(ModelRef(profile, "random", "official"))
    report.backbone(ModelRef(profile, "random", "official"))
    assert reads == [report.OFFICIAL_NAMES["moco"], "control-0"]  # one read per model, the control by its seed
    checkpoint.write_bytes(b"a replaced checkpoint")
    report.backbone(ModelRef(profile, "moco", "official"))
    assert reads[-1] == report.OFFICIAL_NAMES["moco"] and len(reads) == 3  # a replaced file is read again
