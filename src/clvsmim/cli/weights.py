"""``clvsmim weights list | fetch | verify | inspect | imagenette``: the official checkpoints."""
from __future__ import annotations

import argparse
import sys

from clvsmim.weights.archive import fetch_imagenette
from clvsmim.weights.download import cached_path, fetch, verify
from clvsmim.weights.errors import DownloadError
from clvsmim.weights.load import load_checkpoint
from clvsmim.weights.pins import expected_digest
from clvsmim.weights.registry import IMAGENETTE, all_entries


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_list(args) -> int:
    rows = [("name", "kind", "size", "sha256", "cached", "licence")]
    for e in all_entries().values():
        if e.source == "timm":
            rows.append((e.name, e.kind, "?", "timm hub", "(timm cache)", e.licence))
            continue
        sha, size, where = expected_digest(e)
        path = cached_path(e, args.cache)
        cached = "yes" if path.exists() else ("partial" if path.with_name(path.name + ".part").exists() else "no")
        shown = f"{sha[:16]}… ({'registry' if where == 'registry' else 'pinned'})" if sha else "unpinned"
        if not sha and e.md5_prefix:
            shown += f" (md5 {e.md5_prefix}…)"
        rows.append((e.name, e.kind, _human(size), shown, cached, e.licence.split(" ")[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_fetch(args) -> int:
    if args.name == IMAGENETTE.name and args.extract:
        print(fetch_imagenette(args.extract, progress=not args.no_progress, cache=args.cache))
    else:
        print(fetch(args.name, cache=args.cache, progress=not args.no_progress))
    return 0


def cmd_verify(args) -> int:
    targets = [args.name] if args.name else [e.name for e in all_entries().values() if e.filename]
    bad = 0
    for t in targets:
        try:
            sha = verify(t, cache=args.cache)
            print(f"OK        {t}  sha256 {sha}")
        except FileNotFoundError as exc:
            if args.name:
                print(f"error: {exc}", file=sys.stderr)
                bad += 1
            else:
                print(f"missing   {t}  (not cached at {cached_path(t, args.cache)})")
        except DownloadError as exc:
            print(f"MISMATCH  {t}: {exc}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


def cmd_inspect(args) -> int:
    model = load_checkpoint(args.path, format=args.format, allow_pickle=args.allow_pickle, num_heads=args.num_heads)
    n = sum(p.numel() for p in model.parameters())
    print(f"format {model.clvsmim_source['format']}: {type(model).__name__}, embed_dim {model.embed_dim}, "
          f"depth {len(model.blocks)}, heads {model.blocks[0].attn.num_heads}, "
          f"patch {model.patch_embed.patch_size}, grid {model.patch_embed.grid_size}, {n / 1e6:.1f} M parameters")
    return 0


def cmd_imagenette(args) -> int:
    print(fetch_imagenette(args.dest, progress=not args.no_progress, cache=args.cache))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="official checkpoints: list, fetch, verify, inspect",
                              description="Official checkpoints and the Imagenette archive: list, fetch "
                                          "(resumable, sha256-verified), verify, inspect.")
    sub = p.add_subparsers(dest="weights_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=None, help="download folder (default: <cache>/weights)")

    q = sub.add_parser("list", parents=[common], help="table of entries: size, sha256 or 'unpinned', cached?")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("fetch", parents=[common], help="download (or verify the cached copy of) NAME")
    q.add_argument("name")
    q.add_argument("--no-progress", action="store_true")
    q.add_argument("--extract", default=None, metavar="DEST", help="datasets: also extract into DEST")
    q.set_defaults(func=cmd_fetch)

    q = sub.add_parser("verify", parents=[common], help="check cached files (or a path) against their sha256")
    q.add_argument("name", nargs="?", default=None, help="registry name or file path (default: all cached)")
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser("inspect", help="load a checkpoint file strictly and describe it")
    q.add_argument("path")
    q.add_argument("--format", default=None, help="moco_v3 | simmim | mae | timm | clvsmim (default: detect)")
    q.add_argument("--allow-pickle", action="store_true",
                   help="allow pickled objects (e.g. SimMIM's yacs config): torch.load(weights_only=False)")
    q.add_argument("--num-heads", type=int, default=None)
    q.set_defaults(func=cmd_inspect)

    q = sub.add_parser("imagenette", parents=[common], help="download + safely extract Imagenette 320px")
    q.add_argument("--dest", default=None, help="extraction folder (default: <cache>/data)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_imagenette)
