# %% [markdown]
# # Behaviour: what CL and MIM are good at, and how they attend
#
# The paper starts from three observations — on published results, and for the small ViT-Ti /
# ViT-S points of its model-size panel on the authors' own runs (marked †): contrastive
# learning (CL) wins linear probing, MIM wins fine-tuning; CL is better with small models, MIM
# scales better with model size; MIM transfers better to dense prediction (fine-tuned COCO
# detection). It then explains them with the self-attention of the two families: CL's attention
# is **global** and nearly the same for every query and head (attention collapse), both
# especially in the later layers; MIM's is **local** and query-dependent.
#
# Every comparison below is shown twice: with the literature numbers (cited in
# `data/literature.csv`) and measured on the models this book trained with one shared budget
# (parameter `profile`). F1's measured row always uses the zoo; F2–F4 use the models named by
# `source` (`"zoo"`: the profile's own models; `"official"`: the official ViT-B/16
# checkpoints), with the untrained zoo model as the control. Each measured statement is
# generated from the numbers and says whether it agrees with the paper — except where the
# measurement is a different test from the paper's (the dense probe), which is described but not
# scored. Accuracies are in percent (one decimal), differences of accuracies in points.

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

from clvsmim.book import paperbook, report
from clvsmim.book.chapters import behaviour as ch
from clvsmim.book.chapters.common import chapter_profile, control_analysis, show_bullets
from clvsmim.methods import ModelRef
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import behaviour as plots

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root


# %% [markdown]
# ## F1 — linear probing, fine-tuning, model size and dense prediction
#
# Top row: literature (filled markers: numbers read in a stored source; hollow: approximate —
# read off the paper's own figure — or partly verified numbers; see the list of sources below).
# The published MIM linear probes are not last-block probes (BEiT probes block 9, SimMIM block 8,
# with average pooling), while this project's probe (bottom) uses the last block. In (b) the
# paper's own runs (†, dashed) are a series of their own, not joined to the official numbers
# at larger sizes. Bottom row: the zoo of this profile — the final-block linear probe,
# end-to-end fine-tuning with one budget for every model, moco / simmim at every model size of
# the profile, and a linear per-token foreground/background probe (mIoU) on the frozen last
# block. That probe is not the paper's dense-prediction test (fine-tuned Mask R-CNN on COCO),
# so it is shown, not scored.

# %%
literature = ch.read_literature("data/literature.csv")
lit_panels = ch.literature_panels(literature)
sizes = list(cfg.sizes)
names = ["moco", "simmim", "mae"] + [f"{m}-{s}" for m in ("moco", "simmim") for s in sizes]
evals = ch.evaluations_by_name(cfg, names)
measured = ch.measured_behaviour(evals, sizes)
fig = plots.plot_behaviour(lit_panels, measured)
save_figure(fig, "F1", {"literature": lit_panels, "measured": measured, "sizes": sizes},
            models=sorted(evals),
            caption="Fine-tuning vs linear probing, vs model size and vs dense prediction: literature (top) "
                    "and this project's zoo (bottom). CL red squares, MIM blue triangles.")
pd.DataFrame(measured["linear_vs_finetune"]).round(1)

# %% [markdown]
# The paper's findings, checked on the zoo:

# %%
if source == "official":
    display(Markdown(paperbook.needs_training_note("The measured row (one shared training budget, every size)")))
show_bullets(ch.behaviour_sentences(measured, ch.paper_own_runs(literature)))

# %% [markdown]
# ### How much of fine-tuning is the pretraining (A-own-architecture)
#
# A fine-tuned model's accuracy is its architecture's accuracy from scratch plus what
# pretraining adds. The paper's MoCo v3 and SimMIM differ in both: SimMIM's ViT has no absolute
# position embedding (a relative position bias shared by all blocks, layer scale). Here each model
# (filled bar) is fine-tuned next to the untrained encoder of its own architecture (hatched bar,
# the same recipe); the number above is the gain pretraining gives, ± 2 standard errors — over the
# evaluation images (paired: both bars are fine-tuned on the same images) plus, where the profile
# fine-tunes every model several times (`eval.finetune_repeats`), the runs' own variance; the bars
# are the runs' mean with the same kind of error bar. Where the profile builds both
# on one encoder the two share one untrained control. Upstream SimMIM fine-tunes with a copy of the
# shared table in every block; the profile setting `eval.finetune_table: per_block` does the same
# (the paper profile sets it; the miniature profiles keep one shared table).

# %%
own_pairs = ch.own_architecture_pairs(cfg, sizes)
own_images = ch.eval_size(cfg) if source != "official" else None
own_rows = ch.finetune_over_own_architecture(ch.evaluations_by_name(cfg, sorted({*own_pairs, *own_pairs.values()})),
                                             own_pairs, num_images=own_images)
fig = plots.plot_own_architecture(own_rows, num_images=own_images)
save_figure(fig, "A-own-architecture", {"rows": own_rows, "pairs": own_pairs}, models=sorted(own_pairs),
            caption="Fine-tuning accuracy of each pretrained model and of the untrained encoder of its architecture.")
show_bullets(ch.own_architecture_sentences(own_rows),
             empty="*(no model of the zoo and its untrained architecture were both fine-tuned: the zoo of this "
                   "profile is not built — with `source=\"official\"` nothing is trained)*")

# %% [markdown]
# Sources of the literature numbers:

# %%
display(Markdown(ch.literature_citations(literature)))

# %% [markdown]
# ## F2 — self-attention of two query patches
#
# One evaluation image, two query patches: one on the object (the patch with the most
# foreground), one in the background (the pure-background patch farthest from the object).
# Each panel shows the attention of the query over all patches in the last block, averaged
# over heads, laid over the image. The paper finds that CL's maps hardly depend on the query —
# both queries look at the object — while MIM's maps stay near the query.

# %%
f2 = ch.query_attention_data([ModelRef(cfg, n, source) for n in ("moco", "simmim")], device=device)
fig = plots.plot_query_attention(f2)
save_figure(fig, "F2", ch.query_attention_record(f2), models=f2["models"],
            caption=f"Head-averaged attention of an object and a background query patch in block {f2['block']}, "
                    "CL (MoCo v3) vs MIM (SimMIM).")
pd.DataFrame({report.display_name(n): {"cosine(object map, background map)": s["cosine_between_queries"],
                                       **{f"local mass, {q} query": v for q, v in s["local_mass"].items()}}
              for n, s in f2["stats"].items()}).round(3)

# %% [markdown]
# ### Explore every patch, layer and head
#
# Pick an image in the strip and click (or touch) a patch: it becomes the query; the arrow keys
# move it. For CL and MIM side by side (tick the box for the untrained control), each small map
# is the query's attention in one layer (row) and head (column; the last column averages the
# heads), laid over the image. Under each model: every head's attention distance and NMI on this
# image in the selected layer, with the definitions of F3 and F4. The explorer runs in this page,
# offline; without JavaScript, F2 above shows two of its queries.

# %%
from IPython.display import HTML

from clvsmim.explorer import book_explorer

explorer = book_explorer([ModelRef(cfg, n, source) for n in ("moco", "simmim")], device=device, start=f2)
display(Markdown(f"{explorer['images']} analysis images, {explorer['page_bytes'] / 1e6:.2f} MB of attention data "
                 f"(its numbers: `figures/F2-explorer.npz`, or the download link in the explorer)."))
HTML(explorer["html"])

# %% [markdown]
# ## F3 — mean attention distance per depth
#
# For every block and head: the attention-weighted distance (in pixels) between a query patch
# and the patches it attends to, averaged over queries, heads and the analysis images. The grey
# dashed line is the same network untrained (random initialisation).

# %%
analyses = report.model_analyses([ModelRef(cfg, n, source) for n in ("moco", "simmim", "mae")], device=device)
control = control_analysis(ModelRef(cfg, "moco", source), device)
distance = ch.depth_curves(analyses, "attention_distance")
control_distance = ch.depth_curves({"random": control}, "attention_distance")["random"] if control else None
fig = plots.plot_depth_metric(distance, "mean attention distance (px)", control_distance)
save_figure(fig, "F3", {"curves": distance, "control": control_distance, "source": source,
                        "num_images": analyses["moco"]["num_images"]},
            models=list(analyses) + (["random"] if control else []),
            caption="Mean attention distance per depth: MoCo v3 vs SimMIM and MAE; untrained control dashed.")
pd.DataFrame({report.display_name(n): c["mean"] for n, c in distance.items()},
             index=pd.Index(distance["moco"]["depth"], name="block")).round(2)

# %% [markdown]
# ## F4 — normalised mutual information between query and key
#
# NMI is 0 when every query attends the same way (the attention has collapsed to one map) and
# grows when where a head looks depends on the query. Points: single heads; lines: their mean.

# %%
nmi = ch.depth_curves(analyses, "nmi")
control_nmi = ch.depth_curves({"random": control}, "nmi")["random"] if control else None
fig = plots.plot_nmi(nmi, control_nmi, seed=seed)
save_figure(fig, "F4", {"curves": nmi, "control": control_nmi, "source": source},
            models=list(analyses) + (["random"] if control else []),
            caption="NMI of the attention per depth (points: heads, lines: mean); untrained control dashed.")
pd.DataFrame({report.display_name(n): c["mean"] for n, c in nmi.items()},
             index=pd.Index(nmi["moco"]["depth"], name="block")).round(3)

# %% [markdown]
# The paper's attention findings, checked on these models:

# %%
show_bullets(ch.attention_sentences(f2, distance, nmi,
                                    control={"attention_distance": control_distance, "nmi": control_nmi}
                                    if control else None))
