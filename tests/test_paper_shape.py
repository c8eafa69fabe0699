"""C6 on the official models: the synthetic cue-conflict protocol at the model's resolution."""
from __future__ import annotations

import pytest
import torch

from clvsmim.book import paper_shape
from clvsmim.book.paper_shape import shape_bias_evaluation, shape_budget_words, shape_sizes
from clvsmim.config import ModelConfig, load_profile
from clvsmim.evaluation.robustness import SHAPE_TEXTURE_SIZES
from clvsmim.methods import ModelRef
from clvsmim.models import build_vit


def test_shape_sizes_scale_with_the_images_and_stop_at_the_miniatures_counts():
    assert shape_sizes(8) == (64, 32)
    assert shape_sizes(1) == (8, 4)
    assert shape_sizes(256) == SHAPE_TEXTURE_SIZES == (2048, 1024)
    assert shape_sizes(10_000) == SHAPE_TEXTURE_SIZES
    with pytest.raises(ValueError, match="at least one analysis image"):
        shape_sizes(0)
    assert "64 aligned" in shape_budget_words(8) and "32 conflict" in shape_budget_words(8)


def test_shape_bias_evaluation_reads_the_models_resolution_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    tiny = build_vit(ModelConfig(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2))
    calls = []

    def fake_backbone(ref, device):
        calls.append(ref.name)
        return tiny

    monkeypatch.setattr(paper_shape, "backbone", fake_backbone)
    ref = ModelRef(load_profile("paper", images=4).with_data_root(tmp_path), "moco", "official")
    result = shape_bias_evaluation(ref, device="cpu")
    assert (result["num_aligned"], result["num_conflict"], result["img_size"]) == (32, 16, 32)
    assert 0 <= result["num_decided"] <= 16
    assert result["shape_acc"] * 16 == pytest.approx(round(result["shape_acc"] * 16))  # k of 16 decisions
    if result["num_decided"]:
        assert 0 <= result["shape_bias"] <= 1
    assert shape_bias_evaluation(ref, device="cpu") == result and calls == ["moco"]  # second call: the cache
