# %% [markdown]
# # Behaviour: what CL and MIM are good at, and how they attend
#
# The paper starts from three observations on published results: contrastive learning (CL)
# wins linear probing, MIM wins fine-tuning; CL is better with small models, MIM scales better
# with model size; MIM transfers better to dense prediction (detection). It then explains them
# with the self-attention of the two families: CL's attention is **global** and nearly the
# same for every query (attention collapse), MIM's is **local** and query-dependent.
#
# Every comparison below is shown twice: with the published numbers (cited in
# `data/literature.csv`) and measured on the models this book trained with one shared budget
# (parameter `profile`). F1's measured row always uses the zoo; F2–F4 use the models named by
# `source` (`"zoo"`: the profile's own models; `"official"`: the official ViT-B/16
# checkpoints), with the untrained zoo model as the control. Each measured statement is
# generated from the numbers and says whether it agrees with the paper.

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

from clvsmim import paperbook, report
from clvsmim.chapters import behaviour as ch
from clvsmim.chapters import show_bullets as bullets
from clvsmim.config import load_profile
from clvsmim.figures import save_figure, use_style
from clvsmim.plots import behaviour as plots

use_style()
cfg = load_profile(profile, images)


# %% [markdown]
# ## F1 — linear probing, fine-tuning, model size and dense prediction
#
# Top row: literature (filled markers: numbers read in a stored source; hollow: approximate,
# recalled or partly verified numbers — see the list of sources below). Bottom row: the zoo of
# this profile — the final-block linear probe, end-to-end fine-tuning with one budget for
# every model, moco / simmim at every model size of the profile, and, in place of COCO
# detection, a linear per-token foreground/background probe (mIoU) on the last block.

# %%
literature = ch.read_literature("data/literature.csv")
lit_panels = ch.literature_panels(literature)
sizes = list(cfg.sizes)
names = ["moco", "simmim", "mae"] + [f"{m}-{s}" for m in ("moco", "simmim") for s in sizes]
evals = ch.evaluations_by_name(cfg, names, data_root)
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
bullets(ch.behaviour_sentences(measured))

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
f2 = ch.query_attention_data(cfg, ["moco", "simmim"], source=source, data_root=data_root, device=device)
fig = plots.plot_query_attention(f2)
save_figure(fig, "F2", {k: v for k, v in f2.items() if k != "image"}, models=f2["models"],
            caption=f"Head-averaged attention of an object and a background query patch in block {f2['block']}, "
                    "CL (MoCo v3) vs MIM (SimMIM).")
pd.DataFrame({report.display_name(n): {"cosine(object map, background map)": s["cosine_between_queries"],
                                       **{f"local mass, {q} query": v for q, v in s["local_mass"].items()}}
              for n, s in f2["stats"].items()}).round(3)

# %% [markdown]
# ## F3 — mean attention distance per depth
#
# For every block and head: the attention-weighted distance (in pixels) between a query patch
# and the patches it attends to, averaged over queries, heads and the analysis images. The grey
# dashed line is the same network untrained (random initialisation).

# %%
analyses = report.model_analyses(cfg, ["moco", "simmim", "mae"], source=source, data_root=data_root,
                                 device=device)
control = ch.control_analysis(cfg, data_root, device, source=source)
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
bullets(ch.attention_sentences(f2, distance, nmi,
                               control={"attention_distance": control_distance, "nmi": control_nmi}
                               if control else None))
