"""MAE (He et al., 2022): the encoder sees only the visible tokens, a light decoder
reconstructs the (normalised) pixels of the masked patches.

Encoder path (the timm ViT's own modules, no ``forward_features``): MAE crop (+ flip) ->
``patch_embed`` + position embedding -> keep ``K = N − round(N·ratio)`` tokens (per-sample
random shuffle, :func:`clvsmim.data.augment.mae_masking`) -> prepend CLS (+ its position) ->
``norm_pre`` -> ``blocks`` (so every block sees exactly ``1 + K`` tokens) -> ``norm``.
Decoder (:class:`MAEDecoder`): ``decoder_embed`` -> append mask tokens and unshuffle ->
fixed 2-D sin-cos position embedding -> timm ``Block`` s -> norm -> ``pred`` (patch²·3).
Loss: MSE on the masked patches, against per-patch normalised pixels when
``norm_pix_loss`` (mean / unbiased variance of each patch, eps 1e-6).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch import nn
from timm.models.vision_transformer import Block

from clvsmim.data.augment import denormalize, eval_view, mae_masking, mae_view, patchify, unpatchify
from clvsmim.config import MAEConfig
from clvsmim.models import capture, sincos_pos_embed_2d, square_geometry
from clvsmim.objectives.base import Objective
from clvsmim.objectives.simmim import _check_vit


class MAEDecoder(nn.Module):
    """MAE's lightweight decoder over the full token set (CLS first, then N patch tokens)."""

    def __init__(self, embed_dim: int, grid: int, patch_size: int, decoder_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float = 4.0, in_chans: int = 3):
        super().__init__()
        self.grid = grid
        self.num_patches = grid * grid
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(decoder_dim, grid, 1), persistent=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(decoder_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(decoder_dim)
        self.pred = nn.Linear(decoder_dim, patch_size ** 2 * in_chans)
        self.apply(self._init)
        nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def embed(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoder output ``B×(1+K)×C`` -> decoder input ``B×(1+N)×D`` (mask tokens in place)."""
        x = self.decoder_embed(latent)
        b, d = x.shape[0], x.shape[-1]
        n_masked = self.num_patches - (x.shape[1] - 1)
        patches = torch.cat([x[:, 1:], self.mask_token.to(x.dtype).expand(b, n_masked, d)], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        return torch.cat([x[:, :1], patches], dim=1) + self.pos_embed.to(x.dtype)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels ``B×N×(p²·3)`` for every patch (CLS dropped)."""
        x = self.embed(latent, ids_restore)
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, 1:]


class Reconstruction(NamedTuple):
    masked: torch.Tensor  # B×3×H×W in [0, 1], masked patches shown as 0.5 grey
    reconstruction: torch.Tensor  # visible patches copied, masked ones predicted
    original: torch.Tensor


class MAE(Objective):
    """MAE on a timm ViT ``encoder`` (with a CLS token) and settings from :class:`MAEConfig`."""

    name = "mae"

    def __init__(self, encoder: nn.Module, cfg: MAEConfig = MAEConfig()):
        super().__init__(encoder)
        _check_vit(encoder, "MAE")
        if getattr(encoder, "cls_token", None) is None or getattr(encoder, "reg_token", None) is not None \
                or encoder.num_prefix_tokens != 1:
            raise ValueError("MAE expects a timm ViT with exactly one prefix token (CLS)")
        self.cfg = cfg
        geo = square_geometry(encoder, "MAE")
        self.patch_size = geo.patch_size
        self.grid = geo.grid[0]
        self.num_patches = self.grid * self.grid
        self.img_size = self.grid * self.patch_size
        self.decoder = MAEDecoder(geo.embed_dim, self.grid, self.patch_size, cfg.decoder_dim,
                                  cfg.decoder_depth, cfg.decoder_heads)

    # ------------------------------------------------------------------ model
    def forward_encoder(self, x: torch.Tensor, seeds: torch.Tensor, mask_ratio: float | None = None):
        """Normalised images -> (latent ``B×(1+K)×C``, mask ``B×N`` 1 = masked, ids_restore)."""
        enc = self.encoder
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        tokens = enc.patch_embed(x)
        if tokens.dim() == 4:
            tokens = tokens.flatten(1, 2)
        b, n, c = tokens.shape
        pos = enc.pos_embed
        if enc.no_embed_class:
            pos_cls, pos_patch = torch.zeros_like(pos[:, :1]), pos
        else:
            pos_cls, pos_patch = pos[:, :1], pos[:, 1:]
        tokens = tokens + pos_patch
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=x.device)
        ids_keep, mask, ids_restore = mae_masking(seeds, b, n, ratio)
        visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, c))
        cls = (enc.cls_token + pos_cls).expand(b, -1, -1).to(visible.dtype)
        z = enc.norm_pre(enc.pos_drop(torch.cat([cls, visible], dim=1)))
        for blk in enc.blocks:
            z = blk(z)
        return enc.norm(z), mask.to(x.dtype), ids_restore

    def encode_decode(self, x: torch.Tensor, seeds: torch.Tensor, mask_ratio: float | None = None):
        """Normalised images -> (predicted patches ``B×N×(p²·3)``, mask ``B×N``)."""
        latent, mask, ids_restore = self.forward_encoder(x, seeds, mask_ratio)
        return self.decoder(latent, ids_restore), mask

    def target(self, x: torch.Tensor) -> torch.Tensor:
        t = patchify(x, self.patch_size)
        if self.cfg.norm_pix_loss:
            t = (t - t.mean(dim=-1, keepdim=True)) / (t.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        return t

    def prepare(self, images: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MAE view ``B×3×H×W``, the seeds: the random masking is drawn from them in :meth:`loss_of`)."""
        return mae_view(images, seeds, self.img_size, self.cfg.crop_min_scale), seeds

    def loss_of(self, x: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        pred, mask = self.encode_decode(x, seeds)
        per_token = (pred.float() - self.target(x)).pow(2).mean(dim=-1)
        mask = mask.float()
        loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0)
        return {"loss": loss, "loss_mim": loss.detach()}

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, seeds: torch.Tensor,
                    mask_ratio: float | None = None) -> Reconstruction:
        """(masked, reconstruction, original) images in [0, 1] of the UNcropped images.

        With ``norm_pix_loss`` the predicted (normalised) patches are mapped back with the
        true mean / std of each patch, as usual for visualising such models.
        """
        x = eval_view(images)
        pred, mask = self.encode_decode(x, seeds, mask_ratio)
        pred = pred.float()
        patches = patchify(x, self.patch_size)
        if self.cfg.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        m = mask.float().unsqueeze(-1)
        recon = unpatchify(patches * (1 - m) + pred * m, self.patch_size, self.grid)
        original = denormalize(x)
        pix_mask = unpatchify(m.expand_as(patches), self.patch_size, self.grid) > 0.5
        masked = torch.where(pix_mask, 0.5, original)
        return Reconstruction(masked, denormalize(recon), original)

    @torch.no_grad()
    def decoder_hidden_states(self, images: torch.Tensor, seeds: torch.Tensor,
                              mask_ratio: float | None = None) -> list[torch.Tensor]:
        """Decoder token features ``B×(1+N)×D``: the decoder input embedding, then the output
        of every decoder block (full token set incl. mask tokens, CLS first), for the
        UNcropped images. ``mask_ratio=0`` gives the decoder a fully visible image."""
        x = eval_view(images)
        cap = capture(self, x, attentions=False, hidden_states=True, blocks=self.decoder.blocks,
                      forward=lambda im: self.encode_decode(im, seeds, mask_ratio)[0])
        return cap.hidden_states
