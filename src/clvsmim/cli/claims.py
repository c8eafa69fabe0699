"""``clvsmim claims``: check the paper's eleven claims on the zoo, per training seed."""
from __future__ import annotations

import argparse

from clvsmim.claims import ClaimsTable, claims_table, seeds_for
from clvsmim.config import load_profile


def register(subparsers) -> None:
    p = subparsers.add_parser("claims", help="check the paper's claims on the zoo (per training seed)")
    p.add_argument("--profile", default="mini", help="smoke | mini | paper | path/to/profile.yaml")
    p.add_argument("--seeds", type=int, default=1,
                   help="number of training seeds, from the profile's own (default 1; 3 for a verdict)")
    p.add_argument("--first-seed", type=int, default=None,
                   help="first training seed (default: the profile's own); e.g. one seed per process")
    p.add_argument("--data", default=None, help="ImageFolder root overriding the profile's data.root")
    p.add_argument("--out", default=None, help="write the table as JSON to this file")
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=None, help="parallel zoo runs / evaluations")
    p.add_argument("--no-build", action="store_true", help="fail instead of training missing models")
    p.add_argument("--skip-missing", action="store_true",
                   help="with --no-build: leave unbuilt models out (the claims that read them are inconclusive)")
    p.add_argument("--show", default=None, metavar="FILE.json",
                   help="print a table saved with --out (checking its verdicts) instead of measuring")
    p.add_argument("--markdown", action="store_true",
                   help="print a Markdown table with every seed's verdict and statistics")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.show:
        table = ClaimsTable.load(args.show)
    else:
        if args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds}: must be >= 1")
        profile = load_profile(args.profile).with_data_root(args.data)
        table = claims_table(profile, seeds_for(profile, args.seeds, args.first_seed), args.device,
                             build=not args.no_build, jobs=args.jobs, progress=not args.no_progress,
                             missing="skip" if args.skip_missing and args.no_build else "raise")
    print(table.markdown(per_seed=True) if args.markdown else table.format())
    if args.markdown and table.note():
        print(f"\nNote: {table.note()}.")
    if args.out and not args.show:
        print(f"written {table.save(args.out)}")
    return 0
