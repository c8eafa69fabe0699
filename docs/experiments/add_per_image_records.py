"""Bring format-2 evaluations of a built zoo to format 3 without re-running what did not change.

Format 3 (``clvsmim.train.zoo.EVAL_FORMAT``) adds which evaluation images every linear probe and
the fine-tune get right (the records the claims' paired standard errors read). Those come from
the same deterministic probes and fine-tune as format 2, so this script re-runs only those two,
checks that every accuracy equals the cached one bit for bit (it refuses to write otherwise), and
writes the format-3 file next to the old one; the dense probe, shape bias and noise results are
copied. A fresh cache needs none of this: ``clvsmim claims`` evaluates in format 3.

Usage::

    CLVSMIM_CACHE=<cache> python docs/experiments/add_per_image_records.py --profile mini3 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json

import torch

from clvsmim.analysis.probe import accuracy_of
from clvsmim.cache import write_json_atomic
from clvsmim.claims.measure import model_names
from clvsmim.config import load_profile, seed_profile
from clvsmim.data import open_dataset
from clvsmim.evaluation import finetune_correct, finetune_precision, linear_probes
from clvsmim.models import geometry
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_encoder
from clvsmim.uncertainty import pack_correct


def upgrade(profile, spec) -> str:
    new, old = zoo.eval_path(profile, spec), zoo.eval_path(profile, spec, eval_format=2)
    if new.exists():
        return "already format 3"
    if not old.exists():
        return "no format-2 evaluation"
    cached = json.loads(old.read_text())
    encoder = load_encoder(zoo.spec_dir(profile, spec) / zoo.CHECKPOINT_NAME)
    data = profile.with_data_root(spec.data_cfg.root)
    train_set, eval_set = open_dataset(data.data, "train"), open_dataset(data.data, "eval")
    pools = ("mean", "cls_norm") if geometry(encoder).num_prefix_tokens else ("mean",)
    probes = linear_probes(encoder, train_set, eval_set, data.eval, pools)
    result = dict(cached)
    for key, pool in (("linear_probe", "mean"), ("linear_probe_cls", "cls_norm")):
        if pool not in probes:
            continue
        if probes[pool]["per_layer"] != cached[key]["per_layer"]:
            raise RuntimeError(f"{spec.name}: {key} differs from the cache: {probes[pool]['per_layer']} "
                               f"vs {cached[key]['per_layer']}")
        result[key] = probes[pool]
    if cached.get("finetune") is not None:
        precision = finetune_precision(profile.train.precision, "cpu")
        correct, _ = finetune_correct(encoder, train_set, eval_set, data.eval, seed=0, precision=precision)
        acc = accuracy_of(correct)
        if acc != cached["finetune"]:
            raise RuntimeError(f"{spec.name}: fine-tuning differs from the cache: {acc} vs {cached['finetune']}")
        result["finetune_correct"] = pack_correct(correct.numpy())
    write_json_atomic(new, result, indent=2, default=str)
    return "upgraded, accuracies identical"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mini3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default=None, help="comma-separated zoo names (default: every model the claims read)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for seed in (int(s) for s in args.seeds.split(",")):
        profile = seed_profile(load_profile(args.profile), seed)
        names = args.only.split(",") if args.only else list(dict.fromkeys(
            [*model_names(profile).values(), *(spec.name for _, spec in zoo.hybrid_sweep(profile))]))
        for name in names:
            spec = zoo.resolve(profile, name)
            if not zoo.is_built(profile, spec):
                print(f"seed {seed} {name}: not built", flush=True)
                continue
            print(f"seed {seed} {name}: {upgrade(profile, spec)}", flush=True)


if __name__ == "__main__":
    main()
