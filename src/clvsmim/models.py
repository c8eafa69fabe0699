"""ViT backbones (timm) and one-pass capture of attention maps and hidden states.

Backbones are plain timm ``VisionTransformer`` (or ``Beit`` for the official SimMIM
checkpoint). :func:`capture` runs ONE forward pass with hooks and returns, per block, the
attention weights ``B×H×T×T`` and the token features ``B×T×C`` (depth 0 = embeddings).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import timm
import torch
from torch import nn

from clvsmim.config import ModelConfig


def sincos_pos_embed_2d(embed_dim: int, grid: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding as in MoCo v3 / MAE: ``(1, prefix + grid², D)``.

    Half the channels encode the row, half the column; prefix (CLS) positions are zero.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([encode(cols), encode(rows)], dim=1).float()  # (grid², D)
    prefix = torch.zeros(num_prefix_tokens, embed_dim)
    return torch.cat([prefix, emb], dim=0).unsqueeze(0)


def moco_v3_patch_init_(patch_embed: nn.Module) -> float:
    """MoCo v3's patch-projection init (``vits.py``): weight ~ U(±val) with
    ``val = sqrt(6 / (in_chans·p² + D))`` (xavier-uniform of the flattened weight), zero bias.
    Returns ``val``."""
    w = patch_embed.proj.weight  # D×C×p×p
    val = (6.0 / float(w[0].numel() + w.shape[0])) ** 0.5
    with torch.no_grad():
        nn.init.uniform_(w, -val, val)
        if patch_embed.proj.bias is not None:
            nn.init.zeros_(patch_embed.proj.bias)
    return val


def _build_beit(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """SimMIM's BEiT-style ViT (the official ``simmim_vit_b`` architecture at these sizes)."""
    model = timm.models.beit.Beit(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, num_classes=num_classes,
        drop_path_rate=cfg.drop_path_rate, use_abs_pos_emb=cfg.sincos_pos_embed, use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True, init_values=cfg.layer_scale_init, global_pool="avg", use_fc_norm=False,
    )
    if cfg.sincos_pos_embed:  # the ablation "SimMIM given sin-cos": fixed, like MoCo v3's
        model.pos_embed.data.copy_(sincos_pos_embed_2d(cfg.embed_dim, cfg.img_size // cfg.patch_size,
                                                       model.num_prefix_tokens))
        model.pos_embed.requires_grad_(False)
    return model


def has_shared_relative_position_bias(model: nn.Module) -> bool:
    """Whether ``model`` is a BEiT-style encoder with one relative position table shared by all
    blocks (what :func:`unshare_relative_position_bias_` splits); False for a plain ViT."""
    return getattr(model, "rel_pos_bias", None) is not None


def unshare_relative_position_bias_(model: nn.Module) -> bool:
    """Give every block of a BEiT-style encoder its own copy of the shared relative position bias
    table, in place: how SimMIM and BEiT start fine-tuning (upstream ``USE_RPB: True,
    USE_SHARED_RPB: False``; the pretrained shared table is copied into each block). The output
    of the model is unchanged; afterwards each block's table learns on its own. Returns whether
    there was a shared table to split (False for a plain ViT or an already split encoder)."""
    if not has_shared_relative_position_bias(model):
        return False
    shared = model.rel_pos_bias
    for i, block in enumerate(model.blocks):
        attn = block.attn
        if getattr(attn, "relative_position_bias_table", None) is not None:
            raise ValueError(f"block {i} has its own relative position table as well as the shared one")
        del attn.relative_position_index  # a plain None attribute until it becomes a buffer
        attn.window_size = tuple(shared.window_size)
        attn.num_relative_distance = shared.relative_position_bias_table.shape[0]
        attn.relative_position_bias_table = nn.Parameter(shared.relative_position_bias_table.detach().clone())
        attn.register_buffer("relative_position_index", shared.relative_position_index.clone(), persistent=False)
    model.rel_pos_bias = None
    return True


def build_vit(cfg: ModelConfig, num_classes: int = 0) -> nn.Module:
    """A timm ViT (or, with ``cfg.encoder == "beit"``, timm ``Beit``) from a :class:`ModelConfig`."""
    if cfg.timm_name:
        return timm.create_model(cfg.timm_name, pretrained=False, num_classes=num_classes,
                                 drop_path_rate=cfg.drop_path_rate)
    if cfg.encoder not in ("vit", "beit"):
        raise ValueError(f"ModelConfig.encoder must be 'vit' or 'beit', got {cfg.encoder!r}")
    if cfg.patch_init not in ("timm", "moco_v3"):
        raise ValueError(f"ModelConfig.patch_init must be 'timm' or 'moco_v3', got {cfg.patch_init!r}")
    if cfg.encoder == "beit":
        model = _build_beit(cfg, num_classes)
        if cfg.patch_init == "moco_v3":
            moco_v3_patch_init_(model.patch_embed)
        return model
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
        depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
        num_classes=num_classes, drop_path_rate=cfg.drop_path_rate, global_pool="token",
    )
    if cfg.sincos_pos_embed:
        grid = cfg.img_size // cfg.patch_size
        model.pos_embed.data.copy_(sincos_pos_embed_2d(cfg.embed_dim, grid, model.num_prefix_tokens))
        model.pos_embed.requires_grad_(False)
    if cfg.layer_scale_init is not None:
        raise ValueError("layer_scale_init is only built for encoder='beit'")
    if cfg.patch_init == "moco_v3":
        moco_v3_patch_init_(model.patch_embed)
    return model


@dataclass(frozen=True)
class Geometry:
    """What the analyses need to know about a backbone."""

    patch_size: int
    grid: tuple[int, int]
    num_prefix_tokens: int
    depth: int
    num_heads: int
    embed_dim: int


def geometry(model: nn.Module) -> Geometry:
    """Patch size, token grid, prefix tokens, depth and width of a timm ViT / BEiT."""
    pe = model.patch_embed
    patch = pe.patch_size[0] if isinstance(pe.patch_size, (tuple, list)) else int(pe.patch_size)
    grid = tuple(pe.grid_size)
    return Geometry(
        patch_size=int(patch), grid=(int(grid[0]), int(grid[1])),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
        depth=len(model.blocks), num_heads=int(model.blocks[0].attn.num_heads),
        embed_dim=int(model.embed_dim),
    )


def square_geometry(model: nn.Module, who: str = "analysis") -> Geometry:
    """:func:`geometry`, checked to describe a square patch grid (``who`` names the caller)."""
    geo = geometry(model)
    if geo.grid[0] != geo.grid[1]:
        raise ValueError(f"{who} needs a square patch grid, found {geo.grid[0]}×{geo.grid[1]}")
    return geo


@dataclass
class Captured:
    """Everything one forward pass exposes.

    attentions: list over blocks of ``B×H×T×T`` softmax attention weights.
    hidden_states: list of ``L+1`` tensors ``B×T×C`` (0 = embeddings, l = output of block l).
    output: what the model's forward returned.
    """

    attentions: list[torch.Tensor] = field(default_factory=list)
    hidden_states: list[torch.Tensor] = field(default_factory=list)
    output: torch.Tensor | None = None


@contextlib.contextmanager
def _unfused_attention(blocks):
    """Temporarily switch blocks to the explicit softmax path so weights exist."""
    saved = [blk.attn.fused_attn for blk in blocks]
    try:
        for blk in blocks:
            blk.attn.fused_attn = False
        yield
    finally:
        for blk, flag in zip(blocks, saved):
            blk.attn.fused_attn = flag


def capture(model: nn.Module, images: torch.Tensor, attentions: bool = True,
            hidden_states: bool = True, blocks: nn.ModuleList | None = None,
            forward=None, on_attention=None) -> Captured:
    """Run ONE forward pass of ``model`` on ``images`` (B×3×H×W), recording per block.

    Works for timm ``VisionTransformer`` and ``Beit`` (anything whose blocks have an
    ``attn`` module with ``attn_drop`` applied to the softmax weights). ``blocks`` and
    ``forward`` let a caller capture another stack (e.g. the MAE decoder) through a custom
    forward function. Fused attention is switched off only for the duration of the call.
    ``on_attention(block_index, weights)`` is called with each block's ``B×H×T×T`` weights as
    soon as they exist (streaming: with ``attentions=False`` no map outlives its block).
    """
    blocks = model.blocks if blocks is None else blocks
    forward = model.forward_features if forward is None else forward
    out = Captured()
    handles = []
    seen = []
    if hidden_states:
        handles.append(blocks[0].register_forward_pre_hook(
            lambda _m, args: out.hidden_states.append(args[0].detach())))
        for blk in blocks:
            handles.append(blk.register_forward_hook(
                lambda _m, _a, res: out.hidden_states.append(res.detach())))
    wants_maps = attentions or on_attention is not None
    if wants_maps:
        def record(_m, _a, res):
            if on_attention is not None:
                on_attention(len(seen), res.detach())
            if attentions:
                out.attentions.append(res.detach())
            seen.append(True)

        handles += [blk.attn.attn_drop.register_forward_hook(record) for blk in blocks]
    try:
        with torch.no_grad(), _unfused_attention(blocks if wants_maps else []):
            out.output = forward(images)
    finally:
        for h in handles:
            h.remove()
    if wants_maps and len(seen) != len(blocks):
        raise RuntimeError(f"captured {len(seen)} attention maps for {len(blocks)} blocks: "
                           "does every block route its softmax weights through attn.attn_drop?")
    return out
