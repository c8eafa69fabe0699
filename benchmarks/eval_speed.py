"""Speed of :func:`clvsmim.evaluation.evaluate_model`'s frozen evaluations: one shared pass per split
against one pass per consumer.

An untrained encoder of a profile's CL family (``--objective``; fine-tuning off, it does not share
features) on the profile's synthetic data, optionally subsampled (``--train`` / ``--eval`` images):

* shared   — ``evaluate_model(..., finetune_model=False)``: ONE frozen pass over each split feeds
  the linear probes (every depth, both poolings), the dense probe's tokens and the clean features
  of the noise probe; only the noisy copies and the cue-conflict images get their own passes;
* separate — the same evaluations as the standalone functions, each running its own passes
  (``linear_probes``, ``dense_probe``, ``shape_texture_bias``, ``noise_robustness``: the layout
  before session 19).

Prints the median wall time of ``--repeats`` rounds (each round times both, so machine load hits
both), the ratio, and whether every number agrees exactly.
Usage: ``python benchmarks/eval_speed.py [--profile mini] [--train 4096 --eval 2048] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from clvsmim import evaluation as E
from clvsmim.cache import json_safe
from clvsmim.config import load_profile
from clvsmim.data import open_dataset, render_style
from clvsmim.families import objective_model_config
from clvsmim.models import build_vit, geometry


def separate(encoder, profile) -> dict:
    """The frozen evaluations of ``evaluate_model``, each by its standalone function."""
    data_cfg, cfg = profile.eval_data(), profile.eval
    train_set, eval_set = open_dataset(data_cfg, "train"), open_dataset(data_cfg, "eval")
    geo = geometry(encoder)
    pools = ("mean", "cls_norm") if geo.num_prefix_tokens else ("mean",)
    probes = E.linear_probes(encoder, train_set, eval_set, cfg, pools)
    sizes = (min(E.SHAPE_TEXTURE_SIZES[0], data_cfg.num_train), min(E.SHAPE_TEXTURE_SIZES[1], data_cfg.num_eval))
    return {"linear_probe": probes["mean"], "linear_probe_cls": probes.get("cls_norm"),
            "dense_probe": E.dense_probe(encoder, train_set, eval_set, cfg),
            "shape_texture": E.shape_texture_bias(encoder, cfg, geo.grid[0] * geo.patch_size, seed=profile.data.seed,
                                                  sizes=sizes, **render_style(profile.data)),
            "noise": E.noise_robustness(encoder, train_set, eval_set, cfg)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--objective", default="moco")
    parser.add_argument("--train", type=int, default=4096, help="training images (default 4096; 0 = the profile's)")
    parser.add_argument("--eval", type=int, default=2048, help="evaluation images (default 2048; 0 = the profile's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    profile = load_profile(args.profile)
    data = dataclasses.replace(profile.eval_data(), num_train=args.train or profile.data.num_train,
                               num_eval=args.eval or profile.eval_data().num_eval)
    profile = dataclasses.replace(profile, data=data, eval=dataclasses.replace(profile.eval, num_images=None))
    torch.manual_seed(0)
    encoder = build_vit(objective_model_config(profile, args.objective)).eval()

    times: dict[str, list[float]] = {"shared": [], "separate": []}
    results = {}
    for _ in range(args.repeats):
        for name, run in (("shared", lambda: E.evaluate_model(encoder, profile, finetune_model=False)),
                          ("separate", lambda: separate(encoder, profile))):
            t0 = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - t0)

    shared = {k: results["shared"][k] for k in results["separate"]}
    same = json.dumps(shared, sort_keys=True) == json.dumps(json_safe(results["separate"]), sort_keys=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"profile {profile.name}, {args.objective} encoder, {data.num_train} training / {data.num_eval} "
          f"evaluation images, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'layout':<10} {'wall s':>8}")
    for k in ("separate", "shared"):
        print(f"{k:<10} {med[k]:8.2f}")
    print(f"separate / shared: {med['separate'] / med['shared']:.2f}x; every number identical: {same}")
    print("shared breakdown (s):", results["shared"]["timing_s"])


if __name__ == "__main__":
    main()
