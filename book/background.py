# %% [markdown]
# # Background: contrastive learning and masked image modeling
#
# Two families of self-supervised objectives train the vision transformers (ViTs) compared in
# this book.
#
# * **Contrastive learning (CL)**, here MoCo v3: two randomly augmented *views* of an image go
#   through the ViT and an MLP projector (plus a predictor on one branch, a momentum copy of
#   the network on the other). The InfoNCE loss pulls the two embeddings of the same image
#   together and pushes the embeddings of different images apart. The loss sees one vector per
#   image: CL is an **image-level** method.
# * **Masked image modeling (MIM)**: part of the patches are hidden and the network predicts
#   their pixels. SimMIM replaces the hidden patches by a learned mask token, runs the whole
#   token grid through the ViT and predicts the pixels with one linear layer (ℓ1 loss on the
#   masked pixels); MAE feeds only the visible patches to the encoder and lets a small separate
#   decoder fill in the rest (MSE on per-patch normalised pixels). The loss is a sum over
#   tokens: MIM is a **token-level** method.
#
# The figure below is drawn with the project's own augmentation and masking functions — the
# ones the training objectives call — applied to real images of the data set the models are
# trained on.

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"
source = "zoo"
images = None

# %%
import pandas as pd
from IPython.display import Markdown, display

from clvsmim.book.chapters import background as ch
from clvsmim.book.chapters.common import chapter_profile
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import background as plots

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root
pd.DataFrame({
    "setting": ["image size (px)", "patch size (px)", "tokens", "MoCo v3 crop scale", "SimMIM mask ratio",
                "SimMIM mask patch (px)", "MAE mask ratio"],
    "value": [cfg.model.img_size, cfg.model.patch_size, (cfg.model.img_size // cfg.model.patch_size) ** 2,
              f"{cfg.moco.crop_min_scale}–1", cfg.simmim.mask_ratio, cfg.simmim.mask_patch_size,
              cfg.mae.mask_ratio],
}).set_index("setting")

# %% [markdown]
# ## F0 — what each objective sees
#
# Left: an evaluation image and the two MoCo v3 views made from it (random resized crop and
# flip, colour jitter, grayscale, blur on view 1, solarisation on view 2). The contrastive
# loss attracts the two views of one image and repels the views of the other images.
# Right: the same images with the SimMIM block mask and the MAE random mask, masked patches in
# grey. Below: the two objectives as diagrams.

# %%
overview = ch.overview_data(cfg, n=3, seed=seed)
fig = plots.plot_overview(overview)
save_figure(fig, "F0", overview["record"], models=[],
            caption="CL vs MIM: two MoCo v3 views per image (attract / repel) and the SimMIM block and MAE "
                    "random masks, made with clvsmim.data.augment on evaluation images.")
display(Markdown(ch.describe_overview(overview["record"])))

# %% [markdown]
# ## The data set
#
# With `data_root = None` the models are trained and evaluated on a data set generated in code
# (no download): each image shows one of **8 shapes** (the class label) filled with one of
# **8 textures**, on a background of a different texture at a lower colour contrast (the profile's
# `data.texture_scale` sets the texture periods, `data.background_contrast` the background's
# contrast; 0 draws a flat background). Every image comes with its
# foreground mask, which the dense probe (chapter *behaviour*) and the choice of query patches
# (F2) use. In the *independent* split used for training and evaluation, shape and texture are
# drawn independently. For the shape-versus-texture analysis, shape *k* and texture *k* are
# paired into one class: an *aligned* image carries texture *k* on shape *k*, a *cue-conflict*
# image renders the same scene with the texture of another class. A probe trained on aligned
# images and tested on conflict images reveals which cue a representation relies on.

# %%
samples = ch.dataset_samples(cfg)
fig = plots.plot_dataset(samples)
save_figure(fig, "A-dataset", samples["record"], models=[],
            caption="The embedded data set: one scene per shape class, aligned and cue-conflict renderings "
                    "of the same scene, and its foreground mask.")
pd.DataFrame({"aligned": [f"{r['shape']} / {r['texture']}" for r in samples["record"]["aligned"]],
              "cue conflict": [f"{r['shape']} / {r['texture']}" for r in samples["record"]["conflict"]],
              "foreground": [f"{f:.0%}" for f in samples["record"]["foreground_fraction"]]})
