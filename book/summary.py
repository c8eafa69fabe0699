# %% [markdown]
# # Summary: CL vs MIM, claim by claim
#
# The paper condenses its findings into one table: contrastive learning learns image-level
# invariants, masked image modeling token-level similarities, with consequences for how the
# models behave, how they attend, what their representations hold and which layers matter.
# Here every cell of that table is backed by a number measured on this book's models, and
# every finding is a *claim* with a statistic, a comparison and a verdict
# (`clvsmim.claims`; the same command-line check is `clvsmim claims --profile P --seeds 3`).
# Every verdict of this chapter — the sentences, the table F10 and the tables below — comes
# from one table, **the record**: the three-seed table recorded for the profile
# (`docs/<profile>-claims-3seeds.json`) when there is one — it needs the zoos of two more seeds,
# hours of training on two cores, so the book loads it rather than recomputing it — and
# otherwise the claims checked on the zoo this book was built from (`claim_seeds` = 1: the
# profile's own seed). Where a record exists, this build's own seed is shown separately at the
# end, marked as not the record. Accuracies are in percent, their differences in points.

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"
source = "zoo"
images = None
# source = "official": the GPU-sized profile whose built zoo gives C8 and C11
sweep_profile = "gpu"
claim_seeds = 1

# %%
from IPython.display import HTML, Markdown, display

from clvsmim import claims
from clvsmim.book import paperbook
from clvsmim.book.chapters import summary as ch
from clvsmim.book.chapters.common import chapter_profile
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import summary as plots

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root
if source == "official":  # the official checkpoints: nothing is trained; C8 and C11 from the GPU-sized zoo if built
    sweep = paperbook.built_sweep(sweep_profile, cfg.data.root, images)
    built = paperbook.official_claims_table(cfg, device, sweep=sweep)
    display(Markdown(paperbook.table_rows(paperbook.claim_sources(built, cfg, sweep))
                     + paperbook.sweep_note(source, sweep, "C8 and C11", sweep_profile, cfg.data.root)))
else:
    built = claims.claims_table(cfg, claims.seeds_for(cfg, claim_seeds), device)
table = ch.table_of_record(cfg.name, built)
recorded = table is not built
display(Markdown(("The record is the table recorded in "
                  f"`{ch.RECORDED_TABLE.format(profile=cfg.name)}`. " if recorded else
                  "No multi-seed table is recorded for this profile: the record is this build's own seed. ")
                 + ch.verdict_paragraph(table)))

# %% [markdown]
# ## The table (F10)
#
# Each line is one claim: what the paper says about each side, the statistic, its value on
# the CL model (MoCo v3) and on the MIM model (SimMIM) — mean ± standard deviation when
# several seeds were trained — and the verdict (✓ holds, ✗ fails, ? inconclusive).

# %%
grid = ch.summary_grid(table)
fig = plots.plot_summary_table(grid, title=f"Profile {cfg.name}, seeds {', '.join(map(str, table.seeds))}"
                                           + (" (recorded table)" if recorded else " (this build)"))
save_figure(fig, "F10", {"grid": grid, "claims": ch.claims_json(table)},
            models=sorted({n for names in table.models.values() for n in names.values()}),
            caption="The CL-vs-MIM table, each cell backed by the measured statistic and the claim's verdict.")
display(HTML(ch.grid_html(grid)))

# %% [markdown]
# ## Every claim, its statistic and the control
#
# An untrained ViT already has nearly uniform attention: global and collapsed. A trained model
# that merely *stays* there says nothing about its objective, so every claim is also checked
# against a randomly initialised control of the same architecture, and a comparison counts
# only where the trained model moved away from the control in the stated direction — for the
# attention claims (C1, C2) MIM must have become more local / less collapsed than the control,
# for the others at least one of the two models must have moved to its side (details in the
# docstring of `clvsmim.claims`). A difference counts only beyond the larger of a per-claim
# margin and two standard errors: for C1–C5 a bootstrap over the analysis images, for the
# accuracy claims C7–C11 paired over the evaluation images (every model is evaluated on the same
# images; where the profile repeats every fine-tune with other seeds, `eval.finetune_repeats`, the
# fine-tuned accuracy is the runs' mean and its SE adds their run-to-run variance, which a single
# fine-tune cannot show), for C6 the binomial SE of the bias. Per seed a claim *holds*, is a *tie* (within that
# threshold) or is *reversed* (beyond it the other way), or is *not measurable* where its
# precondition fails. With several seeds a claim takes a verdict only if every seed gives it,
# and is inconclusive otherwise.

# %%
display(HTML(ch.table_html(table)))

# %%
display(Markdown(ch.claims_paragraphs(table)))

# %% [markdown]
# ## Every seed of the record
#
# A verdict from one seed says nothing about its stability. `clvsmim claims --profile P
# --seeds 3 --out docs/P-claims-3seeds.json` trains (or reuses) the zoos of three training seeds
# — the data and evaluation splits stay fixed — and a claim holds only if it holds on every
# seed. When such a file is recorded it is the record above, loaded with every verdict
# re-checked against its seeds (✓ holds, ✗ fails, ? inconclusive or not measured); how and where
# its models were trained is in `docs/mini-profile.md`.

# %%
if not recorded:
    display(Markdown(f"No three-seed table is recorded for profile **{cfg.name}** "
                     f"(`{ch.RECORDED_TABLE.format(profile=cfg.name)}`)."))
else:
    display(HTML(ch.seeds_table_html(table)))
    disagreements = ch.seed_disagreements(table)
    if disagreements:
        display(Markdown("Where the seeds disagree, and why each seed that does not hold says so:\n\n"
                         + disagreements))
    display(Markdown(f"**This build's own zoo (seed{'s' if len(built.seeds) > 1 else ''} "
                     f"{', '.join(map(str, built.seeds))}) — not the record**, for comparison: "
                     + ch.verdict_paragraph(built)))

# %% [markdown]
# ## How far each seed is from a tie (A-seed-differences)
#
# A verdict is a difference compared with a threshold. Here is every seed's difference itself, signed
# so that positive is the paper's direction, with ± 2 standard errors, beside the claim's margin
# (grey): a dot right of the grey band with its bar clear of it *holds*, left of it is *reversed*,
# inside it a *tie*. It shows how large each effect is against its noise — and, for the claims
# that do not hold, by how much and on which seeds.

# %%
differences = ch.seed_differences(table)
fig = plots.plot_seed_differences(differences, title=f"Profile {cfg.name}, seeds {', '.join(map(str, table.seeds))}"
                                                     + (" (recorded table)" if recorded else " (this build)"))
save_figure(fig, "A-seed-differences", {"claims": differences, "recorded": recorded},
            models=sorted({n for names in table.models.values() for n in names.values()}),
            caption="Every seed's signed difference per claim (> 0: the paper's direction) with ± 2 SE; "
                    "grey: the claim's margin.")
