"""``clvsmim zoo build | list | eval | export | install | merge | park | unpark``: the cached model zoo of a profile."""
from __future__ import annotations

import argparse
import json
import time

from clvsmim.config import Profile, load_profile, seed_profile
from clvsmim.train.zoo import build, evaluations, format_table, list_models
from clvsmim.train.zoo_merge import merge_evaluations, merge_zoo
from clvsmim.train.zoo_park import park_runs, unpark_runs
from clvsmim.train.zoo_stacked import build_stacked
from clvsmim.train.zoo_weights import export_zoo, install_zoo, weights_paths


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="train / list / evaluate the cached model zoo of a profile")
    sub = p.add_subparsers(dest="zoo_command", required=True)

    b = sub.add_parser("build", help="train every missing model of the profile's zoo")
    b.add_argument("--only", default=None,
                   help="comma-separated keys or names (moco, simmim-Ti, hybrid-0.4, ...), started in this order")
    b.add_argument("--jobs", type=int, default=None, help="parallel runs (default: CPU cores; 1 on GPU)")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--stacked", action="store_true",
                   help="train models that differ only in seed (or hybrid λ) as one batched model (train.stacked)")
    b.add_argument("--seeds", default=None, help="with --stacked: comma-separated seeds whose zoos are built together")
    b.add_argument("--max-stack", type=int, default=None, help="with --stacked: at most this many models per stack")
    b.add_argument("--cuda-graph", action="store_true", help="with --stacked on CUDA: capture the step in a CUDA graph")
    b.set_defaults(func=cmd_build)

    ls = sub.add_parser("list", help="the zoo's models and whether they are cached")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    ev = sub.add_parser("eval", help="evaluate every built model (cached as eval-<key>.json)")
    ev.add_argument("--only", default=None)
    ev.add_argument("--jobs", type=int, default=None)
    ev.add_argument("--skip-missing", action="store_true", help="leave unbuilt models out instead of failing")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="write the built models as fp16 safetensors + a provenance JSON")
    ex.add_argument("--only", default=None)
    ex.add_argument("--out", required=True, help="folder for <profile>-zoo.safetensors and <profile>-zoo.json")
    ex.set_defaults(func=cmd_export)

    ins = sub.add_parser("install", help="verify (sha256) and install shipped weights into the cache")
    ins.add_argument("--from", dest="src", required=True, help="folder holding <profile>-zoo.safetensors/.json")
    ins.add_argument("--if-present", action="store_true", help="do nothing (exit 0) when no files are shipped")
    ins.set_defaults(func=cmd_install)

    mg = sub.add_parser("merge", help="add models trained here to a shipped zoo, evaluated on their fp16 weights")
    mg.add_argument("--only", default=None, help="models to add (default: every built one not shipped yet)")
    mg.add_argument("--into", required=True, help="folder holding (or to hold) <profile>-zoo.safetensors/.json")
    mg.add_argument("--jobs", type=int, default=1, help="parallel evaluations")
    mg.add_argument("--evaluations", action="store_true",
                    help="add no model: add the evaluations cached here (e.g. fine-tuning repeats) of models "
                         "installed from the folder's weights; the weights file is not rewritten")
    mg.add_argument("--no-progress", action="store_true")
    mg.set_defaults(func=cmd_merge)

    pk = sub.add_parser("park", help="copy interrupted runs (full training state) to a folder, to resume elsewhere")
    pk.add_argument("--only", default=None)
    pk.add_argument("--out", required=True, help="folder for <key>/checkpoint.pt ... and <profile>-runs.json")
    pk.set_defaults(func=cmd_park)

    up = sub.add_parser("unpark", help="verify (sha256) parked runs and put them in the cache; `zoo build` resumes them")
    up.add_argument("--from", dest="src", required=True, help="folder holding <profile>-runs.json")
    up.set_defaults(func=cmd_unpark)
    for sp in (b, ls, ev, ex, ins, mg, pk, up):
        sp.add_argument("--profile", default="mini", help="smoke | mini | paper | path/to/profile.yaml")
        sp.add_argument("--data", default=None, help="ImageFolder root overriding the profile's data.root")
        sp.add_argument("--seed", type=int, default=None,
                        help="training seed of the zoo (default: the profile's; see `clvsmim claims --seeds`)")


def profile_of(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` reading the images of ``--data`` (when given), with the
    training seed of ``--seed`` when given."""
    profile = load_profile(args.profile).with_data_root(args.data)
    return profile if args.seed is None else seed_profile(profile, args.seed)


def cmd_export(args: argparse.Namespace) -> int:
    weights, provenance = export_zoo(profile_of(args), args.out, args.only)
    record = json.loads(provenance.read_text())
    print(f"wrote {weights} ({record['weights']['bytes'] / 2**20:.1f} MiB, sha256 {record['weights']['sha256']}, "
          f"{len(record['models'])} models) and {provenance}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    if args.if_present and not any(p.exists() for p in weights_paths(args.src, profile.name)):
        print(f"zoo install: no shipped {profile.name} zoo in {args.src}; `clvsmim zoo build` trains it")
        return 0
    keys = install_zoo(profile, args.src)
    print(f"zoo install: {len(keys)} model(s) installed from {args.src} (sha256 verified)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    if args.evaluations:
        added = merge_evaluations(profile, args.into, args.only)
        print(f"zoo merge: {sum(map(len, added.values()))} evaluation file(s) added to {len(added)} shipped "
              f"model(s) in {args.into} (weights unchanged)")
        return 0
    keys = merge_zoo(profile, args.into, args.only, args.jobs, progress=not args.no_progress)
    record = json.loads(weights_paths(args.into, profile.name)[1].read_text())
    print(f"zoo merge: {len(keys)} model(s) added to {args.into} with their evaluations "
          f"({len(record['models'])} in all, sha256 {record['weights']['sha256']})")
    return 0


def cmd_park(args: argparse.Namespace) -> int:
    runs = park_runs(profile_of(args), args.out, args.only)
    for key, run in runs.items():
        print(f"parked {run['name']:<16} step {run['step']} of {run['total_steps']}  ({key})")
    return 0


def cmd_unpark(args: argparse.Namespace) -> int:
    keys = unpark_runs(profile_of(args), args.src)
    print(f"zoo unpark: {len(keys)} run(s) put in the cache from {args.src} (sha256 verified); "
          f"`clvsmim zoo build` resumes them")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    if args.stacked:
        return cmd_build_stacked(args)
    if args.seeds or args.max_stack or args.cuda_graph:
        raise ValueError("--seeds, --max-stack and --cuda-graph apply to `zoo build --stacked` only")
    profile = profile_of(args)
    start = time.perf_counter()
    dirs = build(profile, args.only, args.jobs, progress=not args.no_progress, in_order=args.only is not None)
    print(f"zoo {profile.name}: {len(dirs)} model(s) ready in {time.perf_counter() - start:.1f} s")
    print(format_table([r for r in list_models(profile) if r["key"] in dirs]))
    return 0


def cmd_build_stacked(args: argparse.Namespace) -> int:
    if args.jobs not in (None, 1):
        raise ValueError("--stacked trains in this process (one stack at a time); leave out --jobs")
    profile = load_profile(args.profile).with_data_root(args.data)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else \
            [profile.train.seed if args.seed is None else args.seed]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    start = time.perf_counter()
    built = build_stacked(profile, seeds, args.only, progress=not args.no_progress,
                          cuda_graph=args.cuda_graph, max_models=args.max_stack)
    for seed, dirs in built.items():
        seeded = seed_profile(profile, seed)
        print(f"zoo {profile.name} seed {seed}: {len(dirs)} model(s) ready")
        print(format_table([r for r in list_models(seeded) if r["key"] in dirs]))
    print(f"stacked build of {len(seeds)} seed(s) in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_models(profile_of(args))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    results = evaluations(profile_of(args), args.only, args.jobs,
                          missing="skip" if args.skip_missing else "raise", progress=not args.no_progress)
    for key, res in results.items():
        lp, ft = res.get("linear_probe") or {}, res.get("finetune")
        cls = (res.get("linear_probe_cls") or {}).get("final")
        print(f"{res['model']['name']:<16} linear {lp.get('final')} (normed CLS {cls})  finetune {ft}  ({key})")
    return 0
