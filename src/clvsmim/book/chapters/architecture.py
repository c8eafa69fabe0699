"""Data behind the *architecture* chapter: F7 (linear probe of every depth) and F8 (Fourier
analysis of MAE through its encoder AND its decoder, with a reconstruction strip).

F8 needs the whole MAE objective, not only the encoder the rest of the book loads:
:func:`mae_objective` rebuilds it with :func:`clvsmim.objectives.build_objective` and loads
the zoo checkpoint's ``model`` state (encoder + decoder), or, with ``source="official"``,
loads the official visualisation checkpoint (encoder + decoder) through
:func:`clvsmim.weights.load_mae_objective`.

The two halves of the F8 curve are measured the way each part is used:

* **encoder** depths ``0..L``: the plain encoder on the *full* images (no masking), exactly
  as every other Fourier curve of the book (F6) — the representation a downstream task sees;
* **decoder** depths: the decoder's input embedding (encoder output of the *visible* tokens
  plus mask tokens, with position embedding) and the output of every decoder block, for the
  images masked with the profile's MAE ratio (``decoder_hidden_states``) — the decoder only
  ever runs on masked inputs. All ``1 + N`` decoder tokens (mask tokens included, CLS
  dropped) form the token grid of the Fourier transform.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from clvsmim.analysis import FourierSums, analyze
from clvsmim.analysis.collectors import Batch
from clvsmim.book.chapters.common import compare_sentence, eval_size, fmt_number
from clvsmim.claims import PROBE_POOL
from clvsmim.data import open_dataset
from clvsmim.data.augment import normalize
from clvsmim.methods import display_name
from clvsmim.models import Captured, geometry
from clvsmim.objectives import build_objective
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_objective_state
from clvsmim.weights import load_mae_objective

__all__ = ["linear_probe_summary", "cls_probe_record", "probe_table", "mae_objective", "mae_fourier", "reconstruction_strip", "fourier_summary",
           "chance_level", "probe_sentences", "fourier_sentences", "claim_pools", "eval_size"]


# --------------------------------------------------------------------------- F7

def linear_probe_summary(evals: Mapping[str, Mapping[str, Any]], late: int | None = None,
                         key: str = "linear_probe") -> dict[str, dict[str, Any]]:
    """Per model (short name -> :func:`clvsmim.train.zoo.evaluations` result): ``depth`` (0..L),
    ``accuracy`` (% per depth), ``best_depth`` (the deepest among equal bests), ``best``,
    ``final``, ``drop`` = best − final (percentage points the last blocks lose) and
    ``best_in_late_blocks``: whether the best depth is one of the last ``late`` blocks
    (default ``max(1, L // 3)``). ``key``: which probe — ``"linear_probe"`` (mean-pooled) or
    ``"linear_probe_cls"`` (the normed CLS token; models without one are left out)."""
    out = {}
    for name, res in evals.items():
        per = (res.get(key) or {}).get("per_layer")
        if not per:
            continue
        acc = [100.0 * float(v) for v in per]
        depth = len(acc) - 1
        k = late if late is not None else max(1, depth // 3)
        best = int(max(range(len(acc)), key=lambda d: (acc[d], d)))
        out[name] = {"depth": list(range(len(acc))), "accuracy": acc, "best_depth": best, "best": acc[best],
                     "final": acc[-1], "drop": acc[best] - acc[-1], "late_blocks": k,
                     "best_in_late_blocks": best > depth - k}
    return out


def cls_probe_record(cls_summary: Mapping[str, Mapping[str, Any]],
                     cls_control: Mapping[str, Any] | None) -> dict[str, Any]:
    """F7's JSON keys for the normed-CLS probes, beside the mean-pooled ``curves`` / ``control``:
    ``curves_cls``, ``control_cls``, ``pool_cls`` and ``claims_pool`` (the pooling each role of
    C7 / C9 reads, :data:`clvsmim.claims.PROBE_POOL`)."""
    return {"curves_cls": dict(cls_summary), "control_cls": cls_control, "pool_cls": "cls_norm",
            "claims_pool": dict(PROBE_POOL)}


def claim_pools() -> dict[str, str]:
    """Model -> the probe pooling its claims read (C7 / C9: MoCo v3's normed CLS token, SimMIM's
    mean-pooled tokens; :data:`clvsmim.claims.PROBE_POOL`)."""
    return {"moco": PROBE_POOL["cl"], "simmim": PROBE_POOL["mim"]}


def probe_table(summary: Mapping[str, Mapping[str, Any]], cls_summary: Mapping[str, Mapping[str, Any]] | None = None):
    """F7 as a DataFrame: accuracy (%) per depth (rows), one column per model (display name),
    and ``<model> (normed CLS)`` beside it where ``cls_summary`` has the model."""
    import pandas as pd  # lazy: a DataFrame view, only the chapter shows it
    columns: dict[str, list[float]] = {}
    for name, s in summary.items():
        columns[display_name(name)] = s["accuracy"]
        if cls_summary and name in cls_summary:
            columns[f"{display_name(name)} (normed CLS)"] = cls_summary[name]["accuracy"]
    depth = next(iter(summary.values()))["depth"] if summary else []
    return pd.DataFrame(columns, index=pd.Index(depth, name="depth"))


# --------------------------------------------------------------------------- F8

def mae_objective(profile, source: str = "zoo", device: str | torch.device = "cpu"):
    """The whole MAE objective (encoder + decoder, eval mode) on ``device``.

    ``source="zoo"``: :func:`clvsmim.objectives.build_objective` with the zoo model's encoder
    config, then the checkpoint's ``model`` state (strict). ``source="official"``: the
    official visualisation checkpoint (:func:`clvsmim.weights.load_mae_objective`) with the
    profile's mask ratio.
    """
    if source == "official":
        return load_mae_objective(mask_ratio=profile.mae.mask_ratio).to(device).eval()
    if source != "zoo":
        raise ValueError(f"source must be 'zoo' or 'official', got {source!r}")

    spec = zoo.resolve(profile, "mae")
    path = zoo.model_dir(profile, "mae") / zoo.CHECKPOINT_NAME
    if not zoo.is_built(profile, spec):
        raise FileNotFoundError(f"zoo model mae ({spec.key}) is not built: run "
                                f"`clvsmim zoo build --profile {profile.name} --only mae`")
    objective = build_objective("mae", profile, model_cfg=spec.model_cfg)
    load_objective_state(objective, path)
    return objective.to(device).eval()


@torch.no_grad()
def mae_fourier(mae, images_uint8: torch.Tensor, seeds: torch.Tensor, mask_ratio: float | None = None,
                batch_size: int = 64) -> dict[str, Any]:
    """Fourier Δ log amplitude (highest frequency) of MAE through encoder and decoder depths.

    Encoder: hidden states ``0..L`` of ``mae.encoder`` on the full images; decoder: the
    ``1 + D`` states of :meth:`MAE.decoder_hidden_states` on the images masked with
    ``mask_ratio`` (default: the objective's) from per-image ``seeds``. Averaged over images
    like :func:`clvsmim.analysis.analyze` (mean log amplitude, then minus the centre).
    Returns ``encoder`` (``L+1``), ``decoder`` (``D+1``), the full ``*_curves`` and ``mask_ratio``.
    """
    ratio = mae.cfg.mask_ratio if mask_ratio is None else float(mask_ratio)
    device = next(mae.parameters()).device
    starts = range(0, len(images_uint8), batch_size)
    if not starts:
        raise ValueError("mae_fourier: no images")
    batches = (normalize(images_uint8[i:i + batch_size].to(device)) for i in starts)
    enc = analyze(mae.encoder, batches, {"fourier": FourierSums()}, device=device)["fourier"]
    decoder = FourierSums()  # decoder tokens: CLS + all N (mask tokens included)
    decoder.start(replace(geometry(mae.encoder), num_prefix_tokens=1, depth=len(mae.decoder.blocks)))
    for i in starts:
        x = images_uint8[i:i + batch_size].to(device)
        s = torch.as_tensor(seeds[i:i + batch_size], dtype=torch.int64, device=device)
        decoder.update(Captured(hidden_states=mae.decoder_hidden_states(x, s, ratio)), Batch(x, None, i))
    dec, count = decoder.result(), decoder.num_images
    return {"encoder": enc[:, -1].tolist(), "decoder": dec[:, -1].tolist(), "encoder_curves": enc.tolist(),
            "decoder_curves": dec.tolist(), "mask_ratio": ratio, "num_images": count}


@torch.no_grad()
def reconstruction_strip(mae, images_uint8: torch.Tensor, seeds: torch.Tensor,
                         mask_ratio: float | None = None) -> dict[str, np.ndarray]:
    """``masked`` / ``reconstruction`` / ``original`` images ``k×H×W×3`` in [0, 1] (:meth:`MAE.reconstruct`)."""
    device = next(mae.parameters()).device
    rec = mae.reconstruct(images_uint8.to(device), torch.as_tensor(seeds, dtype=torch.int64, device=device),
                          mask_ratio)
    return {k: v.permute(0, 2, 3, 1).clamp(0, 1).float().cpu().numpy() for k, v in rec._asdict().items()}


def fourier_summary(fourier: Mapping[str, Any], simmim_encoder: Sequence[float] | None = None) -> dict[str, float]:
    """Numbers the F8 prose quotes: mean encoder / decoder Δ log amplitude, the jump at the
    encoder → decoder boundary, and the mean SimMIM encoder value over the last blocks."""
    enc, dec = list(fourier["encoder"]), list(fourier["decoder"])
    out = {"encoder_mean": float(np.mean(enc[1:])) if len(enc) > 1 else float(enc[0]),
           "decoder_mean": float(np.mean(dec[1:])) if len(dec) > 1 else float(dec[0]),
           "encoder_last": float(enc[-1]), "decoder_last": float(dec[-1]),
           "decoder_first": float(dec[0])}
    if simmim_encoder is not None and len(simmim_encoder):
        k = max(1, (len(simmim_encoder) - 1) // 2)
        out["simmim_late_mean"] = float(np.mean(list(simmim_encoder)[-k:]))
        out["mae_late_mean"] = float(np.mean(enc[-k:]))
    return out


# --------------------------------------------------------------------------- prose

def chance_level(profile) -> float | None:
    """Chance accuracy (%) of the evaluation classes, or ``None`` when unknown."""
    try:
        n = int(open_dataset(profile.data, "eval").num_classes)
    except (OSError, ValueError, AttributeError):
        return None
    return 100.0 / n if n > 0 else None


def probe_sentences(summary: Mapping[str, Mapping[str, Any]], cl: str = "moco", mim: str = "simmim",
                    mae: str = "mae", cls_summary: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """F7: per model its best depth and the drop over the last blocks (mean-pooled; on the
    normed CLS token too where ``cls_summary`` has the model), then the paper's two findings
    checked on the mean-pooled probes: CL's best depth is deeper than SimMIM's, and SimMIM loses
    more over its last blocks than CL (and than MAE, whose decoder takes over the reconstruction)."""

    def line(name: str, s: Mapping[str, Any], on: str) -> str:
        return (f"{display_name(name)}{on}: best depth {s['best_depth']} of {s['depth'][-1]} "
                f"({s['best']:.1f} %), last block {s['final']:.1f} % ({s['drop']:.1f} points below its best).")

    out = []
    for name, s in summary.items():
        out.append(line(name, s, ""))
        if cls_summary and name in cls_summary:
            out.append(line(name, cls_summary[name], " on its normed CLS token"))
    if cl in summary and mim in summary:
        out.append(compare_sentence("best probing depth", display_name(cl), summary[cl]["best_depth"],
                                    display_name(mim), summary[mim]["best_depth"], ">", "", 0))
        out.append(compare_sentence("accuracy lost between the best depth and the last block", display_name(mim),
                                    summary[mim]["drop"], display_name(cl), summary[cl]["drop"], ">", "points", 1))
    if mae in summary and mim in summary:
        out.append(compare_sentence("accuracy lost between the best depth and the last block", display_name(mim),
                                    summary[mim]["drop"], display_name(mae), summary[mae]["drop"], ">", "points", 1))
    return out


def fourier_sentences(summary: Mapping[str, float]) -> list[str]:
    """F8: the paper's point — MAE's decoder carries less high-frequency amplitude than its
    encoder (its reconstructions are blurred) — checked, with what each curve is run on; and
    SimMIM's late encoder blocks next to MAE's, described but not scored: the paper makes no
    claim about their order."""
    out = [compare_sentence("mean Δ log amplitude: encoder blocks on full images vs decoder blocks on the masked "
                            "input plus mask tokens (the decoder's input embedding left out)", "the MAE encoder",
                            summary["encoder_mean"], "the MAE decoder", summary["decoder_mean"], ">", "", 2)]
    if "simmim_late_mean" in summary:
        out.append(f"For reference, not a finding of the paper: the late encoder blocks' mean Δ log amplitude is "
                   f"{fmt_number(summary['simmim_late_mean'])} for SimMIM and {fmt_number(summary['mae_late_mean'])} "
                   f"for MAE. The paper does not order the two (in its MAE Fourier figure their late encoder curves "
                   f"nearly coincide); its point there is MAE's encoder against MAE's decoder.")
    return out
