"""Fake checkpoints in the official formats (MoCo v3, SimMIM, MAE), built from tiny randomly
initialised timm models, shared by the weights and analyze tests (no network)."""
from __future__ import annotations

from collections import OrderedDict

import timm
import torch
from torch import nn

DIM, DEPTH, HEADS, IMG, PATCH = 192, 2, 3, 32, 8  # ViT-Ti width (heads come from HEADS_BY_DIM), tiny input


def _randomise(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial values everywhere (zero-initialised biases / constant layer scales would hide swaps)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def tiny_vit() -> nn.Module:
    return _randomise(timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=0))


def tiny_beit() -> nn.Module:
    return _randomise(timm.models.beit.Beit(
        img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, use_abs_pos_emb=False,
        use_rel_pos_bias=False, use_shared_rel_pos_bias=True, init_values=0.1, num_classes=0,
        global_pool="avg", use_fc_norm=False))


def _persistent(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v.clone()) for k, v in model.state_dict().items() if not k.endswith("relative_position_index"))


def _dims(model: nn.Module) -> tuple[int, int, int]:
    """(embedding width, patch size, number of patches) of a timm ViT / BEiT."""
    return model.embed_dim, model.patch_embed.patch_size[0], model.patch_embed.num_patches


def moco_checkpoint(vit: nn.Module) -> dict:
    dim = vit.embed_dim
    sd = OrderedDict()
    for k, v in vit.state_dict().items():
        sd[f"module.base_encoder.{k}"] = v.clone()
    proj = {"head.0.weight": torch.randn(64, dim), "head.1.weight": torch.ones(64), "head.1.bias": torch.zeros(64),
            "head.1.running_mean": torch.zeros(64), "head.1.running_var": torch.ones(64),
            "head.1.num_batches_tracked": torch.tensor(7), "head.3.weight": torch.randn(32, 64)}
    for k, v in proj.items():
        sd[f"module.base_encoder.{k}"] = v
        sd[f"module.momentum_encoder.{k}"] = v.clone()
    for k, v in vit.state_dict().items():
        sd[f"module.momentum_encoder.{k}"] = v.clone() + 1.0
    sd["module.predictor.0.weight"] = torch.randn(64, 32)
    sd["module.predictor.1.running_mean"] = torch.zeros(64)
    return {"epoch": 300, "arch": "vit_base", "state_dict": sd,
            "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(3)}},
                          "param_groups": [{"lr": 1.5e-4, "weight_decay": 0.1, "params": [0]}]},
            "scaler": {"scale": 65536.0, "growth_factor": 2.0}}


# SimMIM VisionTransformer(ForSimMIM) parameter names, from its models/vision_transformer.py:
SIMMIM_NAMES = ["encoder.cls_token", "encoder.mask_token", "encoder.patch_embed.proj.weight",
                "encoder.rel_pos_bias.relative_position_bias_table", "encoder.rel_pos_bias.relative_position_index",
                "encoder.blocks.0.gamma_1", "encoder.blocks.0.gamma_2", "encoder.blocks.0.norm1.weight",
                "encoder.blocks.0.attn.q_bias", "encoder.blocks.0.attn.v_bias", "encoder.blocks.0.attn.qkv.weight",
                "encoder.blocks.0.attn.proj.weight", "encoder.blocks.0.mlp.fc1.weight", "encoder.blocks.0.mlp.fc2.bias",
                "encoder.norm.weight", "encoder.norm.bias", "decoder.0.weight", "decoder.0.bias"]


def simmim_checkpoint(beit: nn.Module, config: object | None = None) -> dict:
    dim, patch, n = _dims(beit)
    sd = OrderedDict((f"encoder.{k}", v.clone()) for k, v in _persistent(beit).items())
    sd["encoder.mask_token"] = torch.randn(1, 1, dim)
    sd["encoder.rel_pos_bias.relative_position_index"] = torch.zeros(n + 1, n + 1, dtype=torch.long)
    sd["decoder.0.weight"] = torch.randn(patch * patch * 3, dim, 1, 1)
    sd["decoder.0.bias"] = torch.zeros(patch * patch * 3)
    ckpt = {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": []}]},
            "lr_scheduler": {"last_epoch": 800}, "max_accuracy": 0.0, "epoch": 799}
    if config is not None:
        ckpt["config"] = config
    return ckpt


def mae_checkpoint(vit: nn.Module, decoder: bool = False) -> tuple[dict, "OrderedDict[str, torch.Tensor]"]:
    sd = OrderedDict((k, v.clone()) for k, v in vit.state_dict().items())
    dec = OrderedDict()
    if decoder:
        dim, patch, n = _dims(vit)
        dw = 64
        blocks = nn.ModuleList([timm.models.vision_transformer.Block(dw, 2, qkv_bias=True) for _ in range(2)])
        dec["decoder_embed.weight"], dec["decoder_embed.bias"] = torch.randn(dw, dim), torch.randn(dw)
        dec["mask_token"] = torch.randn(1, 1, dw)
        dec["decoder_pos_embed"] = torch.randn(1, n + 1, dw)
        for k, v in blocks.state_dict().items():
            dec[f"decoder_blocks.{k}"] = v.clone()
        dec["decoder_norm.weight"], dec["decoder_norm.bias"] = torch.ones(dw), torch.zeros(dw)
        dec["decoder_pred.weight"], dec["decoder_pred.bias"] = torch.randn(patch * patch * 3, dw), torch.zeros(patch * patch * 3)
        sd.update(dec)
    return {"model": sd}, dec
