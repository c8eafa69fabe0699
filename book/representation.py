# %% [markdown]
# # Representation: CL distinguishes images, MIM distinguishes tokens
#
# The paper's second consequence of "image-level vs token-level": contrastive learning makes
# the tokens of one image alike and different from other images' tokens, using coarse,
# low-frequency information; masked image modeling keeps the tokens of an image distinct and
# lets tokens of different images intermingle, using fine, high-frequency information.
# This chapter measures that on the models of the chosen profile — MoCo v3 (CL), SimMIM and
# MAE (MIM) — next to a randomly initialised ViT of the same architecture (the *control*:
# what the architecture does before any training).

# %% tags=["parameters"]
profile = "smoke"
data_root = None
seed = 0
device = "auto"
source = "zoo"
images = None

# %%
from IPython.display import Markdown, display

from clvsmim import claims
from clvsmim.analysis.position_ablation import position_ablation
from clvsmim.book.chapters import representation as ch
from clvsmim.book.chapters.common import chapter_profile
from clvsmim.book.figures import save_figure
from clvsmim.book.plots import representation as plots
from clvsmim.book import report
from clvsmim.book.report import display_name

cfg = chapter_profile(profile, images, source, data_root)  # official: Imagenette when no data_root
refs = ch.chapter_models(cfg, source)
names = [ref.name for ref in refs]
analyses = report.model_analyses(refs, device=device)
evaluations = ch.load_evaluations(refs, device)  # official models: the shape bias only
measured = ch.measurements(cfg, analyses, evaluations, device, source)
claim = {cid: claims.evaluate_claim(cid, measured) for cid in ("C3", "C4", "C5", "C6")}
geo = analyses[ch.CL]
display(Markdown(
    f"Profile **{cfg.name}** ({source} models): ViT with {geo['depth']} blocks, a {geo['grid'][0]}×{geo['grid'][1]} "
    f"token grid of {geo['patch_size']}-px patches; analyses on {geo['num_images']} evaluation images. "
    f"Models: {', '.join(display_name(n) for n in names)}."))

# %% [markdown]
# ## Tokens of one image cluster together under CL (F5)
#
# All patch tokens of up to 18 images from 3 classes (six per class; fewer when the book
# analyses fewer than 18 images), taken at the last depth and embedded in 2-D
# with t-SNE; colour = the class of the image a token comes from. In the paper CL's tokens
# form one tight cluster per image, while MIM's tokens of different images intermingle. The
# number in each title is the silhouette of the tokens grouped by *image* (cosine distance in
# the token space: 1 = perfectly separated images, 0 or below = intermingled).

# %%
tsne = {ref.name: ch.token_tsne_result(ref, device, seed=seed) for ref in refs if ref.name in (ch.CL, ch.MIM)}
fig = plots.plot_token_tsne(tsne, titles={ch.CL: f"CL — {display_name(ch.CL)}",
                                          ch.MIM: f"MIM — {display_name(ch.MIM)}"})
save_figure(fig, "F5", ch.tsne_record(tsne), models=list(tsne),
            caption=f"Token-level t-SNE of {tsne[ch.CL]['num_images']} images from 3 classes (last depth), CL vs MIM.")
display(Markdown(ch.tsne_paragraph(tsne, claim["C5"])))

# %% [markdown]
# C5 is measured on the analysis images (all of them, every depth cached), the t-SNE on the
# images chosen by class, so the two silhouettes differ slightly.
#
# ## CL keeps low frequencies, MIM high frequencies (F6)
#
# For the token map of every depth: the 2-D Fourier transform over the token grid, log
# amplitude averaged over images and channels, and the value at the highest frequency minus
# the value at frequency zero (Δ log amplitude). Higher means relatively more high-frequency
# content. The untrained control is dashed.

# %%
fourier = ch.token_depth_curves(analyses, "fourier.delta_log_amplitude")
fig = plots.plot_fourier(fourier)
save_figure(fig, "F6", fourier, models=names,
            caption="Fourier analysis: Δ log amplitude of the highest frequency per depth.")
display(Markdown(ch.fourier_paragraph(fourier, claim["C4"])))
if geo["grid"][0] <= 4:
    display(Markdown(f"With a {geo['grid'][0]}×{geo['grid'][1]} token grid the diagonal of the spectrum has only "
                     f"{geo['grid'][0] - geo['grid'][0] // 2} frequencies: the curve is coarse by construction."))

# %% [markdown]
# ### How much of depth 0 is the position embedding (A-position-ablation)
#
# At depth 0 a token is the patch projection of its image patch plus, for MoCo v3 and MAE, the
# fixed 2-D sin-cos position embedding (the official SimMIM ViT has none: it encodes position by
# a relative bias inside attention). That embedding is the same for every image and puts almost
# all of its energy at zero frequency, so it lowers the depth-0 Δ log amplitude by itself,
# whatever the objective learned. Each panel shows one model's depth-0 curve with and without the
# sin-cos embedding (its own marked): the gap is the part of F6's depth 0 that is architecture.

# %%
ablation = position_ablation(cfg, [n for n in names if n in ("moco", "simmim", "mae")], source=source, device="cpu")
fig = plots.plot_position_ablation(ablation)
save_figure(fig, "A-position-ablation", ablation, models=list(ablation),
            caption="Depth-0 Fourier Δ log amplitude with and without the fixed sin-cos position embedding.")

# %% [markdown]
# ## Homogeneity of the tokens of an image
#
# The mean cosine similarity between the patch tokens of one image, per depth. CL's image-level
# objective pulls every token towards the same global content, so the paper finds its tokens
# more homogeneous — less diverse — in the later layers (its attention collapses into
# homogeneity, so CL hardly adjusts the tokens of a single image); MIM's token-level objective
# keeps them diverse.

# %%
cosine = ch.token_depth_curves(analyses, "token_cosine")
fig = plots.plot_token_similarity(cosine)
save_figure(fig, "A-token-similarity", cosine, models=names,
            caption="Mean cosine similarity between the tokens of one image, per depth.")
display(Markdown(ch.cosine_paragraph(cosine, claim["C3"])))

# %% [markdown]
# ## Singular-value spectrum of the tokens
#
# The singular values of one image's token matrix (tokens × channels, centred), divided by the
# largest and averaged over images, at the last depth. Homogeneous tokens leave a few dominant
# directions (a steep spectrum); diverse tokens spread over many (a flat one).

# %%
spectra = ch.svd_spectra(analyses)
fig = plots.plot_svd_spectra(spectra)
save_figure(fig, "A-svd", ch.svd_record(spectra), models=names,
            caption="Normalised singular values of the tokens of one image at the last depth.")
display(Markdown(ch.svd_paragraph(spectra)))

# %% [markdown]
# ## Shape vs texture
#
# A linear probe on the final-depth features is trained on images where shape and texture
# agree (class *k*: shape *k* filled with texture *k*) and tested on cue-conflict images
# (shape *k* filled with the texture of another class). The shape bias is the fraction of its
# decisions that follow the shape rather than the texture. The paper's frequency result is about
# representations (CL's are low-frequency, MIM's high-frequency); from it, and from CL's global
# attention, the paper infers that CL is shape-oriented and MIM texture-oriented, as its abstract
# says. (One sentence of the official `naver-ai/cl-vs-mim` README states the reverse — CL texture,
# MIM shape; this book follows the paper.) On the official checkpoints (`source = "official"`)
# the same synthetic images are rendered at the model's resolution (the paper's Stylized-ImageNet
# images are not available offline) and only CL, MIM and the control are measured.

# %%
rows = ch.evaluation_rows(evaluations)
levels = ch.cue_probe_levels()
fig = plots.plot_shape_bias({n: rows[n]["shape_bias"] for n in rows}, ch.cue_hits(rows), **levels)
save_figure(fig, "A-shape-texture", {**ch.shape_texture_record(rows, list(rows)), "levels": levels},
            models=list(rows),
            caption="Left: shape bias on cue-conflict images (random-init control hatched). Right: the two "
                    "hit rates it is the ratio of, against chance and the level both cue probes of CL and "
                    "MIM must reach before the bias is read (C6).")
display(Markdown(ch.shape_paragraph(rows, claim["C6"])))

# %% [markdown]
# ## Robustness to low- vs high-frequency noise
#
# The same linear probe (trained on clean images) is tested on clean evaluation images and on
# images plus Gaussian noise restricted to low or to high spatial frequencies, with equal
# energy in both bands. A representation built on low frequencies should shrug off
# high-frequency noise, and vice versa.

# %%
if source == "zoo":
    fig = plots.plot_noise_robustness({n: rows[n] for n in names})
    save_figure(fig, "A-noise", ch.noise_record(rows, names), models=names,
                caption="Linear-probe accuracy: clean, + low-frequency noise, + high-frequency noise.")
    display(Markdown(ch.noise_paragraph({n: rows[n] for n in names}, ch.eval_size(cfg))))

# %% [markdown]
# ## What this chapter found
#
# The verdicts above use the definitions of `clvsmim.claims` (margins and the comparison with
# the untrained control are explained in the *summary* chapter); the same verdicts appear in
# the summary table.

# %%
display(Markdown("\n".join(f"- **{c.id}** {c.statement} — *{c.verdict}*" for c in claim.values())))
