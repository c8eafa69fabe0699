# %% [markdown]
# # CL + MIM: a hybrid objective
#
# If CL and MIM learn complementary things — CL the image-level, global, low-frequency content
# that later layers carry, MIM the token-level, local, high-frequency content of the earlier
# layers — then training one encoder with both should keep the strengths of each. The paper
# trains
#
# $$
# \mathcal{L} = \lambda\, \mathcal{L}_{\mathrm{CL}} + (1 - \lambda)\, \mathcal{L}_{\mathrm{MIM}}
# $$
#
# for several λ and finds that a hybrid beats both pure methods on linear probing *and*
# fine-tuning. This chapter repeats the sweep on the profile's models. Accuracies are in percent
# (one decimal), as in every chapter.

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"
source = "zoo"
images = None
# source = "official": the GPU-sized profile whose built zoo holds the sweep
sweep_profile = "gpu"

# %%
from IPython.display import Markdown, display

from clvsmim import claims
from clvsmim.book import paperbook
from clvsmim.book.chapters import hybrid as ch
from clvsmim.book.chapters.common import chapter_profile, control_analysis, read_literature
from clvsmim.methods import ModelRef
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import hybrid as plots

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root
# the official world has no hybrid checkpoint: the sweep is the GPU-sized profile's zoo, when built
sweep = cfg if source == "zoo" else paperbook.built_sweep(sweep_profile, cfg.data.root, images)
trained = sweep is not None
models = ch.sweep_models(sweep or cfg)
display(Markdown(f"Profile **{(sweep or cfg).name}**: λ ∈ {{{', '.join(f'{lam:g}' for lam, _ in models)}}}, models "
                 + ", ".join(f"`{name}`" for _, name in models) + "."
                 + paperbook.sweep_note(source, sweep, "The λ sweep", sweep_profile, cfg.data.root)))

# %% [markdown]
# ## What each branch sees

# %%
display(Markdown(ch.branches_markdown(cfg)))

# %% [markdown]
# ## Linear probing and fine-tuning along the sweep (F9)
#
# Every model is evaluated with the same budget: a linear probe on the mean-pooled tokens of
# the last block (x) and end-to-end fine-tuning (y). Points are joined in λ order.

# %%
literature = paperbook.literature_sweep_points(read_literature("data/literature.csv"))
if trained:
    points, control_eval = ch.sweep_points(sweep)
    c8 = claims.evaluate_claim("C8", ch.measurements(points, control_eval))
    beside = literature if source == "official" else None  # the paper's own numbers next to the GPU-sized run
    fig = plots.plot_sweep(points, literature=beside)
    save_figure(fig, "F9", {**ch.sweep_record(points, c8), "source": sweep.name, "literature": beside},
                models=[pt["name"] for pt in points],
                caption="Hybrid λ sweep: fine-tuning vs linear-probing accuracy (λ = 0 SimMIM, λ = 1 MoCo v3)"
                        + ("; right: the paper's ViT-B/16 end points." if beside else "."))
    display(Markdown(ch.sweep_paragraph(points, c8)))
else:
    points = literature
    fig = plots.plot_sweep(points, scale=1.0)  # literature.csv holds percent
    save_figure(fig, "F9", {"points": points, "source": "literature"}, models=[],
                caption="The sweep's end points from the literature (ViT-B/16, %): λ = 0 SimMIM, λ = 1 MoCo v3.")
    display(Markdown("Literature end points (the hybrids in between need training): "
                     + "; ".join(f"λ = {pt['lam']:g} {pt['name']}: linear {pt['linear_probe']:g}, fine-tune "
                                 f"{pt['finetune']:g} ({pt['source']}, *{pt['status']}*)" for pt in points) + "."))

# %% [markdown]
# ## The hybrids across depth
#
# The same per-depth analyses as in the *behaviour* and *representation* chapters, for every λ:
# mean attention distance and NMI of every block, and the Fourier Δ log amplitude of every
# depth. Colour runs from SimMIM blue (λ = 0) through purple to MoCo v3 red (λ = 1); the
# untrained control is dashed.

# %%
if trained:
    analyses = ch.sweep_analyses(sweep, models, device)
    control = control_analysis(ModelRef(sweep, ch.CONTROL), device)
    curves = ch.hybrid_curves(analyses, control)
    fig = plots.plot_hybrid_curves(curves)
    save_figure(fig, "A-hybrid-curves", curves,
                models=[name for _, name in models] + ([ch.CONTROL] if control else []),
                caption="Attention distance, NMI and Fourier Δ log amplitude of the hybrids, coloured by λ.")
    display(Markdown(ch.curves_paragraph(curves)))
else:
    display(Markdown(paperbook.needs_training_note("The hybrids' per-depth analyses", sweep_profile, cfg.data.root)))
