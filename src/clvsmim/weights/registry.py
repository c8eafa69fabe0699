"""The registry of official checkpoints (and the Imagenette archive) the project can fetch.

Each :class:`WeightEntry` says where a file lives, what is known about it (size, sha256 — only
where an upstream source publishes them; otherwise ``None`` and the hash is pinned in a lock
file on first download, see :mod:`clvsmim.weights.pins`), its licence, the timm
architecture it loads into and the name of the converter that turns the upstream layout into a
timm state dict (:data:`clvsmim.weights.convert.CONVERTERS`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: ``embed_dim -> num_heads`` of the standard ViT sizes (Ti, S, B, L, H); used when a
#: checkpoint's tensors cannot tell the number of heads (plain ViTs never can).
HEADS_BY_DIM: dict[int, int] = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


@dataclass(frozen=True)
class Architecture:
    """A backbone to build: ``family`` is ``"vit"`` (timm ``VisionTransformer``), ``"beit"``
    (timm ``Beit``) or ``"clvsmim"`` (``kwargs`` is a :class:`clvsmim.config.ModelConfig` dict).

    With ``timm_name`` set the model is ``timm.create_model(timm_name, pretrained=False,
    **kwargs)``; otherwise the family's class is called with ``kwargs``.
    """

    family: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timm_name: str | None = None

    @property
    def num_heads(self) -> int | None:
        heads = self.kwargs.get("num_heads")
        if heads is None and self.timm_name:
            base = self.timm_name.split(".")[0]
            for dim, tag in ((192, "tiny"), (384, "small"), (768, "base"), (1024, "large"), (1280, "huge")):
                if f"_{tag}_" in base:
                    return HEADS_BY_DIM[dim]
        return heads


@dataclass(frozen=True)
class WeightEntry:
    """One downloadable file.

    ``source``: ``"url"`` (plain HTTP(S)), ``"gdrive"`` (Google Drive direct-download form,
    which may answer with a confirmation or quota page) or ``"timm"`` (no file of ours:
    timm's hub fetches it, see :func:`clvsmim.weights.load_pretrained`).
    ``size`` / ``sha256`` / ``md5_prefix``: only what an upstream source states, else ``None``.
    ``converter``: a key of ``CONVERTERS`` (checkpoints) or ``"archive"`` (datasets).
    """

    name: str
    url: str | None
    filename: str | None
    licence: str
    converter: str
    architecture: Architecture | None = None
    size: int | None = None
    sha256: str | None = None
    md5_prefix: str | None = None
    source: str = "url"
    kind: str = "checkpoint"  # "checkpoint" | "dataset"
    description: str = ""
    homepage: str = ""
    manual: str = ""  # what to do when the automatic download fails
    extra: Mapping[str, Any] = field(default_factory=dict)


_VIT_B = Architecture("vit", {"num_classes": 0}, timm_name="vit_base_patch16_224")

# SimMIM's encoder is BEiT-style: q/v biases, layer scale (init 0.1), one relative position
# bias shared by all blocks, no absolute position embedding. Its pre-training checkpoint keeps
# the final LayerNorm as ``norm`` (USE_MEAN_POOLING False), hence ``use_fc_norm=False``;
# ``global_pool="avg"`` makes ``model(x)`` the mean of the normalised patch tokens, the
# pooling the SimMIM authors use for linear probing.
_SIMMIM_BEIT_B = Architecture("beit", {
    "img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
    "mlp_ratio": 4.0, "qkv_bias": True, "use_abs_pos_emb": False, "use_rel_pos_bias": False,
    "use_shared_rel_pos_bias": True, "init_values": 0.1, "num_classes": 0,
    "global_pool": "avg", "use_fc_norm": False,
})

SIMMIM_DRIVE_ID = "1dJn6GYkwMIcoP3zqOEyW1_iQfpBi8UOw"

REGISTRY: dict[str, WeightEntry] = {e.name: e for e in [
    WeightEntry(
        name="moco_v3_vit_b",
        url="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
        filename="vit-b-300ep.pth.tar",
        licence="CC-BY-NC-4.0",
        converter="moco_v3",
        architecture=_VIT_B,
        description="MoCo v3 ViT-B/16, 300 epochs (CL). Backbone = module.base_encoder minus the projector head.",
        homepage="https://github.com/facebookresearch/moco-v3",
    ),
    WeightEntry(
        name="simmim_vit_b",
        url=f"https://drive.google.com/uc?export=download&id={SIMMIM_DRIVE_ID}",
        filename="simmim_pretrain__vit_base__img224__800ep.pth",
        licence="MIT",
        converter="simmim",
        architecture=_SIMMIM_BEIT_B,
        source="gdrive",
        description="SimMIM ViT-B/16, 800 epochs pre-training (MIM); BEiT-style encoder. "
                    "The file holds a pickled yacs config: loading needs allow_pickle=True.",
        homepage="https://github.com/microsoft/SimMIM",
        manual=(f"Open https://drive.google.com/file/d/{SIMMIM_DRIVE_ID}/view in a browser, download "
                "the file, then either place it at the cache path below (the next `clvsmim weights "
                "fetch simmim_vit_b` / `verify` pins its sha256) or pass its path directly: "
                "load_checkpoint(path, allow_pickle=True) or load_pretrained('simmim_vit_b', path=path, "
                "allow_pickle=True)."),
    ),
    WeightEntry(
        name="mae_vit_b",
        url="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
        filename="mae_pretrain_vit_base.pth",
        licence="CC-BY-NC-4.0",
        converter="mae",
        architecture=_VIT_B,
        md5_prefix="8cad7c",  # the MAE README's md5 column
        description="MAE ViT-B/16 pre-trained encoder (MIM), timm key names.",
        homepage="https://github.com/facebookresearch/mae",
    ),
    WeightEntry(
        name="mae_vit_b_visualize",
        url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
        filename="mae_visualize_vit_base.pth",
        licence="CC-BY-NC-4.0",
        converter="mae",
        architecture=_VIT_B,
        description="MAE ViT-B/16 encoder + decoder (trained without normalised-pixel loss, for "
                    "visualisation); use load_mae_with_decoder().",
        homepage="https://github.com/facebookresearch/mae",
        extra={"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16,
               "norm_pix_loss": False},
    ),
    WeightEntry(
        name="dino_vit_b",
        url=None,
        filename=None,
        licence="Apache-2.0",
        converter="timm",
        architecture=Architecture("vit", {"num_classes": 0}, timm_name="vit_base_patch16_224.dino"),
        source="timm",
        description="DINO ViT-B/16 (CL), fetched by timm's hub (Hugging Face) on first use.",
        homepage="https://github.com/facebookresearch/dino",
    ),
]}

IMAGENETTE = WeightEntry(
    name="imagenette2_320",
    url="https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
    filename="imagenette2-320.tgz",
    licence="Apache-2.0 (fastai/imagenette); images are an ImageNet subset, ImageNet terms apply",
    converter="archive",
    kind="dataset",
    description="Imagenette v2, 10 ImageNet classes, shortest side 320 px (train/ and val/).",
    homepage="https://github.com/fastai/imagenette",
)

DATASETS: dict[str, WeightEntry] = {IMAGENETTE.name: IMAGENETTE}


def all_entries() -> dict[str, WeightEntry]:
    """Checkpoints and datasets, by name."""
    return {**REGISTRY, **DATASETS}


def get_entry(name: str | WeightEntry) -> WeightEntry:
    """The entry called ``name`` (an entry passes through), naming the known ones on error."""
    if isinstance(name, WeightEntry):
        return name
    entries = all_entries()
    if name not in entries:
        raise KeyError(f"unknown weights {name!r}; known: {sorted(entries)}")
    return entries[name]
