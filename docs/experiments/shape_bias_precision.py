"""C6 at a higher precision: the shape bias of the mini zoo's S models on 8x more cue-conflict images.

The book's evaluation decides the shape bias from the ~350 of 1,024 cue-conflict images whose
prediction follows either cue (binomial standard error ~0.027). This re-measures it with the same
probe recipe on ``--train`` aligned and ``--conflict`` cue-conflict images for every seed's CL
(MoCo v3), MIM (SimMIM) and untrained control, and prints CL − MIM with its standard error.

    CLVSMIM_CACHE=.cache/clvsmim-retrain python docs/experiments/shape_bias_precision.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import math

import torch

from clvsmim.train import zoo
from clvsmim.config import load_profile, seed_profile
from clvsmim.data import render_style
from clvsmim.evaluation import shape_bias_standard_error, shape_texture_bias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train", type=int, default=8192, help="aligned images the probe is trained on")
    ap.add_argument("--conflict", type=int, default=8192, help="cue-conflict images it is tested on")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_profile(args.profile)
    rows = []
    for seed in args.seeds:
        profile = seed_profile(base, seed)
        size = zoo.default_size(profile)
        res = {}
        for role, name in (("cl", f"moco-{size}"), ("mim", f"simmim-{size}"), ("control", f"random-{size}")):
            encoder = zoo.load(profile, name)
            grid = encoder.patch_embed.grid_size[0] * encoder.patch_embed.patch_size[0]
            r = shape_texture_bias(encoder, profile.eval, grid, seed=profile.data.seed,
                                   sizes=(args.train, args.conflict), **render_style(profile.data))
            r["standard_error"] = shape_bias_standard_error(r["shape_bias"], r["num_decided"])
            res[role] = r
            print(f"seed {seed} {name:10s} shape bias {r['shape_bias']:.3f} ± {r['standard_error']:.3f} "
                  f"(n = {r['num_decided']}; shape {r['shape_acc']:.3f}, texture {r['texture_acc']:.3f})", flush=True)
        diff = res["cl"]["shape_bias"] - res["mim"]["shape_bias"]
        se = math.hypot(res["cl"]["standard_error"], res["mim"]["standard_error"])
        print(f"seed {seed}: CL − MIM {diff:+.3f} ± {se:.3f} ({diff / se:+.1f} standard errors)", flush=True)
        rows.append({"seed": seed, **res, "cl_minus_mim": diff, "difference_se": se})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"profile": base.name, "train": args.train, "conflict": args.conflict, "seeds": rows}, f, indent=1)


if __name__ == "__main__":
    main()
