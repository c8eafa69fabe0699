"""C10 against the fine-tuning budget: the zoo's S models fine-tuned for several step counts, and
with the learning-rate multipliers each was pre-trained with (``train.lr_scales``).

The book fine-tunes every model with one budget (``eval.finetune_steps`` at ``eval.finetune_lr``:
150 steps at 5e-4 in mini / mini3, so AdamW moves a parameter by at most ~0.04). This re-runs the
same recipe (same data, augmentation and seed) with other budgets, to see whether C10 (MIM
fine-tunes better than CL) depends on it.

    CLVSMIM_CACHE=... python docs/experiments/finetune_budget.py --profile mini3 --steps 150 600 --out F.json
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json

import torch

from clvsmim.config import load_profile, seed_profile, train_config_for
from clvsmim.data import open_dataset
from clvsmim.evaluation import EVALUATION_SEED
from clvsmim.evaluation.finetune import finetune, layer_decay_scales
from clvsmim.models import has_shared_relative_position_bias
from clvsmim.train import zoo
from clvsmim.train.zoo_specs import resolve


def zeroed_copy(encoder: torch.nn.Module, fragment: str) -> torch.nn.Module:
    """A copy of ``encoder`` whose parameters named ``fragment`` are zero."""
    model = copy.deepcopy(encoder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if fragment in name:
                param.zero_()
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mini3")
    ap.add_argument("--seed", type=int, default=0, help="training seed of the zoo")
    ap.add_argument("--models", nargs="+", default=["moco-S", "simmim-S", "random-S"])
    ap.add_argument("--steps", type=int, nargs="+", default=[150, 600])
    ap.add_argument("--zero", default=None, metavar="FRAGMENT",
                    help="fine-tune copies whose parameters named FRAGMENT are zeroed first (e.g. "
                         "relative_position_bias_table: the locality a BEiT-style SimMIM learned) instead")
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the profile's)")
    ap.add_argument("--layer-decay", type=float, default=1.0,
                    help="layer-wise lr decay, as upstream MIM fine-tuning (SimMIM: 0.65 at 2.5x MoCo v3's lr)")
    ap.add_argument("--unshare-table", action="store_true",
                    help="give each block its own copy of a BEiT encoder's shared relative position table "
                         "before fine-tuning, as upstream SimMIM / BEiT fine-tuning does")
    ap.add_argument("--finetune-seeds", type=int, nargs="+", default=[EVALUATION_SEED],
                    help="seeds of the fine-tune itself (head init, batch order, augmentation); default: the "
                         "book's one. Several measure how much C10 moves with the fine-tuning run alone")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = seed_profile(load_profile(args.profile), args.seed)
    data = profile.eval_data()  # the evaluation split the book measures (eval.num_images)
    train_set, eval_set = open_dataset(data, "train"), open_dataset(data, "eval")
    lr = profile.eval.finetune_lr if args.lr is None else args.lr
    rows = []
    for name in args.models:
        spec = resolve(profile, name)
        own = train_config_for(profile, spec.objective).lr_scales if spec.train_cfg is not None else ()
        encoder = zoo.load(profile, name)
        table = "per_block" if args.unshare_table else profile.eval.finetune_table
        unshared = table == "per_block" and has_shared_relative_position_bias(encoder)
        if unshared:
            own = ()  # the pre-training multipliers name the shared table, which fine-tuning splits
        decay_scales = layer_decay_scales(encoder, args.layer_decay)
        if args.zero:
            if not any(args.zero in n for n, _ in encoder.named_parameters()):
                raise SystemExit(f"--zero {args.zero!r}: no parameter of {name} has it in its name")
            runs = [(steps, (), True) for steps in args.steps]
        else:
            runs = [(steps, (), False) for steps in args.steps] + ([(args.steps[0], own, False)] if own else [])
        for (steps, scales, zeroed), ft_seed in itertools.product(runs, args.finetune_seeds):
            cfg = dataclasses.replace(profile.eval, finetune_steps=steps, finetune_lr=lr, finetune_table=table)
            scales = tuple(scales) + decay_scales
            model = zeroed_copy(encoder, args.zero) if zeroed else encoder
            acc = finetune(model, train_set, eval_set, cfg, seed=ft_seed, lr_scales=scales)
            rows.append({"model": name, "steps": steps, "lr": cfg.finetune_lr, "layer_decay": args.layer_decay,
                         "lr_scales": dict(scales), "finetune_seed": ft_seed,
                         "zeroed": args.zero if zeroed else None, "unshared_table": unshared, "accuracy": acc})
            print(f"{name:10s} {steps:5d} steps, fine-tune seed {ft_seed}, lr_scales {dict(scales) or '-'}"
                  f"{f', {args.zero} zeroed' if zeroed else ''}{', per-block tables' if unshared else ''}: {acc:.4f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"profile": profile.name, "seed": args.seed, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
