"""``clvsmim train``: pre-train one objective (also under ``accelerate launch``)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import torch

from clvsmim.config import ModelConfig, Profile, load_profile, train_config_for
from clvsmim.data import open_dataset
from clvsmim.families import objective_model_config
from clvsmim.objectives import build_objective
from clvsmim.train.trainer import set_threads, train


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="pre-train one objective (works under `accelerate launch`)")
    p.add_argument("--objective", required=True, choices=["moco", "simmim", "mae", "hybrid"])
    p.add_argument("--lam", type=float, default=None, help="hybrid weight λ of the CL loss in [0, 1] (hybrid only)")
    p.add_argument("--profile", default="mini", help="smoke | mini | paper | path/to/profile.yaml")
    p.add_argument("--size", default=None, help="backbone size from the profile's `sizes` (e.g. Ti, S, B)")
    p.add_argument("--data", default=None, help="dataset root (ImageFolder) overriding the profile's data.root")
    p.add_argument("--out", required=True, help="output folder (log.csv, checkpoint.pt, meta.json)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--steps", type=int, default=None, help="override the number of optimizer steps")
    p.add_argument("--seed", type=int, default=None, help="override the training seed")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default $CLVSMIM_THREADS or torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def model_config_for(profile: Profile, size: str | None) -> ModelConfig:
    """The profile's backbone, or its ``sizes[size]``."""
    if size is None:
        return profile.model
    if size not in profile.sizes:
        raise KeyError(f"profile {profile.name!r} has no size {size!r}; available: {sorted(profile.sizes)}")
    return profile.sizes[size]


def run(args: argparse.Namespace) -> int:
    if args.lam is not None and not 0.0 <= args.lam <= 1.0:
        raise ValueError(f"--lam {args.lam}: the weight of the CL loss must lie in [0, 1]")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps {args.steps}: must be >= 1")
    profile = load_profile(args.profile).with_data_root(args.data)
    model_cfg = objective_model_config(profile, args.objective, model_config_for(profile, args.size))
    cfg = train_config_for(profile, args.objective)
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    set_threads(args.threads)

    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    objective = build_objective(args.objective, profile, model_cfg=model_cfg, lam=args.lam)
    dataset = open_dataset(profile.data, "train")
    extra = {"profile": profile.name, "size": args.size, "lam": args.lam, "cli_objective": args.objective}
    summary = train(objective, dataset, cfg, args.out, resume=args.resume, progress=not args.no_progress,
                    extra_meta=extra, model_config=model_cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0
