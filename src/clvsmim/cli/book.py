"""``clvsmim book`` (execute the chapters, build the HTML) and ``clvsmim notebooks`` (Colab)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from clvsmim.book.notebooks import render_notebooks
from clvsmim.book.run import run_book
from clvsmim.book.toc import SOURCES, profile_path

log = logging.getLogger("clvsmim.book")


def register(subparsers) -> None:
    p = subparsers.add_parser("book", help="execute the chapters and build the HTML book",
                              description="Execute the chapters listed in _toc.yml with papermill "
                                          "(skipping unchanged ones) and build the HTML book.")
    p.add_argument("--profile", default="smoke", help="smoke | mini | paper, or a profile YAML (default: smoke)")
    p.add_argument("--data", default=None, help="ImageFolder root (default: the profile's data; with --source "
                                                "official: Imagenette, fetched and verified)")
    p.add_argument("--out", default=None, help="output folder (default: <root>/_build/clvsmim/<profile>)")
    p.add_argument("--chapters", default=None, help="comma-separated chapters to run (default: all)")
    p.add_argument("--no-html", action="store_true", help="execute only; skip the HTML build")
    p.add_argument("--force", action="store_true", help="re-execute chapters even if unchanged")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (passed to the chapters)")
    p.add_argument("--source", choices=SOURCES, default=None,
                   help="zoo: build and analyse the profile's own models; official: analyse the official "
                        "ViT-B/16 checkpoints, train nothing (default: official for paper, zoo otherwise)")
    p.add_argument("--images", type=int, default=None,
                   help="number of analysis images (default: the profile's eval.num_analysis_images)")
    p.add_argument("--sweep-profile", default=None,
                   help="with --source official: the GPU-sized profile whose zoo, once built on the same images "
                        "(`clvsmim zoo build --profile gpu --data DATA`), gives the λ sweep and the size trend "
                        "(default: gpu; never trained by the book)")
    p.add_argument("--timeout", type=float, default=None, help="per-cell time limit in seconds")
    p.add_argument("--no-zoo", action="store_true", help="do not build the model zoo first")
    p.add_argument("--root", default=None, help="project root (default: found from the cwd)")
    p.set_defaults(func=cmd_book)

    q = subparsers.add_parser("notebooks", help="render clean Colab notebooks from the chapters")
    q.add_argument("--out", required=True, help="folder to write <toc file>.ipynb into")
    q.add_argument("--profile", default="paper")
    q.add_argument("--device", default="cuda")
    q.add_argument("--root", default=None)
    q.set_defaults(func=cmd_notebooks)


def setup_logging() -> None:
    """Plain INFO lines on stderr; papermill and traitlets kept quiet."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)


def check_book_inputs(args: argparse.Namespace) -> None:
    """Refuse an unknown profile or a missing data folder before any work starts."""
    if not profile_path(args.profile).is_file():
        raise FileNotFoundError(f"--profile {args.profile}: unknown profile (no {profile_path(args.profile)})")
    if args.images is not None and args.images < 1:
        raise ValueError(f"--images {args.images}: must be >= 1")
    if args.data is not None and not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data {args.data}: no such folder (expected an ImageFolder root)")


def cmd_book(args: argparse.Namespace) -> int:
    check_book_inputs(args)
    setup_logging()
    report = run_book(args.root, args.profile, data=args.data, out=args.out,
                      chapters=args.chapters.split(",") if args.chapters else None,
                      html=not args.no_html, force=args.force, seed=args.seed, device=args.device,
                      timeout=args.timeout, zoo=not args.no_zoo, source=args.source, images=args.images,
                      sweep_profile=args.sweep_profile)
    print(report.table(), flush=True)
    return report.exit_code


def cmd_notebooks(args: argparse.Namespace) -> int:
    setup_logging()
    written = render_notebooks(args.out, args.root, profile=args.profile, device=args.device)
    for p in written:
        print(p)
    if not written:
        log.warning("no .py chapter in the toc: nothing rendered")
    return 0
