# %% [markdown]
# # Architecture: which layers matter
#
# The paper argues that CL and MIM use the depth of a ViT differently. CL's later layers carry
# the image-level information its loss asks for, so linear probing improves up to the last
# block. MIM's early layers do the useful work and its last layers behave like an *implicit
# decoder* that turns representations back into pixels: SimMIM's probing accuracy peaks before
# the end and falls over the last blocks. MAE moves this decoding into a separate decoder,
# which the Fourier analysis makes visible: the decoder's representations lose the
# high-frequency amplitude that the encoder keeps (and the reconstructions are blurred).

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"
source = "zoo"
images = None

# %%
import pandas as pd
import torch

from clvsmim.book import paperbook, report
from clvsmim.book.chapters import architecture as ch
from clvsmim.book.chapters.common import chapter_profile, evaluations_by_name, show_bullets
from clvsmim.methods import ModelRef
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import architecture as plots
from clvsmim.rng import sample_seed

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root


# %% [markdown]
# ## F7 — linear probing of every depth
#
# A linear classifier on the mean-pooled patch tokens of each depth (0 = patch embedding,
# `L` = last block, before the final norm), trained with the same budget for every depth and
# model (`clvsmim.evaluation.linear_probe`). The grey dashed line is the untrained network; the
# open circle marks each model's best depth. Dotted, in the same colour: the same probe on the
# normed CLS token (token 0 through a LayerNorm, MoCo v3's representation), where the
# evaluation has it. The claims read each method on the representation it was trained for:
# C7 and C9 take MoCo v3's normed CLS token and SimMIM's mean-pooled tokens (the control as the
# model it is compared with), C8's hybrids are mean-pooled. With `source = "official"` the official
# checkpoints and the seeded random init are probed on the analysis images (alternate images
# of each class for training and testing, the budget of `clvsmim analyze`), mean-pooled only.

# %%
probed = ["moco", "simmim", "mae", "random"]
evals = (paperbook.probe_evaluations(cfg, probed, device) if source == "official"
         else evaluations_by_name(cfg, probed))
summary, summary_cls = ch.linear_probe_summary(evals), ch.linear_probe_summary(evals, key="linear_probe_cls")
control, control_cls = summary.pop("random", None), summary_cls.pop("random", None)
chance = ch.chance_level(cfg)
probe_images = ch.eval_size(cfg) if source != "official" else None
fig = plots.plot_linear_probe_depths(summary, control, chance=chance, cls_summary=summary_cls, cls_control=control_cls,
                                     num_images=probe_images, band_pool=ch.claim_pools())
save_figure(fig, "F7", {"curves": summary, "control": control, "chance": chance, "pool": "mean", "source": source,
                        "num_images": probe_images,
                        **ch.cls_probe_record(summary_cls, control_cls)},
            models=list(summary) + (["random"] if control else []),
            caption="Linear-probe accuracy of every depth: MoCo v3, SimMIM, MAE, mean-pooled (solid) and on the "
                    "normed CLS token (dotted); untrained control dashed"
                    + ("; shaded: ± 2 binomial standard errors over the evaluation images, around the curve each "
                       "method's claims read (a difference between two depths is judged with its SE paired over "
                       "the same images, which is smaller)." if probe_images else "."))
ch.probe_table(summary, summary_cls).round(1)

# %%
show_bullets(ch.probe_sentences(summary, cls_summary=summary_cls))

# %% [markdown]
# ## F8 — Fourier analysis of MAE through encoder and decoder
#
# The relative log amplitude of the highest spatial frequency of the token feature maps
# (Δ log amplitude; more negative = smoother, lower-frequency representations), at every depth.
# Left: the MAE encoder on full images, as every other Fourier curve in this book, with
# SimMIM's encoder dashed for reference. Right: the MAE decoder, run the way it is trained — on
# the encoder's output for the *visible* patches plus mask tokens (masking ratio of the
# profile); its first point is the decoder's input embedding, not a decoder block. The two
# halves therefore see different inputs (full images vs masked input plus mask tokens). The
# paper's point here is MAE's encoder against MAE's decoder; it makes no claim about SimMIM's
# encoder against MAE's. Top: masked input, MAE's reconstruction and the original image.

# %%
dev = report.resolve_device(device)
mae = ch.mae_objective(cfg, source, dev)
images, _ = report.analysis_images(cfg)
seeds = sample_seed(seed, 0, torch.arange(len(images)))
fourier = ch.mae_fourier(mae, images, seeds, cfg.mae.mask_ratio, batch_size=cfg.eval.batch_size)
simmim_curve = report.model_analysis(ModelRef(cfg, "simmim", source), device)["fourier"]["delta_log_amplitude"]
strip = ch.reconstruction_strip(mae, images[:3], seeds[:3], cfg.mae.mask_ratio)
fig = plots.plot_mae_fourier(fourier, simmim_curve, strip)
f8_summary = ch.fourier_summary(fourier, simmim_curve)
save_figure(fig, "F8", {"mae": fourier, "simmim_encoder": simmim_curve, "summary": f8_summary,
                        "strip_image_ids": [0, 1, 2], "seeds": seeds.tolist(), "source": source},
            models=["mae", "simmim"],
            caption="Fourier Δ log amplitude of MAE through its encoder (full images) and decoder (masked "
                    "input), SimMIM's encoder dashed; masked / reconstructed / original images.")
pd.DataFrame({"depth": list(range(len(fourier["encoder"]))) + [f"dec {j}" for j in range(len(fourier["decoder"]))],
              "part": ["encoder"] * len(fourier["encoder"]) + ["decoder"] * len(fourier["decoder"]),
              "Δ log amplitude": fourier["encoder"] + fourier["decoder"]}).set_index("depth").round(3)

# %%
show_bullets(ch.fourier_sentences(f8_summary))
