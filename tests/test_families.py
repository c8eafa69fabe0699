"""Model families (clvsmim.families): the faithful encoders and the unchanged v2 ones."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import timm
import torch

from clvsmim.train import zoo
from clvsmim.data.augment import blur_sigma_for, gaussian_blur
from clvsmim.train.checkpoint import load_encoder, save_atomic
from clvsmim.config import ModelConfig, load_profile, profile_from_dict, to_dict
from clvsmim.families import FAITHFUL_BLUR_SIGMA, family_model_config, objective_model_config
from clvsmim.models import (build_vit, capture, has_shared_relative_position_bias, sincos_pos_embed_2d,
                            unshare_relative_position_bias_)
from clvsmim.objectives import build_objective
from clvsmim.train.trainer import uses_weight_decay

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 2, "mlp_ratio": 2.0}


@pytest.fixture
def mini2():
    return load_profile("mini2")


@pytest.fixture
def faithful():
    return load_profile("mini3")


def _old_build_vit(cfg: ModelConfig) -> torch.nn.Module:
    """The v2 encoder exactly as ``build_vit`` built it before the families existed."""
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, num_classes=0, drop_path_rate=cfg.drop_path_rate,
        global_pool="token")
    model.pos_embed.data.copy_(sincos_pos_embed_2d(cfg.embed_dim, cfg.img_size // cfg.patch_size, 1))
    model.pos_embed.requires_grad_(False)
    return model


def _digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name and bytes, in state-dict order."""
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- v2 unchanged

def test_mini2_keys_are_those_of_its_shipped_zoo(mini2):
    """``mini2`` (families v2) keeps exactly the keys its shipped weights were trained under."""
    shipped = set(json.loads((ROOT / "zoo-weights" / "mini2-zoo.json").read_text())["models"])
    assert {s.key for s in zoo.zoo_specs(mini2)} == shipped
    assert mini2.families == "v2"
    assert "families" not in json.dumps(to_dict(mini2.model)) and "encoder" not in to_dict(mini2.model)


@pytest.mark.parametrize("objective", ["moco", "simmim", "mae", "hybrid"])
def test_v2_builds_bit_identical_parameters(mini2, objective):
    torch.manual_seed(3)
    old = _old_build_vit(mini2.model).state_dict()
    torch.manual_seed(3)
    new = build_objective(objective, mini2, lam=0.5 if objective == "hybrid" else None).encoder.state_dict()
    assert list(old) == list(new)
    assert all(torch.equal(old[k], new[k]) for k in old)
    assert _digest(old) == _digest(new)


def test_v2_family_leaves_configs_alone(mini2):
    for obj in ("moco", "simmim", "mae", "hybrid", "random"):
        assert family_model_config("v2", obj, mini2.model) is mini2.model
    assert mini2.moco.blur_sigma is None
    with pytest.raises(ValueError, match="unknown families"):
        profile_from_dict({"families": "paper"})


# ----------------------------------------------------------------------------- faithful

def test_the_default_mini_is_the_chosen_candidate(faithful):
    """``mini`` (v3) is mini3 on a flat background: the models trained for the sweep candidate
    ``mini3-bg0`` are ``mini``'s (same keys), and only the data and the number of fine-tuning runs
    differ from mini3; the candidate with five runs (``mini3-bg0-ft5``) is ``mini`` but for its name."""
    mini = load_profile("mini")
    candidate = load_profile(ROOT / "benchmarks" / "mini_candidates" / "mini3-bg0.yaml")
    assert mini.families == "faithful" and mini.data.background_contrast == 0.0
    assert [s.key for s in zoo.zoo_specs(mini)] == [s.key for s in zoo.zoo_specs(candidate)]
    assert dataclasses.replace(mini, name=faithful.name, data=faithful.data,
                               eval=dataclasses.replace(mini.eval, finetune_repeats=1)) == faithful
    assert mini.eval.finetune_repeats == 5
    ft5 = load_profile(ROOT / "benchmarks" / "mini_candidates" / "mini3-bg0-ft5.yaml")
    assert dataclasses.replace(ft5, name="mini") == mini
    assert mini.data != faithful.data
    assert [s.key for s in zoo.zoo_specs(mini)] != [s.key for s in zoo.zoo_specs(faithful)]


def test_faithful_keys_differ_only_where_the_family_differs(mini2, faithful):
    v2 = {s.name: s for s in zoo.zoo_specs(mini2)}
    f3 = {s.name: s for s in zoo.zoo_specs(faithful)}
    # the faithful zoo adds the untrained controls of SimMIM's own (BEiT) encoder, nothing else
    assert set(f3) - set(v2) == {"random-simmim-S", "random-simmim-Ti"} and set(v2) <= set(f3)
    assert f3["mae-S"].key == v2["mae-S"].key  # MAE was already built as upstream
    for name in ("moco-S", "simmim-S", "hybrid-0.4-S", "random-S", "simmim-Ti"):
        assert f3[name].key != v2[name].key
    assert f3["simmim-S"].model_cfg.encoder == "beit" and not f3["simmim-S"].model_cfg.sincos_pos_embed
    assert f3["moco-S"].model_cfg.patch_init == "moco_v3"
    assert faithful.moco.blur_sigma == FAITHFUL_BLUR_SIGMA


def test_faithful_simmim_is_the_beit_style_encoder(faithful):
    torch.manual_seed(0)
    obj = build_objective("simmim", faithful)
    enc = obj.encoder
    names = dict(enc.named_parameters())
    assert isinstance(enc, timm.models.beit.Beit)
    assert enc.pos_embed is None and not any("pos_embed" in n for n in names)
    table = names["rel_pos_bias.relative_position_bias_table"]  # ONE table shared by every block
    assert table.shape == ((2 * 8 - 1) ** 2 + 3, 2) and torch.count_nonzero(table) == 0
    assert not any(n.startswith("blocks.") and "relative_position" in n for n in names)
    gammas = [p for n, p in names.items() if ".gamma_" in n]
    assert len(gammas) == 2 * 6 and all(torch.all(g == 0.1) for g in gammas)
    assert not uses_weight_decay("encoder.rel_pos_bias.relative_position_bias_table", table)
    # BEiT init: trunc-normal(0.02) linears, residual projections divided by sqrt(2·(l+1))
    qkv = torch.cat([b.attn.qkv.weight.flatten() for b in enc.blocks])
    assert qkv.std().item() == pytest.approx(0.02, rel=0.05)
    for depth, blk in enumerate(enc.blocks):
        assert blk.mlp.fc2.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * (depth + 1)), rel=0.1)
    # trains: gradients reach the shared bias table and the layer scales
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    obj(images, torch.arange(4))["loss"].backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
    assert all(g.grad is not None for g in gammas)


def test_faithful_simmim_encode_matches_beit_forward_when_nothing_is_masked(faithful):
    torch.manual_seed(0)
    obj = build_objective("simmim", faithful).eval()
    x = torch.randn(2, 3, 32, 32)
    none = torch.zeros(2, 8, 8, dtype=torch.bool)
    expected = obj.encoder.forward_features(x)[:, 1:]
    assert torch.allclose(obj.encode(x, none), expected, atol=1e-6)


def test_faithful_moco_patch_projection_is_upstream_xavier(faithful):
    torch.manual_seed(0)
    obj = build_objective("moco", faithful)
    proj = obj.encoder.patch_embed.proj
    val = math.sqrt(6.0 / (3 * 4 * 4 + 64))  # moco-v3 vits.py: 6 / (3·p² + D)
    w = proj.weight
    assert w.abs().max().item() <= val and w.abs().max().item() > 0.98 * val
    assert w.pow(2).mean().sqrt().item() == pytest.approx(val / math.sqrt(3), rel=0.03)  # uniform RMS
    assert torch.count_nonzero(proj.bias) == 0
    assert not w.requires_grad and not proj.bias.requires_grad  # frozen: MoCo v3's stability trick
    pos = obj.encoder.pos_embed
    assert torch.equal(pos, sincos_pos_embed_2d(64, 8, 1)) and not pos.requires_grad
    # the momentum encoder starts as an exact copy
    assert torch.equal(obj.momentum_encoder.patch_embed.proj.weight, w)


def test_faithful_mae_and_control_have_sincos(faithful):
    for name in ("mae", "hybrid"):
        torch.manual_seed(0)
        enc = build_objective(name, faithful, lam=0.5 if name == "hybrid" else None).encoder
        assert torch.equal(enc.pos_embed, sincos_pos_embed_2d(64, 8, 1))
    control = zoo.resolve(faithful, "random-S")
    assert control.model_cfg.patch_init == "moco_v3" and control.model_cfg.sincos_pos_embed


def test_family_config_is_idempotent_and_round_trips_through_a_checkpoint(tmp_path):
    cfg = ModelConfig(**SMALL)
    beit = family_model_config("faithful", "simmim", cfg)
    assert family_model_config("faithful", "simmim", beit) == beit
    torch.manual_seed(0)
    enc = build_vit(beit)
    save_atomic({"encoder": enc.state_dict(), "model_config": to_dict(beit), "step": 0}, tmp_path / "c.pt")
    back = load_encoder(tmp_path / "c.pt")
    assert isinstance(back, timm.models.beit.Beit)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), back.state_dict().values()))


def test_analyses_capture_the_beit_encoder():
    torch.manual_seed(0)
    enc = build_vit(family_model_config("faithful", "simmim", ModelConfig(**SMALL))).eval()
    x = torch.randn(2, 3, 32, 32)
    cap = capture(enc, x)
    assert len(cap.attentions) == 6 and cap.attentions[0].shape == (2, 2, 65, 65)
    assert torch.allclose(cap.attentions[3].sum(-1), torch.ones(2, 2, 65), atol=1e-5)
    assert len(cap.hidden_states) == 7
    with torch.no_grad():
        assert torch.allclose(cap.output, enc.forward_features(x), atol=1e-5)  # unfused path = fused path


def test_unsharing_the_relative_position_table_keeps_the_output_and_frees_each_block():
    torch.manual_seed(0)
    enc = build_vit(family_model_config("faithful", "simmim", ModelConfig(**SMALL))).eval()
    torch.nn.init.normal_(enc.rel_pos_bias.relative_position_bias_table)  # a learned-looking table
    shared = enc.rel_pos_bias.relative_position_bias_table.detach().clone()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = enc.forward_features(x)
    assert has_shared_relative_position_bias(enc)
    assert unshare_relative_position_bias_(enc) and enc.rel_pos_bias is None
    assert not has_shared_relative_position_bias(enc)
    tables = [b.attn.relative_position_bias_table for b in enc.blocks]
    assert all(torch.equal(t, shared) for t in tables) and len({t.data_ptr() for t in tables}) == 6
    with torch.no_grad():
        assert torch.allclose(enc.forward_features(x), before, atol=1e-5)
        tables[2].add_(torch.randn_like(tables[2]))  # one block's table moves alone and changes the output
        assert torch.equal(tables[3], shared) and not torch.allclose(enc.forward_features(x), before, atol=1e-3)
    assert not unshare_relative_position_bias_(enc)  # already split
    plain = build_vit(ModelConfig(**SMALL))
    assert not has_shared_relative_position_bias(plain)
    assert not unshare_relative_position_bias_(plain)  # a plain ViT has no table


def test_sincos_ablation_of_the_beit_encoder():
    cfg = dataclasses.replace(family_model_config("faithful", "simmim", ModelConfig(**SMALL)), sincos_pos_embed=True)
    enc = build_vit(cfg)
    assert torch.equal(enc.pos_embed, sincos_pos_embed_2d(64, 8, 1)) and not enc.pos_embed.requires_grad


def test_model_overrides_change_only_the_named_objective(faithful):
    """``model_overrides`` sets ModelConfig fields on top of the family for one objective: its
    encoder, key and training objective change, every other model (and key) stays as it was."""
    swept = load_profile(ROOT / "benchmarks/mini_candidates/mini3-sincos.yaml")  # 'base: mini3' + the override
    assert swept.model_overrides == {"simmim": {"sincos_pos_embed": True}}
    base = {s.name: s for s in zoo.zoo_specs(faithful)}
    over = {s.name: s for s in zoo.zoo_specs(swept)}
    changed = {n for n in base if base[n].key != over[n].key}
    # both sizes of the objective and the untrained controls of its architecture, nothing else
    assert changed == {"simmim-S", "simmim-Ti", "random-simmim-S", "random-simmim-Ti"}
    assert all(over[f"random-simmim-{s}"].model_cfg == over[f"simmim-{s}"].model_cfg for s in ("S", "Ti"))
    cfg = over["simmim-S"].model_cfg
    assert cfg.encoder == "beit" and cfg.sincos_pos_embed and cfg.layer_scale_init == base["simmim-S"].model_cfg.layer_scale_init
    assert objective_model_config(swept, "simmim") == cfg  # the one path every builder takes
    torch.manual_seed(0)
    enc = build_objective("simmim", swept, model_cfg=cfg).encoder
    assert torch.equal(enc.pos_embed, sincos_pos_embed_2d(64, 8, 1))
    assert to_dict(faithful)["model_overrides"] == {}  # the shipped profiles set none


@pytest.mark.parametrize("overrides, message", [
    ({"simclr": {"sincos_pos_embed": True}}, "unknown objective 'simclr'"),
    ({"simmim": {"sincos_pos": True}}, "model_overrides.simmim: unknown key(s) ['sincos_pos']"),
    ({"simmim": True}, "model_overrides.simmim: expected a mapping"),
    ([1, 2], "model_overrides: expected a mapping"),
])
def test_model_overrides_are_checked(overrides, message):
    with pytest.raises(ValueError) as err:
        profile_from_dict({"name": "t", "families": "faithful", "model_overrides": overrides})
    assert message in str(err.value)


def test_faithful_blur_blurs_the_textures_at_32_px():
    """Upstream's rescaled sigma (0.014–0.29 px at 32 px) leaves a period-9 texture as it is;
    the faithful 0.1–2.0 px attenuate it."""
    xs = torch.arange(32, dtype=torch.float32)
    stripes = (0.5 + 0.4 * torch.sin(2 * math.pi * xs / 9)).expand(64, 3, 32, 32).contiguous()
    seeds = torch.arange(64)

    def amplitude(x):
        return x[..., 8:24].std(dim=-1).mean().item()

    before = amplitude(stripes)
    rescaled = amplitude(gaussian_blur(stripes, seeds, p=1.0, sigma=blur_sigma_for(32)))
    literal = amplitude(gaussian_blur(stripes, seeds, p=1.0, sigma=FAITHFUL_BLUR_SIGMA))
    assert rescaled > 0.97 * before
    assert literal < 0.8 * before


def test_a_faithful_zoo_trains_evaluates_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    profile = profile_from_dict({
        "name": "tiny-faithful", "families": "faithful",
        "data": {"img_size": 16, "num_train": 32, "num_eval": 16},
        "model": {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
        "train": {"steps": 2, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
        "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
        "simmim": {"mask_patch_size": 8},
        "eval": {"probe_steps": 2, "finetune_steps": 2, "batch_size": 16, "num_analysis_images": 4}})
    zoo.build(profile, only="moco,simmim", jobs=1, progress=False)
    simmim = zoo.load(profile, "simmim")
    assert isinstance(simmim, timm.models.beit.Beit) and simmim.pos_embed is None
    assert torch.all(zoo.load(profile, "moco").patch_embed.proj.bias == 0)  # frozen at its zero init
    results = zoo.evaluations(profile, only=["simmim"], jobs=1, progress=False)
    result = next(iter(results.values()))
    assert 0 <= result["linear_probe"]["final"] <= 1 and 0 <= result["finetune"] <= 1


def test_architecture_controls_are_the_untrained_encoders_of_their_objective(mini2, faithful):
    f3 = {s.name: s for s in zoo.zoo_specs(faithful)}
    for size in ("S", "Ti"):
        own = zoo.resolve(faithful, f"random-simmim-{size}")
        assert own is f3[f"random-simmim-{size}"] or own == f3[f"random-simmim-{size}"]
        assert not own.trains and own.arch == "simmim" and own.train_cfg is None
        assert own.model_cfg == f3[f"simmim-{size}"].model_cfg  # SimMIM's BEiT encoder, untrained
        assert own.seed == f3[f"random-{size}"].seed and own.key != f3[f"random-{size}"].key
        assert zoo.architecture_control(faithful, "simmim", size) == own
        # MoCo's encoder is the shared control's: no random-moco, the shared control stands in
        assert zoo.architecture_control(faithful, "moco", size) == f3[f"random-{size}"]
    # v2 builds every objective on one encoder: the shared control is every model's
    assert zoo.architecture_control(mini2, "simmim").name == "random-S"
    with pytest.raises(KeyError, match="shared control.s encoder"):
        zoo.resolve(mini2, "random-simmim-S")
    with pytest.raises(KeyError, match="unknown objective"):
        zoo.architecture_control(mini2, "byol")


def test_architecture_control_builds_the_beit_encoder_from_the_controls_seed(tmp_path, monkeypatch, faithful):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path))
    zoo.build(faithful, only="random-simmim-Ti", jobs=1, progress=False)
    encoder = zoo.load(faithful, "random-simmim-Ti")
    assert isinstance(encoder, timm.models.beit.Beit) and encoder.pos_embed is None
    params = dict(encoder.named_parameters())
    assert torch.count_nonzero(params["rel_pos_bias.relative_position_bias_table"]) == 0  # untrained: zero bias
    assert torch.all(params["blocks.0.gamma_1"] == 0.1)  # SimMIM's layer scale, untouched by training
    spec = zoo.resolve(faithful, "random-simmim-Ti")
    torch.manual_seed(spec.seed)  # the control's seed re-creates its weights
    want = build_vit(zoo.resolve(faithful, "simmim-Ti").model_cfg).state_dict()
    got = encoder.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in got)
