"""C10's architecture share: untrained encoders of each family's architecture, fine-tuned with the
book's recipe. Under ``families: faithful`` SimMIM's encoder (BEiT-style: no absolute position
embedding, a relative position bias table that starts at zero, layer scale 0.1) differs from
MoCo v3's and the control's (sin-cos ViT), so "MIM fine-tunes better than CL" compares
architectures as well as objectives. Fine-tuning each architecture from its random init, with the
same data, augmentation, seed and budget as the book (``clvsmim.evaluation.finetune.finetune``),
measures that share.

A variant is ``OBJECTIVE`` or ``OBJECTIVE:field=value[,field=value]`` (ModelConfig fields set on
top of the family, as ``Profile.model_overrides``): ``simmim``, ``simmim:sincos_pos_embed=true``,
``simmim:layer_scale_init=null``, ``moco``.

    CLVSMIM_CACHE=... python docs/experiments/finetune_untrained.py --profile mini3 --steps 150 600 \
        --variants moco simmim simmim:sincos_pos_embed=true --out F.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import torch
import yaml

from clvsmim.config import load_profile
from clvsmim.data import open_dataset
from clvsmim.evaluation import EVALUATION_SEED
from clvsmim.evaluation.finetune import finetune
from clvsmim.families import objective_model_config
from clvsmim.models import build_vit


def parse_variant(text: str) -> tuple[str, dict]:
    """``"simmim:sincos_pos_embed=true"`` -> ``("simmim", {"sincos_pos_embed": True})`` (YAML values)."""
    objective, _, fields = text.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        name, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"variant {text!r}: expected field=value, found {item!r}")
        overrides[name.strip()] = yaml.safe_load(value)
    return objective, overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mini3")
    ap.add_argument("--variants", nargs="+", default=["moco", "simmim", "simmim:sincos_pos_embed=true"])
    ap.add_argument("--steps", type=int, nargs="+", default=[150, 600])
    ap.add_argument("--init-seed", type=int, default=0, help="torch seed of each random init")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = load_profile(args.profile)
    data = profile.eval_data()  # the evaluation split the book measures (eval.num_images)
    train_set, eval_set = open_dataset(data, "train"), open_dataset(data, "eval")
    rows = []
    for variant in args.variants:
        objective, overrides = parse_variant(variant)
        model_cfg = dataclasses.replace(objective_model_config(profile, objective), **overrides)
        for steps in args.steps:
            torch.manual_seed(args.init_seed)
            encoder = build_vit(model_cfg).eval()
            cfg = dataclasses.replace(profile.eval, finetune_steps=steps)
            acc = finetune(encoder, train_set, eval_set, cfg, seed=EVALUATION_SEED)
            rows.append({"variant": variant, "objective": objective, "overrides": overrides, "steps": steps,
                         "lr": cfg.finetune_lr, "accuracy": acc})
            print(f"untrained {variant:40s} {steps:5d} steps: {acc:.4f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"profile": profile.name, "families": profile.families, "init_seed": args.init_seed,
                       "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
