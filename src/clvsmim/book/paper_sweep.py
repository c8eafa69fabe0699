"""What has no official checkpoint — the λ sweep (F9, C8) and the size trend (C11) — in the paper book.

Those models are trained once on one GPU by the GPU-sized profile (``gpu``: its ``models:`` list
is exactly the sweep and the size trend, :func:`clvsmim.train.zoo.zoo_specs`). The paper book
never trains them: it reads that zoo when it is built on the same images (:func:`built_sweep`),
measures C8 / C11 on it (:func:`sweep_claims`) and says where the models came from
(:func:`sweep_description`, :func:`sweep_note`); without it a chapter shows the paper's numbers
and one line saying what to train (:func:`needs_training_note`).
"""
from __future__ import annotations

from typing import Any

from clvsmim import claims
from clvsmim.config import load_profile
from clvsmim.train import zoo

__all__ = ["SWEEP_PROFILE", "NEEDS_TRAINING", "GPU_NOTE", "needs_training_note", "built_sweep",
           "sweep_description", "sweep_note", "sweep_claims"]

#: The profile whose zoo holds what has no official checkpoint (the λ sweep, the size trend).
SWEEP_PROFILE = "gpu"
#: Claims whose models have no official checkpoint: they need training.
NEEDS_TRAINING = {"C8": "the hybrid λ sweep", "C11": "ViT-Ti/S/B of CL and MIM (the size trend)"}
GPU_NOTE = "needs the GPU-sized profile"


def needs_training_note(what: str, sweep_profile: str = SWEEP_PROFILE, data_root: str | None = None) -> str:
    """The one line a chapter shows where its models would need GPU training."""
    return (f"*{what} {GPU_NOTE}: these models have no official checkpoint; train them once on one GPU "
            f"(`clvsmim zoo build --profile {sweep_profile} --data {data_root or 'DATA'}`, the λ sweep and the "
            f"size trend only) and run the book again. Shown instead: the paper's numbers.*")


def built_sweep(sweep_profile: str | None, data_root: str | None = None, images: int | None = None):
    """The profile ``sweep_profile`` on ``data_root`` (analysis count ``images``) when every model
    of its zoo is built — the λ sweep (F9, C8) and the size trend (C11) — else ``None``."""
    if not sweep_profile:
        return None
    cfg = load_profile(sweep_profile, images).with_data_root(data_root)
    specs = zoo.zoo_specs(cfg)
    return cfg if specs and all(zoo.is_built(cfg, spec) for spec in specs) else None


def sweep_description(sweep) -> str:
    """Where the sweep's models came from, in words: ``GPU-sized profile gpu (ViT-S/16 at 160 px, …)``."""
    m = sweep.model
    sizes = "/".join(sweep.sizes) or "default"
    return (f"GPU-sized profile {sweep.name} (λ sweep at {m.img_size} px, patch {m.patch_size}, width "
            f"{m.embed_dim}; sizes {sizes}; {sweep.train.steps} steps × {sweep.train.batch_size} images)")


def sweep_note(source: str, sweep, what: str, sweep_profile: str = SWEEP_PROFILE,
               data_root: str | None = None) -> str:
    """The paragraph a chapter appends about where its sweep comes from: nothing for the zoo's
    own models, the GPU-sized profile when its zoo is built, else :func:`needs_training_note`."""
    if source == "zoo":
        return ""
    if sweep is not None:
        return (f"\n\n*{what}: no official checkpoint exists, so these models come from the "
                f"{sweep_description(sweep)}, trained on the same images (`{data_root}`).*")
    return "\n\n" + needs_training_note(what, sweep_profile, data_root)


def sweep_claims(sweep, device: str = "auto") -> dict[str, Any]:
    """C8 and C11 measured on the built zoo of the GPU-sized profile ``sweep`` (its data root
    resolved; nothing trained here): ``{"C8": Claim, "C11": Claim}``."""
    m = claims.measure(sweep, device, build=False, missing="skip")
    return {cid: claims.evaluate_claim(cid, m) for cid in NEEDS_TRAINING}
