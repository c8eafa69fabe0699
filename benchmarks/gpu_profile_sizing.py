"""Size the ``gpu`` profile: the models with no official checkpoint on ONE GPU in ≤ 2 h.

COMPUTED, NOT MEASURED. Starts from the images/s measured on one H100 for ViT-B/16 at 224 px
(README, "Speed on a GPU", bf16, batch 128) and scales each objective by the ratio of forward
FLOPs per image (ViT-B/16 @ 224 → the profile's ViT @ its resolution), times ``--efficiency``
(the fraction of the ViT-B MFU a smaller model keeps; default 0.5, an assumption). Then adds up
the training of every model of the profile's zoo (for ``gpu`` its ``models:`` list: the λ sweep
(F9, C8) and the size trend (C11), nothing else), plus a flat
allowance for the evaluations, and prints the expected wall time.
Usage: ``python benchmarks/gpu_profile_sizing.py [--profile gpu] [--efficiency 0.5]``.
"""
from __future__ import annotations

import argparse

from clvsmim.config import load_profile, train_config_for
from clvsmim.train.zoo import zoo_specs

#: bf16 images/s of ViT-B/16 at 224 px on one H100 80GB, measured (README table).
H100_VIT_B_224 = {"moco": 817.0, "simmim": 2156.0, "mae": 2519.0, "hybrid": 602.0}


def forward_flops(img_size: int, patch: int, dim: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs (2 × multiply-adds) of one image through a ViT's blocks (CLS token included)."""
    n = (img_size // patch) ** 2 + 1
    macs = depth * (n * (4 * dim * dim + 2 * mlp_ratio * dim * dim) + 2 * n * n * dim)
    return 2.0 * macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--efficiency", type=float, default=0.5)
    parser.add_argument("--eval-minutes", type=float, default=15.0, help="allowance for all evaluations")
    args = parser.parse_args()
    p = load_profile(args.profile)
    base = forward_flops(224, 16, 768, 12)
    # every model the profile's zoo trains (its `models:` list: the λ sweep and the size trend)
    runs = [(spec.name, spec.objective, spec.model_cfg) for spec in zoo_specs(p) if spec.trains]
    total = 0.0
    print(f"profile {p.name}: {p.model.img_size} px; H100 ViT-B/16@224 images/s × FLOP ratio × {args.efficiency}")
    print(f"{'model':<12} {'objective':<8} {'width':>5} {'img/s':>8} {'steps×batch':>14} {'minutes':>8}")
    for label, obj, m in runs:
        t = train_config_for(p, obj if obj != "hybrid" else "hybrid")
        ratio = base / forward_flops(m.img_size, m.patch_size, m.embed_dim, m.depth, m.mlp_ratio)
        ips = H100_VIT_B_224[obj] * ratio * args.efficiency
        seconds = t.steps * t.batch_size / ips
        total += seconds
        print(f"{label:<12} {obj:<8} {m.embed_dim:>5} {ips:>8.0f} {t.steps:>6}×{t.batch_size:<7} {seconds / 60:>8.1f}")
    total += 60 * args.eval_minutes
    print(f"training + {args.eval_minutes:g} min of evaluations: {total / 60:.0f} min on one H100 (computed)")


if __name__ == "__main__":
    main()
