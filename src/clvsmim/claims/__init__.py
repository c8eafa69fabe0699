"""The paper's findings as checked claims: a statistic, a comparison and a verdict each.

Every claim is a function of one :class:`Measurements` bundle — the cached analyses
(:func:`clvsmim.book.report.model_analysis`) and evaluations (:func:`clvsmim.train.zoo.evaluations`) of
the CL model (MoCo v3), the MIM model (SimMIM), the randomly initialised **control** of the
same architecture and the λ sweep of hybrids — and returns a :class:`Claim`: the statistic
for CL, MIM and the control, a signed ``value`` (positive = the ordering the paper states),
and a verdict. :func:`claims_table` repeats this for several training seeds and aggregates.

The claims
----------
======  ==================  ===========================================================  ==========
id      row                 statistic                                                    direction
======  ==================  ===========================================================  ==========
C1      self-attention      mean attention distance (px), mean over the last third of    CL > MIM
                            the blocks (the last ``ceil(L/3)`` blocks)
C2      self-attention      attention NMI, same blocks                                   CL < MIM
C3      representation      token cosine similarity within an image, mean over the       CL > MIM
                            block outputs 1..L (depth 0, the embeddings, left out)
C4      representation      Fourier Δ log amplitude of the highest frequency, mean       CL < MIM
                            over every depth 0..L
C5      representation      silhouette (cosine) of the patch tokens grouped by image     CL > MIM
                            id, at the last depth L, on the analysis images
C6      self-attention      shape bias on the cue-conflict split (shape decisions /      CL > MIM
                            (shape + texture decisions)), final-depth linear probe
C7      architecture        depth of the best linear probe: the last block for CL         see below
                            (within the margin), and MIM's accuracy drops over its last
                            blocks (``max_{d<L} acc_d − acc_L`` > margin)
C8      CL + MIM            ``max_{0<λ<1} min(Δ linear probe, Δ fine-tune)`` where Δ is  ≥ 0
                            the hybrid's accuracy minus the better of λ = 0 and λ = 1
C9      behaviour           final-depth linear-probe accuracy                            CL > MIM
C10     behaviour           fine-tuning accuracy                                         CL < MIM
C11     behaviour           fine-tuning gain from the smallest to the largest size of    CL < MIM
                            ``profile.sizes`` (needs two sizes; "inconclusive" without)
======  ==================  ===========================================================  ==========

The control
-----------
An untrained ViT already sits at one end of several scales (its attention is nearly uniform:
global and collapsed, NMI ≈ 0). An ordering "CL > MIM" is therefore only evidence for the
paper when the trained models moved away from the control **in the stated direction**. With
``s = +1`` for "CL > MIM" and ``−1`` for "CL < MIM", margin ``m`` (:data:`MARGINS`):

* *ordered*: ``s·(CL − MIM) > m`` (this signed difference is the claim's ``value``);
* *CL moved*: ``s·(CL − control) > m`` — CL went further to its own side than the control;
* *MIM moved*: ``s·(control − MIM) > m`` — MIM went further to its own side.

Each claim says which movement it needs (:data:`CONTROL_RULE`):

* C1, C2 — ``"mim"``: the control already has global, collapsed attention, so these claims
  hold only if MIM moved away from it towards local attention / high NMI *and* CL stays on
  the global / collapsed side of MIM (the ordering). A CL that is merely as global as an
  untrained net is fine; a MIM that never left the control is not a finding.
* C9 — ``"cl"``: CL's linear-probe accuracy must beat the control's (a random net is a
  linear-probe baseline); C10, C11 — ``"mim"``: MIM's fine-tuning accuracy (of the largest
  size for C11) must beat fine-tuning the control from scratch — the untrained encoder of MIM's
  *own* architecture where the profile's families give MIM another encoder than CL's
  (``faithful``: ``random-simmim-<size>``, roles ``control-mim`` / ``control-mim-large``, and
  ``control-cl`` should CL get one; :func:`clvsmim.train.zoo.architecture_control`), since
  pretraining is measured against the same net untrained. C10 records each model's gain over
  its own untrained architecture.
* C3, C4, C5, C6 — ``"either"``: where the control lies is not known a priori, so at least one
  of the two trained models must have moved away from it towards its own side.
* C7 — CL's last-block probe must beat the control's last-block probe, and MIM's best
  probe must beat the control's probe at that depth (the profile of accuracies over depth is
  learned, not inherited from the initialisation).
* C8 — the winning hybrid must beat the control on both linear probing and fine-tuning.

Which representation a probe reads (:data:`PROBE_POOL`): in C7 and C9 each model is probed on
the representation its method was trained for — CL (MoCo v3) on the normed CLS token
(``linear_probe_cls``), MIM (SimMIM) on mean-pooled patch tokens (``linear_probe``) — and the
control on the pooling of the model it is compared with; without a normed-CLS probe (old caches,
the official models of the paper book) the mean-pooled probe is read, and the reason says so.
C8 probes every λ mean-pooled.

Uncertainty and verdicts
------------------------
Every statistic carries a standard error (:mod:`clvsmim.uncertainty`): a paired bootstrap over
the analysis images for C1–C5 (per-image values from :func:`clvsmim.claims.per_image.per_image_statistics`),
for C7–C11 the SE of an accuracy contrast paired over the evaluation images (every model is
evaluated on the same images; the per-image correctness its evaluation records), or the
binomial SE as if the accuracies came from different images where an evaluation has no
per-image record (an old cache); for C6 the binomial SE of the shape bias on its decided images. A seed's verdict, with ``t = max(margin, 2·SE)`` of the
difference at hand:

* ``"holds"``: ``s·(CL − MIM) > t`` and the control rule is met beyond its own ``t``;
* ``"reversed"``: ``s·(CL − MIM) < −t`` (the opposite ordering, beyond noise);
* ``"tie"``: anything else — the ordering is within noise or the margin, or it is there but the
  model the rule names did not leave the control beyond noise (no effect of training);
* ``"not measurable"``: a precondition fails (C6: both cue probes of CL and MIM must reach
  twice chance before a bias ratio is read), with the reason;
* ``"inconclusive"``: a number is missing or not finite.

Without an SE (old caches, hand-made inputs) ``t`` is the margin alone and the reason says so.
Tables recorded before this rule carry ``"fails"`` (ordered the wrong way *or* not at all) and
no SEs; they load and print as recorded. Across seeds (:func:`aggregate`): the same verdict on
every seed → that verdict; anything else → ``inconclusive``.

Seeds
-----
The seed of a claim is the zoo's *training* seed: :func:`seed_profile` replaces
``profile.train.seed`` (and any per-objective override of it); the data, and so the
analysis images and the evaluation splits, stay fixed. The control is re-initialised from
the same seed. The profile's own seed reuses the book's zoo.

Command line: ``clvsmim claims --profile P [--seeds N] [--data PATH] [--out FILE.json]``;
``clvsmim claims --show FILE.json [--markdown]`` prints a saved table again.

Modules: :mod:`~clvsmim.claims.definitions` (verdicts, margins, control rules, claim records),
:mod:`~clvsmim.claims.verdict` (what a claim reads, the shared ordering rule),
:mod:`~clvsmim.claims.rules` (C1–C11), :mod:`~clvsmim.claims.table` (across seeds, the record),
:mod:`~clvsmim.claims.measure` (measuring a zoo), :mod:`~clvsmim.claims.per_image` (the per-image
values behind the standard errors of C1–C5).
"""
from __future__ import annotations

from clvsmim.cache import cached_json
from clvsmim.claims.definitions import (C6_MIN_CUE_OVER_CHANCE, CONTROL_RULE, INFO, MARGINS, POOL_WORDS, PROBE_KEY,
                                        PROBE_POOL, ROWS, VERDICT_MARKS, VERDICTS, Claim, ClaimInfo, missing_claim)
from clvsmim.claims.measure import (CLUSTER_FORMAT, claims_table, measure, model_cache_path, model_names,
                                    token_cluster_scores)
from clvsmim.claims.per_image import PER_IMAGE_FORMAT, PerImageMetrics, per_image_statistics
from clvsmim.claims.markdown import claim_markdown, with_claim
from clvsmim.claims.rules import (CLAIMS, evaluate_claim, evaluate_claims, c1_attention_distance,
                                  c2_nmi, c3_token_cosine, c4_fourier, c5_image_clusters, c6_shape_bias, c7_layers,
                                  c8_hybrid, c9_linear_probe, c10_finetune, c11_scaling)
from clvsmim.claims.table import ClaimSummary, ClaimsTable, aggregate, seeds_for
from clvsmim.claims.verdict import Measurements, last_third
from clvsmim.config import seed_profile

__all__ = [
    "VERDICTS", "MARGINS", "CONTROL_RULE", "PROBE_POOL", "PROBE_KEY", "POOL_WORDS", "ROWS", "ClaimInfo", "Claim", "with_claim", "ClaimSummary", "ClaimsTable",
    "Measurements",
    "CLAIMS", "evaluate_claims", "evaluate_claim", "claim_markdown", "aggregate", "last_third", "seed_profile",
    "seeds_for",
    "model_names", "measure", "claims_table", "model_cache_path", "cached_json", "token_cluster_scores",
    "C6_MIN_CUE_OVER_CHANCE", "INFO", "VERDICT_MARKS", "CLUSTER_FORMAT", "c1_attention_distance", "c2_nmi",
    "c3_token_cosine", "c4_fourier", "c5_image_clusters", "c6_shape_bias", "c7_layers", "c8_hybrid",
    "c9_linear_probe", "c10_finetune", "c11_scaling", "missing_claim", "PER_IMAGE_FORMAT", "PerImageMetrics",
    "per_image_statistics",
]
