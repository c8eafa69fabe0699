"""Evaluation recipes (clvsmim.evaluation) on a tiny ViT and on hand-made features."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from clvsmim import evaluation as E
from clvsmim.config import EvalConfig, ModelConfig, profile_from_dict
from clvsmim.data import make_synthetic
from clvsmim.data import augment
from clvsmim.families import family_model_config
from clvsmim.models import build_vit, capture
from clvsmim.train.optim import lr_scale_of

TINY_MODEL = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
CFG = EvalConfig(probe_steps=30, probe_lr=1e-2, finetune_steps=3, finetune_lr=5e-4, batch_size=32)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_vit(ModelConfig(**TINY_MODEL)).eval()


@pytest.fixture(scope="module")
def data():
    return make_synthetic(64, 32, seed=0), make_synthetic(48, 32, seed=1)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- features / linear probe

def test_extract_features_depths_pooling_and_mode(encoder, data):
    train, _ = data
    encoder.train()
    feats = E.extract_features(encoder, train.images, batch_size=24)
    assert encoder.training, "the training flag must be restored"
    encoder.eval()
    assert len(feats) == 3 and all(f.shape == (64, 16) for f in feats)
    last = E.extract_features(encoder, train, batch_size=64, depths=[-1])  # a dataset works too
    assert len(last) == 1 and torch.allclose(last[0], feats[-1], atol=1e-5)
    cls = E.extract_features(encoder, train.images[:8], batch_size=8, pool="cls")
    assert not torch.allclose(cls[-1], feats[-1][:8])


def test_linear_probe_has_one_accuracy_per_depth(encoder, data):
    res = E.linear_probe(encoder, *data, CFG)
    assert len(res["per_layer"]) == 2 + 1
    assert all(0.0 <= a <= 1.0 for a in res["per_layer"])
    assert res["final"] == res["per_layer"][-1]
    assert res["per_layer"][res["best_depth"]] == max(res["per_layer"])
    assert res["pool"] == "mean"


def test_cls_norm_plus_standardisation_equals_the_models_final_norm(data):
    """At the last depth, the affine-free LayerNorm of ``pool="cls_norm"`` equals the model's own
    final norm (any γ, β, negative γ included) once the probe has standardised each channel:
    equal up to each channel's sign, and the probe predicts the same classes."""
    torch.manual_seed(3)
    model = build_vit(ModelConfig(**TINY_MODEL)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.norm.weight.copy_(torch.randn(16, generator=g) * 2)  # mixed signs
        model.norm.bias.copy_(torch.randn(16, generator=g))
    train, _ = data
    images = train.images[:48]
    labels = torch.as_tensor(train.labels[:48], dtype=torch.int64)
    last = capture(model, augment.normalize(augment.to_float(images))).hidden_states[-1]
    with torch.no_grad():
        own = model.norm(last)[:, 0]  # MoCo v3's representation: final norm, then token 0
    ours = E.extract_features(model, images, batch_size=16, pool="cls_norm", depths=[-1])[0]
    assert not torch.allclose(own, ours, atol=1e-2)  # the equivalence is not a triviality
    own_std, ours_std = E.features._standardise(own[:32], own[32:]), E.features._standardise(ours[:32], ours[32:])
    sign = model.norm.weight.sign()
    for a, b in zip(own_std, ours_std):
        torch.testing.assert_close(a, b * sign, atol=1e-4, rtol=1e-4)
    cfg = EvalConfig(probe_steps=40, probe_lr=1e-2)
    assert torch.equal(E.probe_predict(own[:32], labels[:32], own[32:], cfg),
                       E.probe_predict(ours[:32], labels[:32], ours[32:], cfg))


def test_linear_probes_share_one_pass_and_match_single_probes(encoder, data):
    both = E.linear_probes(encoder, *data, CFG, ("mean", "cls_norm"))
    assert both["mean"] == E.linear_probe(encoder, *data, CFG)
    assert both["cls_norm"] == E.linear_probe(encoder, *data, CFG, pool="cls_norm")
    assert both["cls_norm"]["pool"] == "cls_norm" and len(both["cls_norm"]["per_layer"]) == 3
    feats = E.extract_pooled(encoder, data[0].images[:8], 8, ("mean", "cls_norm"))
    torch.testing.assert_close(feats["cls_norm"][1], E.extract_features(encoder, data[0].images[:8], 8, "cls_norm")[1])
    with pytest.raises(ValueError, match="mode must be one of"):
        E.extract_features(encoder, data[0].images[:8], 8, pool="max")


def test_probe_separates_separable_features():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4, 10) * 6.0
    y = torch.arange(200) % 4
    x = centres[y] + torch.randn(200, 10, generator=gen)
    y_test = torch.arange(100) % 4
    x_test = centres[y_test] + torch.randn(100, 10, generator=gen)
    cfg = EvalConfig(probe_steps=100, probe_lr=1e-2)  # Adam needs ~100 steps to ignore the noise dims
    pred = E.probe_predict(x, y, x_test, cfg)
    assert (pred == y_test).float().mean() >= 0.99
    again = E.probe_predict(x, y, [x_test, x_test[:5]], cfg)
    assert torch.equal(again[0], pred) and torch.equal(again[1], pred[:5])


# --------------------------------------------------------------------------- fine-tuning

def test_finetune_leaves_input_untouched_and_is_deterministic(encoder, data):
    before = _state(encoder)
    acc = E.finetune(encoder, *data, CFG, seed=0)
    acc2, model = E.finetune(encoder, *data, CFG, seed=0, return_model=True)
    assert 0.0 <= acc <= 1.0 and acc == acc2
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not encoder.training
    tuned = model.encoder.state_dict()
    assert any(not torch.equal(before[k], tuned[k]) for k in before), "fine-tuning must update the copy"
    assert torch.equal(tuned["pos_embed"], before["pos_embed"]), "fixed sin-cos position embedding stays fixed"


def test_finetune_lr_scales_scale_the_named_parameters_steps(encoder, data):
    """AdamW moves a parameter by at most lr_t per step (|m̂/√v̂| ≤ 1, weight decay aside): with
    the blocks' learning rate scaled by 1e-3 their weights move at most 1e-3 × Σ lr_t (+ decay),
    while without the scale some weight moves by more than that bound."""
    before = _state(encoder)
    _, plain = E.finetune(encoder, *data, CFG, seed=0, return_model=True)
    _, scaled = E.finetune(encoder, *data, CFG, seed=0, return_model=True, lr_scales={"blocks.": 1e-3})
    bound = 1e-3 * CFG.finetune_lr * CFG.finetune_steps * 1.01
    moved = lambda model: max(float((t - before[k]).abs().max()) for k, t in model.encoder.state_dict().items()
                              if k.startswith("blocks.") and "weight" in k)
    assert moved(scaled) <= bound < moved(plain)
    patch = scaled.encoder.state_dict()["patch_embed.proj.weight"]  # not named: trains at the full rate
    assert float((patch - before["patch_embed.proj.weight"]).abs().max()) > bound


def test_finetune_table_per_block_splits_only_a_beit_encoders_shared_table(encoder, data):
    """``per_block``: each block of the BEiT encoder fine-tunes its own copy of the shared table
    (they start equal and end different), the input keeps its shared table; a plain ViT (no table)
    fine-tunes bit-identically either way; an unknown setting names the field."""
    per_block = dataclasses.replace(CFG, finetune_table="per_block")
    torch.manual_seed(0)
    beit = build_vit(family_model_config("faithful", "simmim", ModelConfig(**TINY_MODEL))).eval()
    shared_before = beit.rel_pos_bias.relative_position_bias_table.detach().clone()
    _, split = E.finetune(beit, *data, per_block, seed=0, return_model=True)
    _, kept = E.finetune(beit, *data, CFG, seed=0, return_model=True)
    tables = [b.attn.relative_position_bias_table for b in split.encoder.blocks]
    assert split.encoder.rel_pos_bias is None and kept.encoder.rel_pos_bias is not None
    assert not torch.equal(tables[0], tables[1]) and all(not torch.equal(t, shared_before) for t in tables)
    assert torch.equal(beit.rel_pos_bias.relative_position_bias_table, shared_before)
    _, plain = E.finetune(encoder, *data, CFG, seed=0, return_model=True)
    _, plain_per_block = E.finetune(encoder, *data, per_block, seed=0, return_model=True)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), plain_per_block.state_dict().values()))
    with pytest.raises(ValueError, match="finetune_table"):
        EvalConfig(finetune_table="per_layer")


@pytest.mark.parametrize("families", ["v2", "faithful"])
def test_layer_decay_scales_follow_the_upstream_layer_ids(families):
    """Each parameter's multiplier equals decay ** (L + 1 - layer id) with BEiT's layer ids
    (embeddings 0, block i -> i + 1, everything else L + 1), on the sin-cos ViT and the BEiT
    encoder (whose shared relative position bias is "everything else")."""
    enc = build_vit(family_model_config(families, "simmim", ModelConfig(img_size=16, patch_size=4, embed_dim=16,
                                                                         depth=3, num_heads=2)))
    decay, depth = 0.5, 3
    scales = E.layer_decay_scales(enc, decay)

    def layer_id(name: str) -> int:
        if name.startswith(("patch_embed", "cls_token", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return depth + 1

    for name, _ in enc.named_parameters():
        assert lr_scale_of(f"encoder.{name}", scales) == pytest.approx(decay ** (depth + 1 - layer_id(name))), name
    assert E.layer_decay_scales(enc, 1.0) == ()
    with pytest.raises(ValueError, match="layer decay"):
        E.layer_decay_scales(enc, 0.0)


def test_finetune_bf16_and_precision_choice(encoder, data, monkeypatch):
    acc = E.finetune(encoder, *data, CFG, precision="bf16")
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError):
        E.finetune(encoder, *data, CFG, precision="fp16")
    assert E.finetune_precision("fp32", "cpu") == "fp32"
    assert E.finetune_precision("bf16", "cuda") == "bf16"
    monkeypatch.setattr(E, "native_bf16", lambda device: False)
    assert E.finetune_precision("bf16", "cpu") == "fp32"  # emulated bf16 is several times slower
    monkeypatch.setattr(E, "native_bf16", lambda device: True)
    assert E.finetune_precision("bf16", "cpu") == "bf16"


# --------------------------------------------------------------------------- dense probe

def test_dense_probe_oracle_features_give_miou_one():
    gen = torch.Generator().manual_seed(0)
    targets = torch.rand(40, 16, generator=gen) > 0.6
    tokens = targets.float().unsqueeze(-1).expand(-1, -1, 8) + 0.05 * torch.randn(40, 16, 8, generator=gen)
    res = E.dense_probe_from_tokens(tokens[:30], targets[:30], tokens[30:], targets[30:], CFG)
    assert res["miou"] == pytest.approx(1.0) and res["token_acc"] == pytest.approx(1.0)
    assert res["pred"].shape == (10, 16)


def test_segmentation_scores_by_hand():
    pred = torch.tensor([1, 1, 0, 0])
    target = torch.tensor([1, 0, 0, 0])
    s = E.segmentation_scores(pred, target)
    assert s["iou"] == [pytest.approx(2 / 3), pytest.approx(1 / 2)]
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2) and s["acc"] == pytest.approx(0.75)


def test_dense_probe_on_encoder(encoder, data):
    res = E.dense_probe(encoder, *data, CFG)
    for k in ("miou", "token_acc", "pixel_acc", "pixel_miou"):
        assert 0.0 <= res[k] <= 1.0


# --------------------------------------------------------------------------- shape vs texture

def test_shape_bias_formula():
    shape = torch.tensor([0, 1, 2, 3, 4])
    texture = torch.tensor([1, 2, 3, 4, 0])
    assert E.shape_bias_from_predictions(shape, shape, texture)["shape_bias"] == 1.0  # shape-only classifier
    assert E.shape_bias_from_predictions(texture, shape, texture)["shape_bias"] == 0.0
    mixed = E.shape_bias_from_predictions(torch.tensor([0, 1, 3, 7, 0]), shape, texture)
    # 2 shape decisions, 2 texture decisions (3 is texture of #2, 0 of #4), 1 neither
    assert mixed["shape_bias"] == pytest.approx(0.5)
    assert mixed["shape_acc"] == pytest.approx(0.4) and mixed["texture_acc"] == pytest.approx(0.4)
    assert mixed["num_decided"] == 4


def test_shape_texture_bias_on_encoder(encoder):
    res = E.shape_texture_bias(encoder, CFG, img_size=32, seed=0, sizes=(64, 32))
    assert 0.0 <= res["shape_bias"] <= 1.0
    assert 0.0 <= res["shape_acc"] + res["texture_acc"] <= 1.0


# --------------------------------------------------------------------------- noise

def test_band_limited_noise_energy_and_band():
    seeds = torch.arange(6)
    low = E.band_limited_noise(seeds, 16, "low", cutoff=0.5, strength=0.1)
    high = E.band_limited_noise(seeds, 16, "high", cutoff=0.5, strength=0.1)
    assert torch.equal(low, E.band_limited_noise(seeds, 16, "low", cutoff=0.5, strength=0.1))
    for noise in (low, high):
        assert noise.shape == (6, 3, 16, 16)
        assert torch.allclose(noise.pow(2).mean(dim=(1, 2, 3)).sqrt(), torch.full((6,), 0.1), atol=1e-5)
    f = torch.fft.fftfreq(16)
    radius = torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2) / 0.5
    power_low = torch.fft.fft2(low).abs().pow(2).sum(dim=(0, 1))
    power_high = torch.fft.fft2(high).abs().pow(2).sum(dim=(0, 1))
    assert power_low[radius > 0.5].sum() < 1e-6 * power_low.sum()
    assert power_high[radius <= 0.5].sum() < 1e-6 * power_high.sum()


def test_noise_robustness_on_encoder(encoder, data):
    res = E.noise_robustness(encoder, *data, CFG)
    assert all(0.0 <= res[k] <= 1.0 for k in ("clean", "low_freq", "high_freq"))
    assert res == E.noise_robustness(encoder, *data, CFG)


# --------------------------------------------------------------------------- everything

def test_evaluate_model_is_strict_json(encoder):
    profile = profile_from_dict({
        "name": "tiny", "data": {"img_size": 32, "num_train": 64, "num_eval": 32},
        "model": TINY_MODEL, "eval": {"probe_steps": 10, "finetune_steps": 2, "batch_size": 32},
    })
    res = E.evaluate_model(encoder, profile)
    json.dumps(res, allow_nan=False)
    assert len(res["linear_probe"]["per_layer"]) == 3
    assert 0.0 <= res["finetune"] <= 1.0
    assert set(res["noise"]) >= {"clean", "low_freq", "high_freq"}
    assert res["dense_probe"] is not None and res["shape_texture"] is not None


def test_evaluate_models_shared_pass_equals_the_standalone_evaluations(encoder, monkeypatch):
    """One frozen pass per split feeds the probes, the dense probe and the clean noise probe: every
    number equals the standalone function's, which runs its own passes (dense capped at 48 images)."""
    import clvsmim.evaluation as evaluation
    from clvsmim.data import open_dataset

    monkeypatch.setattr(evaluation, "DENSE_MAX_TRAIN_IMAGES", 48)  # the cap cuts inside the training set
    profile = profile_from_dict({
        "name": "tiny", "data": {"img_size": 32, "num_train": 80, "num_eval": 40},
        "model": TINY_MODEL, "eval": {"probe_steps": 10, "finetune_steps": 2, "batch_size": 16},
    })
    res = E.evaluate_model(encoder, profile, finetune_model=False)
    train_set, eval_set = (open_dataset(profile.eval_data(), split) for split in ("train", "eval"))
    cfg = profile.eval
    probes = E.linear_probes(encoder, train_set, eval_set, cfg, ("mean", "cls_norm"))
    assert res["linear_probe"] == probes["mean"] and res["linear_probe_cls"] == probes["cls_norm"]
    assert res["dense_probe"] == json.loads(json.dumps(E.dense_probe(encoder, train_set, eval_set, cfg,
                                                                     max_train_images=48)))
    assert res["noise"] == E.noise_robustness(encoder, train_set, eval_set, cfg)
    assert {"features_train", "features_eval", "linear_probe", "noise"} <= set(res["timing_s"])


def test_precomputed_features_of_the_wrong_shape_are_refused(encoder, data):
    train, held_out = data
    with pytest.raises(ValueError, match=r"clean evaluation features must be N×C with N = 48 images, found shape \(40, 16\)"):
        E.noise_robustness(encoder, train, held_out, CFG, clean_features=(torch.zeros(64, 16), torch.zeros(40, 16)))
    with pytest.raises(ValueError, match=r"training tokens must be 64 images × 16 patches × C, found shape \(8, 16, 16\)"):
        E.dense_probe(encoder, train, held_out, CFG, tokens=(torch.zeros(8, 16, 16), torch.zeros(48, 16, 16)))
    with pytest.raises(ValueError, match="training features have poolings"):
        E.linear_probes_from_features({"mean": []}, torch.zeros(1), {"cls_norm": []}, torch.zeros(1), CFG)
