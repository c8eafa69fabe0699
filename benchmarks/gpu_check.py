"""The GPU path in one short run: device, bf16 autocast, fused attention vs ``capture``,
``analyze`` vs a bare forward, training steps of every objective (images/s, MFU) and the
trainer end to end in bf16.

Meant for a rented GPU (minutes): every section is timed, its failure is recorded and the
next one still runs; the results go to ``--out`` as JSON and are printed as they come.

Usage::

    python benchmarks/gpu_check.py --out gpu_check.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput  # noqa: E402  (benchmarks/ is not a package)

from clvsmim.analysis import analyze  # noqa: E402
from clvsmim.models import capture  # noqa: E402


def timed(fn, repeats: int = 5, warmup: int = 2, device: torch.device = torch.device("cuda")) -> float:
    """Median seconds of ``fn()`` after ``warmup`` untimed calls (synchronised on ``device``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        train_throughput._sync(device)
        start = time.perf_counter()
        fn()
        train_throughput._sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def device_info(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {"torch": torch.__version__, "timm": timm.__version__, "cuda": torch.version.cuda,
            "name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported(),
            "flash_sdp": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient_sdp": torch.backends.cuda.mem_efficient_sdp_enabled()}


def fused_vs_capture(device: torch.device, name: str, batch: int) -> dict:
    """The fused (SDPA) forward and ``capture``'s unfused pass agree; attention rows sum to 1;
    speed of a bare forward, ``capture`` and ``analyze`` in fp32 and under bf16 autocast."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0).to(device).eval()
    size = model.patch_embed.img_size[0]
    x = torch.randn(batch, 3, size, size, device=device, generator=torch.Generator(device).manual_seed(0))
    out: dict = {"model": name, "batch": batch, "img_size": size,
                 "fused_attn": bool(getattr(model.blocks[0].attn, "fused_attn", False))}
    for precision, ctx in (("fp32", torch.autocast("cuda", enabled=False)),
                           ("bf16", torch.autocast("cuda", dtype=torch.bfloat16))):
        with torch.no_grad(), ctx:
            fused = model.forward_features(x).float()
            cap = capture(model, x)
            unfused = model.norm(cap.hidden_states[-1]).float()
            rows = torch.stack([a.float().sum(-1) for a in cap.attentions])
            forward_s = timed(lambda: model.forward_features(x))
            capture_s = timed(lambda: capture(model, x))
        analyze_s = timed(lambda: analyze(model, [x], device=device), repeats=3, warmup=1)
        out[precision] = {
            "max_abs_diff_fused_vs_capture": (fused - unfused).abs().max().item(),
            "max_rel_diff": ((fused - unfused).abs().max() / fused.abs().max()).item(),
            "attention_row_sum_max_err": (rows - 1).abs().max().item(),
            "forward_s": forward_s, "capture_s": capture_s, "analyze_s": analyze_s,
            "capture_over_forward": capture_s / forward_s, "analyze_over_forward": analyze_s / forward_s,
            "forward_images_per_s": batch / forward_s}
    return out


def training_throughput(device: torch.device, steps: int) -> list[dict]:
    """``benchmarks/train_throughput.py`` on the GPU: the mini backbone and ViT-B/16 at 224 px."""
    paper = train_throughput.load_profile("paper")
    settings = [train_throughput.make_setting("mini", 256),
                train_throughput.Setting("vit-b16", paper, 128)]
    print(train_throughput.HEADER, flush=True)
    return train_throughput.benchmark(train_throughput.OBJECTIVES, settings, ["fp32", "bf16"], steps, 3, device)


def trainer_bf16(device: torch.device, steps: int = 12) -> dict:
    """``clvsmim.train.trainer.train`` end to end (accelerate, bf16 autocast, checkpoint, resume) on the
    smoke profile's data, for every objective; the losses must be finite."""
    from clvsmim.train import trainer
    from clvsmim.config import load_profile
    from clvsmim.data import load_synthetic
    from clvsmim.objectives import build_objective
    from clvsmim.precision import resolve_precision

    profile = load_profile("smoke")
    cfg = dataclasses.replace(profile.train, steps=steps, batch_size=64, precision="bf16",
                              checkpoint_every=steps // 2, log_every=2)
    data = load_synthetic(profile.data.num_train, profile.data.img_size, profile.data.seed)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for objective in ("moco", "simmim", "mae", "hybrid"):
            torch.manual_seed(0)
            model = build_objective(objective, profile, lam=0.5 if objective == "hybrid" else None)
            start = time.perf_counter()
            summary = trainer.train(model, data, cfg, Path(tmp) / objective, progress=False,
                                    model_config=profile.model)
            meta = json.loads((Path(tmp) / objective / "meta.json").read_text())
            out[objective] = {"final_loss": summary["final_loss"], "steps": summary["step"],
                              "wall_s": time.perf_counter() - start, "git_commit": meta.get("git_commit"),
                              "precision": resolve_precision(cfg.precision, device), "device": str(device)}
            if not (summary["final_loss"] is not None and torch.isfinite(torch.tensor(summary["final_loss"]))):
                raise RuntimeError(f"{objective}: non-finite final loss {summary['final_loss']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    device = torch.device("cuda")
    results: dict = {}
    sections = {
        "device": lambda: device_info(device),
        "trainer_bf16": lambda: trainer_bf16(device),
        "attention_vit_s16": lambda: fused_vs_capture(device, "vit_small_patch16_224", 64),
        "attention_vit_b16": lambda: fused_vs_capture(device, "vit_base_patch16_224", 64),
        "training": lambda: training_throughput(device, args.steps),
    }
    for name, fn in sections.items():
        start = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:  # noqa: BLE001 - recorded, the next section still runs
            results[name] = {"error": traceback.format_exc()}
        results[name + "_wall_s"] = round(time.perf_counter() - start, 2)
        print(f"== {name} ({results[name + '_wall_s']} s)\n{json.dumps(results[name], indent=1, default=str)}",
              flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
