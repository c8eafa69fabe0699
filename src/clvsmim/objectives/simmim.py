"""SimMIM (Xie et al., 2022): mask tokens, a linear pixel head, ℓ1 on masked pixels.

The encoder is a plain timm ``VisionTransformer`` or (faithful families) the BEiT-style timm
``Beit`` of the official SimMIM ViT (no absolute embedding; the shared relative position bias
is passed to every block). Forward: SimMIM crop (+ flip) ->
``patch_embed`` -> masked patch embeddings replaced by a learnable mask token (before the
position embedding) -> ``_pos_embed`` (CLS + position) -> ``norm_pre`` -> ``blocks`` ->
``norm`` -> patch tokens -> ``Linear(embed_dim, patch²·3)`` -> pixels of the normalised
image. The loss is the ℓ1 error averaged over the masked pixels (and channels) only.
Masks are SimMIM's block masks (:func:`clvsmim.data.augment.simmim_mask`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from clvsmim.data.augment import denormalize, eval_view, patchify, simmim_mask, simmim_view, unpatchify
from clvsmim.config import SimMIMConfig
from clvsmim.models import square_geometry
from clvsmim.objectives.base import Objective


class MaskedPrediction(NamedTuple):
    masked: torch.Tensor  # B×3×H×W in [0, 1], masked pixels shown as 0.5 grey
    reconstruction: torch.Tensor  # B×3×H×W in [0, 1]: visible pixels copied, masked ones predicted
    mask: torch.Tensor  # B×1×H×W bool, True = masked pixel


def _is_beit(encoder: nn.Module) -> bool:
    return hasattr(encoder, "rel_pos_bias") and not hasattr(encoder, "_pos_embed")


def _check_vit(encoder: nn.Module, who: str, allow_beit: bool = False) -> None:
    if allow_beit and _is_beit(encoder):
        return
    if not hasattr(encoder, "_pos_embed") or getattr(encoder, "dynamic_img_size", False):
        raise TypeError(f"{who} trains a timm VisionTransformer (fixed image size); "
                        f"got {type(encoder).__name__}")


class SimMIM(Objective):
    """SimMIM on a timm ViT ``encoder`` with settings from :class:`SimMIMConfig`."""

    name = "simmim"

    def __init__(self, encoder: nn.Module, cfg: SimMIMConfig = SimMIMConfig()):
        super().__init__(encoder)
        _check_vit(encoder, "SimMIM", allow_beit=True)
        self.cfg = cfg
        geo = square_geometry(encoder, "SimMIM")
        self.patch_size = geo.patch_size
        self.grid = geo.grid[0]
        self.img_size = self.grid * self.patch_size
        simmim_mask(torch.zeros(1, dtype=torch.int64), self.grid, self.patch_size,
                    cfg.mask_patch_size, cfg.mask_ratio)  # validate the sizes now, not at step 1
        self.mask_token = nn.Parameter(torch.zeros(1, 1, geo.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(geo.embed_dim, self.patch_size ** 2 * 3)

    def mask(self, seeds: torch.Tensor) -> torch.Tensor:
        """``B×grid×grid`` bool token mask of these seeds (True = masked)."""
        return simmim_mask(seeds, self.grid, self.patch_size, self.cfg.mask_patch_size, self.cfg.mask_ratio)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised images ``B×3×H×W`` + token mask -> patch-token features ``B×N×C``."""
        enc = self.encoder
        tokens = enc.patch_embed(x)
        if tokens.dim() == 4:  # NHWC output
            tokens = tokens.flatten(1, 2)
        w = mask.reshape(mask.shape[0], -1, 1).to(tokens.dtype)
        tokens = tokens * (1 - w) + self.mask_token.to(tokens.dtype) * w
        if _is_beit(enc):  # BEiT-style (official SimMIM ViT): shared relative position bias
            z = torch.cat([enc.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
            if enc.pos_embed is not None:
                z = z + enc.pos_embed
            z = enc.pos_drop(z)
            bias = enc.rel_pos_bias() if enc.rel_pos_bias is not None else None
            for blk in enc.blocks:
                z = blk(z, shared_rel_pos_bias=bias)
            z = enc.norm(z)
        else:
            z = enc.norm_pre(enc.patch_drop(enc._pos_embed(tokens)))
            z = enc.norm(enc.blocks(z))
        return z[:, enc.num_prefix_tokens:]

    def predict_tokens(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted pixels per patch token, ``B×N×(p²·3)`` (normalised-image space)."""
        return self.head(self.encode(x, mask))

    def reconstruct_pixels(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The head's prediction for every pixel as an image ``B×3×H×W`` (normalised space)."""
        return unpatchify(self.predict_tokens(x, mask), self.patch_size, self.grid)

    def prepare(self, images: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SimMIM view ``B×3×H×W``, token mask ``B×grid×grid``)."""
        x = simmim_view(images, seeds, self.img_size, self.cfg.crop_min_scale)
        return x, self.mask(seeds.to(x.device))

    def loss_of(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = self.predict_tokens(x, mask).float()
        target = patchify(x, self.patch_size)
        w = mask.reshape(mask.shape[0], -1).to(pred.dtype)
        per_token = (pred - target).abs().mean(dim=-1)  # every token has p²·3 pixel values
        loss = (per_token * w).sum() / w.sum().clamp_min(1.0)
        return {"loss": loss, "loss_mim": loss.detach()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, seeds: torch.Tensor) -> MaskedPrediction:
        """For figures: masked input, reconstruction and pixel mask of the UNcropped images
        (``eval_view``), masks drawn from ``seeds`` as in training. Images in [0, 1]."""
        x = eval_view(images)
        mask = self.mask(torch.as_tensor(seeds, device=x.device))
        pred = self.reconstruct_pixels(x, mask).float()
        s = self.patch_size
        pix = mask.repeat_interleave(s, 1).repeat_interleave(s, 2).unsqueeze(1)
        original = denormalize(x)
        masked = torch.where(pix, torch.full_like(original, 0.5), original)
        recon = torch.where(pix, denormalize(pred), original)
        return MaskedPrediction(masked, recon, pix)
