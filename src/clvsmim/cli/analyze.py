"""``clvsmim analyze``: every analysis of the paper on any ViT / BEiT (see :mod:`clvsmim.analysis.model_report`)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from clvsmim.analysis.backbones import AnalyzeError, input_size, resolve_model
from clvsmim.analysis.images import open_analysis_data
from clvsmim.analysis.model_report import DEFAULT_BATCH_SIZE, DEFAULT_IMAGES, analyze_model, model_slug
from clvsmim.explorer.build import analyze_explorer
from clvsmim.device import resolve_device


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="run every analysis of the paper on any ViT / BEiT (registry name, timm:NAME or checkpoint)",
        description="Run every analysis of the paper (attention distance, NMI, Fourier, token similarity, SVD "
                    "spectrum, attention maps, t-SNE, per-layer linear probe) on any timm ViT / BEiT and write "
                    "DIR/metrics.json plus one figure per analysis.")
    p.add_argument("--model", required=True,
                   help="registry name (clvsmim weights list), timm:NAME, or the path of a checkpoint")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or an ImageFolder root")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images to analyse (default {DEFAULT_IMAGES})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"images per forward pass; bounds memory (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--img-size", type=int, default=None,
                   help="input resolution of a timm:NAME model (default: the model's own); other models must match")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda[:i]")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints holding pickled objects (e.g. SimMIM's config); only for trusted files")
    p.add_argument("--random-init", action="store_true",
                   help="same architecture, random weights (no download): a control")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init and of the synthetic data")
    p.add_argument("--spectrum-every", type=int, default=1,
                   help="singular-value spectra on every k-th image only (the costliest metric on CPU)")
    p.add_argument("--no-figures", action="store_true", help="write metrics.json only")
    p.add_argument("--explorer", action="store_true",
                   help="also write DIR/explorer.html + DIR/explorer/: the interactive attention explorer (offline)")
    p.add_argument("--out", default=None, help="output folder (default _build/analyze/<model>)")
    p.set_defaults(func=run)


def depth_table(metrics: dict) -> str:
    """One row per depth: attention distance, NMI, Fourier Δ log amplitude, token cosine, probe."""
    L = metrics["model"]["geometry"]["depth"]
    probe = metrics["probe"].get("accuracy")
    lines = [f"{'depth':>5}  {'att.dist(px)':>12}  {'NMI':>6}  {'Δlogamp@π':>10}  {'tok.cos':>7}  {'probe':>6}"]
    for d in range(L + 1):
        dist = "" if d == 0 else f"{metrics['attention_distance']['mean'][d - 1]:.1f}"
        nmi = "" if d == 0 else f"{metrics['nmi']['mean'][d - 1]:.3f}"
        fourier = metrics["fourier"]["delta_log_amplitude"][d]
        cos = metrics["token_cosine"][d]
        acc = f"{100 * probe[d]:.0f}%" if probe else ""
        lines.append(f"{d:>5}  {dist:>12}  {nmi:>6}  {'' if fourier is None else f'{fourier:.3f}':>10}  "
                     f"{'' if cos is None else f'{cos:.3f}':>7}  {acc:>6}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        dev = resolve_device(args.device)
    except RuntimeError as exc:
        raise AnalyzeError(f"--device {args.device}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AnalyzeError(f"--device {args.device}: CUDA is not available here; use --device auto or cpu")
    if args.images < 1 or args.batch_size < 1:
        raise AnalyzeError(f"--images and --batch-size must be >= 1, found {args.images} and {args.batch_size}")
    model, info = resolve_model(args.model, random_init=args.random_init, allow_pickle=args.allow_pickle,
                                img_size=args.img_size, seed=args.seed)
    size = input_size(model)
    if args.img_size and args.img_size != size:
        raise AnalyzeError(f"--img-size {args.img_size}: {args.model} takes {size}×{size} images "
                           "(--img-size only changes the resolution of timm:NAME models)")
    dataset, data_info = open_analysis_data(args.data, size, args.images, seed=args.seed)
    out = Path(args.out) if args.out else Path("_build") / "analyze" / model_slug(args.model)
    metrics = analyze_model(model, dataset, images=args.images, batch_size=args.batch_size, device=dev,
                            out_dir=out, name=args.model, model_info=info, data_info=data_info,
                            spectrum_every=args.spectrum_every, figures=not args.no_figures)
    if args.explorer:
        page, folder = analyze_explorer(model, dataset, out, args.model, info, dev, args.images, args.batch_size,
                                        data_info.get("classes"))
    geo = metrics["model"]["geometry"]
    print(f"{args.model}: {metrics['model']['class']}, depth {geo['depth']}, grid {geo['grid'][0]}×{geo['grid'][1]}, "
          f"{metrics['model']['num_params'] / 1e6:.1f} M params; {metrics['num_images']} images on {metrics['device']} "
          f"in {metrics['timing']['total_s']:.1f} s")
    print(depth_table(metrics))
    if "image_cluster_score" in metrics["tsne"]:
        print(f"image cluster score (last depth, {len(metrics['tsne']['image_positions'])} images): "
              f"{metrics['tsne']['image_cluster_score']:.3f}")
    for key in ("tsne", "probe"):
        if "skipped" in metrics[key]:
            print(f"{key} skipped: {metrics[key]['skipped']}")
    print(f"wrote {out / 'metrics.json'} and {len(metrics.get('figures', []))} figure(s) in {out}")
    if args.explorer:
        print(f"attention explorer: {page} (data: {folder.folder}, {folder.page_bytes / 1e6:.2f} MB; opens from file://)")
    return 0
