"""The depth-0 position-embedding ablation (clvsmim.analysis.position_ablation)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clvsmim.book.plots.representation import plot_position_ablation
from clvsmim.analysis.position_ablation import (depth0_position_ablation, depth0_tokens, own_position_embedding)
from clvsmim.analysis.tokens import relative_log_amplitude
from clvsmim.config import ModelConfig
from clvsmim.families import family_model_config
from clvsmim.models import build_vit, capture, sincos_pos_embed_2d

CFG = ModelConfig(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0)


def _encoder(objective: str, families: str = "faithful", **over):
    torch.manual_seed(0)
    return build_vit(dataclasses.replace(family_model_config(families, objective, CFG), **over)).eval()


def test_own_embedding_of_each_family():
    assert own_position_embedding(_encoder("moco")) == "sincos"
    assert own_position_embedding(_encoder("mae")) == "sincos"
    assert own_position_embedding(_encoder("simmim")) == "none"  # BEiT-style: relative bias only
    assert own_position_embedding(_encoder("simmim", "v2")) == "sincos"
    assert own_position_embedding(_encoder("moco", sincos_pos_embed=False)) == "learned"


def test_without_a_patch_signal_the_curve_is_the_embedding_alone():
    enc = _encoder("moco")
    with torch.no_grad():
        enc.patch_embed.proj.weight.zero_()
        enc.patch_embed.proj.bias.zero_()
    res = depth0_position_ablation(enc, torch.randn(4, 3, 32, 32))
    assert res["curves"]["none"] == pytest.approx([0.0] * 4)  # constant tokens: flat spectrum
    alone = relative_log_amplitude(sincos_pos_embed_2d(64, 8, 0), num_prefix_tokens=0)
    assert res["curves"]["sincos"] == pytest.approx(alone.tolist(), abs=1e-9)
    assert res["delta"]["sincos"] < -5  # all of the embedding's energy at zero frequency on the diagonal
    assert res["architecture_share"] == pytest.approx(res["delta"]["sincos"])


def test_the_sincos_curve_is_the_encoders_own_depth0_and_lies_below():
    enc = _encoder("moco")
    x = torch.randn(16, 3, 32, 32)
    res = depth0_position_ablation(enc, x)
    depth0 = capture(enc, x, attentions=False).hidden_states[0]  # what the analyses read at depth 0
    assert res["curves"]["sincos"] == pytest.approx(relative_log_amplitude(depth0, 1).tolist(), abs=1e-9)
    assert res["architecture_share"] < 0  # the fixed embedding makes depth 0 more low-pass
    diff = depth0_tokens(enc, x, "sincos") - depth0_tokens(enc, x, "none")
    assert torch.allclose(diff, sincos_pos_embed_2d(64, 8, 0).expand_as(diff), atol=1e-6)
    with pytest.raises(ValueError, match="'none' or 'sincos'"):
        depth0_tokens(enc, x, "learned")


def test_plot_has_one_panel_per_family():
    x = torch.randn(4, 3, 32, 32)
    results = {name: depth0_position_ablation(_encoder(name), x) for name in ("moco", "simmim", "mae")}
    fig = plot_position_ablation(results, title="untrained")
    assert len(fig.axes) == 3 and "(own)" in " ".join(t.get_text() for t in fig.axes[1].get_legend().get_texts())


def test_position_ablation_of_a_zoo_model(tmp_path, monkeypatch):
    from clvsmim.train import zoo
    from clvsmim.analysis.position_ablation import position_ablation
    from clvsmim.config import profile_from_dict
    from clvsmim.book.figures import save_figure

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    profile = profile_from_dict({
        "name": "tiny-pos", "families": "faithful", "data": {"img_size": 16, "num_train": 16, "num_eval": 16},
        "model": {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0},
        "eval": {"num_analysis_images": 8}})
    zoo.build(profile, only="random", jobs=1, progress=False)  # the untrained control: MoCo's encoder
    res = position_ablation(profile, names=("random",))["random"]
    assert res["own"] == "sincos" and len(res["curves"]["none"]) == 2 and res["architecture_share"] < 0
    entry = save_figure(plot_position_ablation({"control": res}), "A-position-ablation", {"control": res},
                        out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "A-position-ablation.png").is_file() and entry
