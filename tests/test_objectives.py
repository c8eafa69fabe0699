"""Objectives: losses train, MoCo momentum schedule, MAE token counts, SimMIM loss, Hybrid."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from clvsmim.data import augment as A
from clvsmim.config import MAEConfig, ModelConfig, MocoConfig, Profile, SimMIMConfig
from clvsmim.models import build_vit, capture
from clvsmim.objectives import OBJECTIVES, MAE, Hybrid, MoCo, SimMIM, build_objective, momentum_at
from clvsmim.objectives import moco as moco_module
from clvsmim.objectives.heads import mlp

torch.set_num_threads(1)

TINY = ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
MOCO = MocoConfig(proj_hidden=64, proj_out=32, pred_hidden=64)
SIMMIM = SimMIMConfig(mask_ratio=0.6, mask_patch_size=16)
MAE_CFG = MAEConfig(mask_ratio=0.75, decoder_dim=32, decoder_depth=2, decoder_heads=2)
PROFILE = Profile(name="test", model=TINY, moco=MOCO, simmim=SIMMIM, mae=MAE_CFG)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    # smooth-ish images (upsampled noise) so there is something to reconstruct
    small = torch.rand(16, 3, 8, 8, generator=g)
    images = (F.interpolate(small, size=32, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
    return images, torch.arange(16, dtype=torch.int64) + 100


def _encoder(seed: int = 0, cfg: ModelConfig = TINY):
    torch.manual_seed(seed)
    return build_vit(cfg)


def _make(name: str):
    torch.manual_seed(0)
    if name == "hybrid":
        return build_objective(name, PROFILE, lam=0.5)
    return build_objective(name, PROFILE)


# ------------------------------------------------------------------ training signal
@pytest.mark.parametrize("name", OBJECTIVES)
def test_loss_decreases_and_grads_reach_encoder(name, batch):
    images, seeds = batch
    obj = _make(name)
    obj.train()
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.0)
    losses = []
    for step in range(15):
        out = obj(images, seeds)
        assert out["loss"].requires_grad and out["loss"].dim() == 0
        for k, v in out.items():
            if k != "loss":
                assert not v.requires_grad and v.dim() == 0
        opt.zero_grad()
        out["loss"].backward()
        if step == 0:
            g = obj.encoder.blocks[0].attn.qkv.weight.grad
            assert g is not None and g.abs().sum() > 0
        opt.step()
        obj.after_optimizer_step(step, 15)
        losses.append(float(out["loss"].detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0], losses


# ------------------------------------------------------------------ MoCo
def test_heads_mlp_structure():
    proj = mlp(32, 64, 16, num_layers=3, last_bn=True)
    kinds = [type(m).__name__ for m in proj]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert not proj[-1].affine and all(m.bias is None for m in proj if isinstance(m, torch.nn.Linear))
    pred = mlp(16, 64, 16, num_layers=2, last_bn=False)
    assert [type(m).__name__ for m in pred] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    with pytest.raises(ValueError):
        mlp(4, 4, 4, 0, False)


def test_momentum_schedule():
    assert momentum_at(0, 100, 0.99) == 0.99
    assert momentum_at(100, 100, 0.99) == 1.0
    assert momentum_at(50, 100, 0.99) == pytest.approx(0.995)
    values = [momentum_at(s, 100, 0.99) for s in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_moco_momentum_update_follows_schedule(batch):
    images, seeds = batch
    obj = MoCo(_encoder(), MOCO)
    for p in obj.momentum_parameters():
        assert not p.requires_grad
    assert not obj.encoder.patch_embed.proj.weight.requires_grad  # stop_grad_patch_embed
    # momentum copy starts equal to the online networks
    for pm, p in zip(obj.momentum_parameters(), obj.online_parameters()):
        assert torch.equal(pm, p)
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=1e-2)
    out = obj(images, seeds)
    out["loss"].backward()
    assert all(p.grad is None for p in obj.momentum_parameters())
    assert obj.encoder.patch_embed.proj.weight.grad is None
    old = [p.detach().clone() for p in obj.momentum_parameters()]
    opt.step()
    online = [p.detach().clone() for p in obj.online_parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(old, online))  # the step moved something
    # forward passes never touch the momentum networks' parameters
    obj(images, seeds)
    assert all(torch.equal(a, p) for a, p in zip(old, obj.momentum_parameters()))
    step, total = 3, 10
    obj.after_optimizer_step(step, total)
    m = momentum_at(step, total, MOCO.momentum)
    assert 0.99 < m < 1.0
    for pm, o, n in zip(obj.momentum_parameters(), old, online):
        assert torch.equal(pm, o.clone().mul_(m).add_(n, alpha=1 - m))
    # at the end of the schedule m = 1: frozen
    before = [p.clone() for p in obj.momentum_parameters()]
    with torch.no_grad():
        for p in obj.online_parameters():
            p.add_(1.0)
    obj.after_optimizer_step(total, total)
    assert all(torch.equal(a, b) for a, b in zip(before, obj.momentum_parameters()))


def test_moco_loss_is_symmetric_infonce_scaled_by_2tau(batch):
    images, seeds = batch
    obj = MoCo(_encoder(), MOCO)
    out = obj(images, seeds)
    v1, v2 = A.moco_views(images, seeds, 32, MOCO.crop_min_scale)
    with torch.no_grad():
        q1 = obj.predictor(obj.projector(obj.encoder.forward_head(obj.encoder.forward_features(v1), pre_logits=True)))
        q2 = obj.predictor(obj.projector(obj.encoder.forward_head(obj.encoder.forward_features(v2), pre_logits=True)))
        k1 = obj.momentum_projector(obj.momentum_encoder.forward_head(
            obj.momentum_encoder.forward_features(v1), pre_logits=True))
        k2 = obj.momentum_projector(obj.momentum_encoder.forward_head(
            obj.momentum_encoder.forward_features(v2), pre_logits=True))

    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / MOCO.tau
        return -torch.log_softmax(logits, dim=1).diagonal().mean() * 2 * MOCO.tau

    torch.testing.assert_close(out["loss"].detach(), ctr(q1, k2) + ctr(q2, k1), atol=1e-5, rtol=1e-5)


def test_moco_infonce_offsets_labels_by_rank(monkeypatch):
    """Under DDP the keys of all ranks are gathered and rank r's positives sit at r·B + i."""
    g = torch.Generator().manual_seed(0)
    q, k, other = (torch.randn(4, 8, generator=g) for _ in range(3))
    monkeypatch.setattr(moco_module, "_distributed", lambda: (1, 2))
    monkeypatch.setattr(moco_module, "_gather_keys", lambda keys: torch.cat([F.normalize(other, dim=1), keys]))
    got = moco_module.infonce(q, k, 0.2)
    logits = F.normalize(q, dim=1) @ torch.cat([F.normalize(other, dim=1), F.normalize(k, dim=1)]).t() / 0.2
    expected = F.cross_entropy(logits, torch.arange(4) + 4) * 0.4
    torch.testing.assert_close(got, expected)


# ------------------------------------------------------------------ SimMIM
def test_simmim_loss_equals_manual_l1_over_masked_pixels(batch):
    images, seeds = batch
    images, seeds = images[:4], seeds[:4]
    obj = SimMIM(_encoder(), SIMMIM)
    out = obj(images, seeds)
    x = A.simmim_view(images, seeds, 32, SIMMIM.crop_min_scale)
    mask = A.simmim_mask(seeds, 4, 8, SIMMIM.mask_patch_size, SIMMIM.mask_ratio)
    with torch.no_grad():
        pred = obj.reconstruct_pixels(x, mask)
    total, count = 0.0, 0
    for b in range(4):
        for i in range(32):
            for j in range(32):
                if mask[b, i // 8, j // 8]:
                    for c in range(3):
                        total += abs(float(pred[b, c, i, j]) - float(x[b, c, i, j]))
                        count += 1
    assert count == 4 * round(0.6 * 4) * 16 * 16 * 3
    assert float(out["loss"].detach()) == pytest.approx(total / count, rel=1e-5)


def test_simmim_mask_token_replaces_masked_patches(batch):
    images, seeds = batch
    obj = SimMIM(_encoder(), SIMMIM)
    x = A.eval_view(images[:4])
    mask = obj.mask(seeds[:4])
    pix = mask.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1)
    scrambled = torch.where(pix, torch.randn_like(x) * 3, x)
    with torch.no_grad():
        torch.testing.assert_close(obj.encode(x, mask), obj.encode(scrambled, mask))  # masked pixels are unseen
        unmasked = torch.zeros_like(mask)
        assert not torch.allclose(obj.encode(x, unmasked), obj.encode(scrambled, unmasked))
    masked, recon, pmask = obj.predict(images[:4], seeds[:4])
    assert masked.shape == recon.shape == (4, 3, 32, 32) and pmask.shape == (4, 1, 32, 32)
    original = A.denormalize(x)
    vis = ~pmask.expand_as(original)
    assert torch.equal(recon[vis], original[vis]) and torch.equal(masked[vis], original[vis])
    assert (masked[~vis] == 0.5).all() and recon.min() >= 0 and recon.max() <= 1


def test_simmim_rejects_bad_mask_sizes():
    with pytest.raises(ValueError, match=r"mask_patch_size \(12 px\)"):
        SimMIM(_encoder(), SimMIMConfig(mask_patch_size=12))


# ------------------------------------------------------------------ MAE
def test_mae_encoder_sees_only_visible_tokens(batch):
    images, seeds = batch
    obj = MAE(_encoder(), MAE_CFG)
    n = 16
    seen_enc, seen_dec = [], []
    h1 = obj.encoder.blocks[0].register_forward_pre_hook(lambda m, a: seen_enc.append(a[0].shape[1]))
    h2 = obj.decoder.blocks[0].register_forward_pre_hook(lambda m, a: seen_dec.append(a[0].shape[1]))
    obj(images, seeds)
    h1.remove(), h2.remove()
    assert seen_enc == [1 + n - round(n * 0.75)] == [5]
    assert seen_dec == [1 + n]


def test_mae_loss_and_visualisations(batch):
    images, seeds = batch
    images, seeds = images[:4], seeds[:4]
    obj = MAE(_encoder(), MAE_CFG)
    out = obj(images, seeds)
    # manual loss: per-patch normalised targets, MSE on masked patches only
    x = A.mae_view(images, seeds, 32, MAE_CFG.crop_min_scale)
    with torch.no_grad():
        pred, mask = obj.encode_decode(x, seeds)
    t = A.patchify(x, 8)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((pred - t) ** 2).mean(-1)[mask.bool()].mean()
    torch.testing.assert_close(out["loss"].detach(), expected, atol=1e-5, rtol=1e-5)

    masked, recon, original = obj.reconstruct(images, seeds)
    assert masked.shape == recon.shape == original.shape == (4, 3, 32, 32)
    torch.testing.assert_close(original, images.float() / 255, atol=1e-5, rtol=0)
    _, m, _ = A.mae_masking(seeds, 4, 16, 0.75)
    pix = A.unpatchify(m.unsqueeze(-1).expand(-1, -1, 192), 8, 4).bool()
    torch.testing.assert_close(recon[~pix], original[~pix])
    assert (masked[pix] == 0.5).all() and torch.equal(masked[~pix], original[~pix])
    assert recon.min() >= 0 and recon.max() <= 1

    states = obj.decoder_hidden_states(images, seeds)
    assert len(states) == MAE_CFG.decoder_depth + 1
    assert all(s.shape == (4, 17, MAE_CFG.decoder_dim) for s in states)
    # the decoder stack can be captured with models.capture (attentions + states)
    cap = capture(obj, A.eval_view(images), blocks=obj.decoder.blocks,
                  forward=lambda im: obj.encode_decode(im, seeds)[0])
    assert len(cap.attentions) == MAE_CFG.decoder_depth and cap.attentions[0].shape == (4, 2, 17, 17)
    torch.testing.assert_close(cap.hidden_states[-1], states[-1])
    full = obj.decoder_hidden_states(images, seeds, mask_ratio=0.0)
    assert full[0].shape == (4, 17, MAE_CFG.decoder_dim)


# ------------------------------------------------------------------ Hybrid
def test_hybrid_endpoints_equal_the_pure_objectives(batch):
    images, seeds = batch
    enc = _encoder()
    torch.manual_seed(1)
    moco = MoCo(copy.deepcopy(enc), MOCO)
    torch.manual_seed(1)
    h1 = Hybrid(copy.deepcopy(enc), MOCO, SIMMIM, lam=1.0)
    assert h1.simmim is None
    torch.manual_seed(2)
    simmim = SimMIM(copy.deepcopy(enc), SIMMIM)
    torch.manual_seed(2)
    h0 = Hybrid(copy.deepcopy(enc), MOCO, SIMMIM, lam=0.0)
    assert h0.moco is None
    assert h0.encoder.patch_embed.proj.weight.requires_grad  # no CL branch: SimMIM trains it

    out1, ref1 = h1(images, seeds), moco(images, seeds)
    assert torch.equal(out1["loss"], ref1["loss"]) and torch.equal(out1["loss_cl"], ref1["loss"])
    assert math.isnan(float(out1["loss_mim"]))
    out0, ref0 = h0(images, seeds), simmim(images, seeds)
    assert torch.equal(out0["loss"], ref0["loss"]) and math.isnan(float(out0["loss_cl"]))

    # a mixed hybrid: one encoder, both branches, gradients from both reach it
    h = Hybrid(copy.deepcopy(enc), MOCO, SIMMIM, lam=0.3)
    assert h.moco.encoder is h.encoder and h.simmim.encoder is h.encoder
    keys = h.state_dict().keys()
    assert not any(k.startswith(("moco.encoder.", "simmim.encoder.")) for k in keys)
    assert "moco.momentum_encoder.pos_embed" in keys and "simmim.mask_token" in keys
    n_params = sum(p.numel() for p in h.parameters())
    assert n_params == sum(p.numel() for m in (h.encoder, h.moco.projector, h.moco.predictor, h.moco.momentum_encoder,
                                               h.moco.momentum_projector, h.simmim.head) for p in m.parameters()) \
        + h.simmim.mask_token.numel()
    out = h(images, seeds)
    torch.testing.assert_close(out["loss"].detach(), 0.3 * out["loss_cl"] + 0.7 * out["loss_mim"])
    out["loss"].backward()
    assert h.simmim.mask_token.grad is not None and h.moco.predictor[0].weight.grad is not None
    assert h.encoder.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    before = [p.clone() for p in h.moco.momentum_parameters()]
    with torch.no_grad():
        h.encoder.blocks[0].norm1.weight.add_(1.0)
    h.after_optimizer_step(0, 10)  # delegated to the MoCo part
    assert not all(torch.equal(a, b) for a, b in zip(before, h.moco.momentum_parameters()))
    h2 = copy.deepcopy(h)
    assert h2.moco.encoder is h2.encoder and h2.encoder is not h.encoder


def test_hybrid_rejects_bad_lambda():
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        Hybrid(_encoder(), MOCO, SIMMIM, lam=1.5)


# ------------------------------------------------------------------ factory
def test_build_objective():
    assert OBJECTIVES == ("moco", "simmim", "mae", "hybrid")
    kinds = {"moco": MoCo, "simmim": SimMIM, "mae": MAE}
    for name, cls in kinds.items():
        obj = build_objective(name, PROFILE)
        assert isinstance(obj, cls) and obj.name == name
    h = build_objective("hybrid", PROFILE, lam=0.4)
    assert isinstance(h, Hybrid) and h.lam == 0.4
    other = dataclasses.replace(TINY, embed_dim=48, num_heads=3)
    assert build_objective("mae", PROFILE, model_cfg=other).encoder.embed_dim == 48
    with pytest.raises(ValueError, match="needs lam"):
        build_objective("hybrid", PROFILE)
    with pytest.raises(ValueError, match="only applies to the 'hybrid'"):
        build_objective("moco", PROFILE, lam=0.5)
    with pytest.raises(ValueError, match=r"unknown objective 'dino'.*'moco', 'simmim', 'mae', 'hybrid'"):
        build_objective("dino", PROFILE)
