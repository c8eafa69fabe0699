"""Training throughput of every objective: images/s, FLOPs per image, achieved FLOP/s and MFU.

For each setting (``mini``: the mini profile's backbone at 32 px; ``vit-s16``: ViT-S/16 at
224 px with the paper profile's heads) x objective x precision (fp32, bf16 autocast), one
training step = forward + backward + AdamW step on a fixed batch of random uint8 images.

* FLOPs per image: ``torch.utils.flop_counter.FlopCounterMode`` over one fp32 forward+backward
  (matmuls / convolutions / attention; element-wise ops are not counted), divided by the batch.
* Peak: this machine's measured ``torch.matmul`` rate in the same dtype (best of A·B and A·Bᵀ).
* MFU = achieved FLOP/s / peak FLOP/s.

bf16 is autocast *regardless* of native support, so on CPUs without AVX512-BF16/AMX it shows
the emulation cost the trainer avoids (see ``clvsmim.train.trainer.resolve_precision``).

Stacked path (``--stacked 1,2,4,8``, :mod:`clvsmim.train.stacked`): models × images/s of the real
trainers on a synthetic in-memory dataset — ``train_stacked`` with K models vs. the reference
``train`` (K separate runs one after the other give its images/s in models × images/s) — timed
between the trainer's per-step callbacks after ``--warmup`` steps (no checkpoint inside the
timed steps), in ``--rounds`` interleaved rounds (median), as a table with ratios.

Usage::

    python benchmarks/train_throughput.py --settings mini --threads 2 --steps 3
    python benchmarks/train_throughput.py --objectives simmim,mae --settings vit-s16 --batch 8
    python benchmarks/train_throughput.py --objectives simmim,moco --settings mini --stacked 1,2,4,8 \
        --threads 2 --steps 2 --rounds 2 [--cuda-graph]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from clvsmim.config import Profile, load_profile
from clvsmim.objectives import build_objective
from clvsmim.train.stacked import train_stacked
from clvsmim.train.trainer import autocast_for, build_optimizer, make_accelerator, native_bf16, set_threads, train

OBJECTIVES = ("moco", "simmim", "mae", "hybrid")
HYBRID_LAM = 0.5


@dataclass(frozen=True)
class Setting:
    """A backbone/profile combination to benchmark."""

    name: str
    profile: Profile
    batch_size: int


def make_setting(name: str, batch: int | None) -> Setting:
    """``mini`` (profile backbone, batch 128) or ``vit-s16`` (paper profile, ViT-S/16 224 px, batch 8)."""
    if name == "mini":
        profile = load_profile("mini")
        return Setting(name, profile, batch or profile.train.batch_size)
    if name == "vit-s16":
        paper = load_profile("paper")
        profile = dataclasses.replace(paper, model=paper.sizes["S"])
        return Setting(name, profile, batch or 8)
    raise SystemExit(f"unknown setting {name!r}; expected 'mini' or 'vit-s16'")


def compile_blocks(model: torch.nn.Module) -> None:
    """``torch.compile`` every transformer block in place (the bulk of the compute; the
    objectives call encoder parts directly, so the blocks are the unit that always runs)."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and module and hasattr(module[0], "attn"):
            for block in module:
                block.compile()


def build(objective: str, setting: Setting, device: torch.device, compiled: bool = False):
    """The objective (seeded init) and its AdamW optimizer, on ``device``."""
    torch.manual_seed(0)
    lam = HYBRID_LAM if objective == "hybrid" else None
    model = build_objective(objective, setting.profile, lam=lam).to(device).train()
    if compiled:
        compile_blocks(model)
    return model, build_optimizer(model, setting.profile.train)


def fake_batch(setting: Setting, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images at the backbone's resolution plus per-sample seeds."""
    g = torch.Generator().manual_seed(0)
    size = setting.profile.model.img_size
    images = torch.randint(0, 256, (setting.batch_size, 3, size, size), dtype=torch.uint8, generator=g)
    return images.to(device), torch.arange(setting.batch_size, dtype=torch.int64, device=device)


def train_step(model, optimizer, images, seeds, precision: str) -> float:
    """One forward + backward + optimizer step; returns the loss."""
    with autocast_for(images.device, precision):
        loss = model(images, seeds)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.after_optimizer_step(0, 1)
    return float(loss.detach())


def flops_per_image(model, images, seeds) -> float:
    """Forward+backward FLOPs of one fp32 step, per image."""
    with FlopCounterMode(display=False) as counter:
        model(images, seeds)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(images)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(model, optimizer, images, seeds, precision: str, steps: int,
                      warmup: int = 1) -> tuple[float, float]:
    """Mean throughput over ``steps`` timed steps after ``warmup`` untimed ones; also the last loss."""
    for _ in range(warmup):
        train_step(model, optimizer, images, seeds, precision)
    _sync(images.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, optimizer, images, seeds, precision)
    _sync(images.device)
    return steps * len(images) / (time.perf_counter() - start), loss


def _time_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    _sync(a.device)
    start = time.perf_counter()
    torch.matmul(a, b)
    _sync(a.device)
    return time.perf_counter() - start


def matmul_peak(dtype: torch.dtype, device: torch.device, max_n: int | None = None,
                min_seconds: float = 0.2, repeats: int = 3) -> float:
    """This machine's matmul peak in ``dtype``: the better of ``A @ B`` and ``A @ Bᵀ`` (the layout
    of ``nn.Linear``; on CPUs without native bf16 the two differ by >10x in bf16)."""
    return max(_layout_peak(dtype, device, t, max_n, min_seconds, repeats) for t in (False, True))


def _layout_peak(dtype: torch.dtype, device: torch.device, transpose_b: bool, max_n: int | None,
                 min_seconds: float, repeats: int) -> float:
    """Best FLOP/s of an ``n×n`` product, ``n`` doubling from 256 until one warmed-up product takes
    ``min_seconds`` or reaches ``max_n`` (2048 on CPU, 8192 on GPU), so slow emulated dtypes stay
    quick to measure. Each size runs once untimed first (first calls are much slower in bf16)."""
    max_n = max_n or (8192 if device.type == "cuda" else 2048)
    n = 256
    while True:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        b = b.t() if transpose_b else b
        _time_matmul(a, b)
        first = _time_matmul(a, b)
        if first >= min_seconds or n >= max_n:
            break
        n *= 2
    best = min([first] + [_time_matmul(a, b) for _ in range(repeats if first < 1.0 else 1)])
    return 2 * n ** 3 / best


def benchmark(objectives, settings, precisions, steps: int, warmup: int, device: torch.device,
              compiled: bool = False) -> list[dict]:
    """One row per (setting, objective, precision)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {p: matmul_peak(dtypes[p], device) for p in precisions}
    rows = []
    for setting in settings:
        images, seeds = fake_batch(setting, device)
        for objective in objectives:
            model, optimizer = build(objective, setting, device)
            flops = flops_per_image(model, images, seeds)
            for precision in precisions:
                model, optimizer = build(objective, setting, device, compiled)
                ips, loss = images_per_second(model, optimizer, images, seeds, precision, steps, warmup)
                rows.append({"setting": setting.name + ("+c" if compiled else ""), "objective": objective,
                             "precision": precision,
                             "batch": setting.batch_size, "images_per_s": ips, "gflop_per_image": flops / 1e9,
                             "achieved_gflops": ips * flops / 1e9, "peak_gflops": peaks[precision] / 1e9,
                             "mfu": ips * flops / peaks[precision], "loss": loss})
                print(format_row(rows[-1]), flush=True)
    return rows


HEADER = f"{'setting':8} {'objective':9} {'prec':5} {'batch':>5} {'img/s':>9} {'GFLOP/img':>10} " \
         f"{'GFLOP/s':>9} {'peak':>9} {'MFU':>7} {'loss':>8}"


def format_row(r: dict) -> str:
    return (f"{r['setting']:8} {r['objective']:9} {r['precision']:5} {r['batch']:>5} {r['images_per_s']:>9.1f} "
            f"{r['gflop_per_image']:>10.3f} {r['achieved_gflops']:>9.1f} {r['peak_gflops']:>9.1f} "
            f"{100 * r['mfu']:>6.1f}% {r['loss']:>8.4f}")


# --------------------------------------------------------------------------- stacked vs separate

class SyntheticImages:
    """``n`` random uint8 images at the backbone's size, in memory (``batch_fn=synthetic_batch``)."""

    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)

    def __len__(self):
        return len(self.images)


def synthetic_batch(dataset: SyntheticImages, indices: torch.Tensor):
    return dataset.images[indices], torch.zeros(len(indices), dtype=torch.int64)


def _objectives(objective: str, setting: Setting, k: int) -> list:
    lam = HYBRID_LAM if objective == "hybrid" else None
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_objective(objective, setting.profile, lam=lam))
    return out


def _timed(run, steps: int, warmup: int, models: int, batch: int) -> tuple[float, float]:
    """models × images per second of wall time and per CPU second (this process, all threads) of
    ``run(callback)`` between its callbacks at steps ``warmup`` and ``warmup + steps`` (the last
    step, which writes the checkpoint, is outside). On a shared machine the CPU-time rate is the
    steadier of the two."""
    stamps: dict[int, tuple[float, float]] = {}

    def callback(done, _scalars):
        if done in (warmup, warmup + steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps[done] = (time.perf_counter(), time.process_time())

    run(callback)
    (w0, c0), (w1, c1) = stamps[warmup], stamps[warmup + steps]
    images = models * batch * steps
    return images / (w1 - w0), images / (c1 - c0)


def stacked_benchmark(objectives, setting: Setting, ks: list[int], steps: int, warmup: int, rounds: int,
                      device: torch.device, cuda_graph: bool = False) -> list[dict]:
    """Per objective: the reference ``train`` (one model) and ``train_stacked`` with each K, the
    rounds interleaved; median models × images/s and the ratio stacked / separate."""
    total = warmup + steps + 1
    cfg = dataclasses.replace(setting.profile.train, steps=total, batch_size=setting.batch_size,
                              warmup_steps=1, checkpoint_every=10 ** 9, log_every=10 ** 9)
    data = SyntheticImages(setting.batch_size * total, setting.profile.model.img_size)
    results: dict[tuple[str, int | str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for objective in objectives:
                for k in ["separate", *ks]:
                    out = Path(tmp) / f"{objective}-{k}-{r}"
                    if k == "separate":
                        obj = _objectives(objective, setting, 1)[0]
                        run = (lambda cb, obj=obj, out=out: train(
                            obj, data, cfg, out, progress=False, batch_fn=synthetic_batch, callback=cb,
                            model_config=setting.profile.model,
                            accelerator=make_accelerator(cpu=device.type == "cpu")))
                        models = 1
                    else:
                        objs = _objectives(objective, setting, k)
                        run = (lambda cb, objs=objs, out=out: train_stacked(
                            objs, data, [dataclasses.replace(cfg, seed=i) for i in range(len(objs))],
                            [out / str(i) for i in range(len(objs))], progress=False, batch_fn=synthetic_batch,
                            device=device, cuda_graph=cuda_graph, callback=cb,
                            model_configs=[setting.profile.model] * len(objs)))
                        models = k
                    wall, cpu = _timed(run, steps, warmup, models, setting.batch_size)
                    results.setdefault((objective, k), []).append((wall, cpu))
                    print(f"round {r} {objective:7} {str(k):>8}: {wall:9.1f} models x img/s, "
                          f"{cpu:9.1f} models x img per CPU-s", flush=True)
    rows = []
    for objective in objectives:
        sep = results[(objective, "separate")]
        sep_wall, sep_cpu = (statistics.median(x[i] for x in sep) for i in (0, 1))
        for k in ks:
            st = results[(objective, k)]
            wall, cpu = (statistics.median(x[i] for x in st) for i in (0, 1))
            rows.append({"objective": objective, "K": k, "stacked": wall, "separate": sep_wall,
                         "ratio": wall / sep_wall, "stacked_cpu": cpu, "separate_cpu": sep_cpu,
                         "ratio_cpu": cpu / sep_cpu, "rounds": st, "separate_rounds": sep})
    return rows


def stacked_table(rows: list[dict], setting: Setting, device: torch.device, threads: int, cuda_graph: bool) -> str:
    """Markdown table of :func:`stacked_benchmark`'s rows."""
    lines = [f"{setting.name} (batch {setting.batch_size} per model), {device} ({describe(device)}), "
             f"threads {threads}{', CUDA graph' if cuda_graph else ''}; models x images per second of wall "
             f"time and per CPU second, median of rounds",
             "", "| objective | K | stacked | K separate runs | ratio | stacked per CPU-s | separate per CPU-s | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['objective']} | {r['K']} | {r['stacked']:.1f} | {r['separate']:.1f} | {r['ratio']:.2f} "
                     f"| {r['stacked_cpu']:.1f} | {r['separate_cpu']:.1f} | {r['ratio_cpu']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default=",".join(OBJECTIVES),
                        help="comma-separated subset of " + ",".join(OBJECTIVES))
    parser.add_argument("--settings", default="mini,vit-s16", help="comma-separated: mini, vit-s16")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--batch", type=int, default=None, help="override the batch size of every setting")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile every transformer block")
    parser.add_argument("--stacked", default=None,
                        help="comma-separated model counts K: stacked trainer vs K separate runs (e.g. 1,2,4,8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the stacked comparison")
    parser.add_argument("--cuda-graph", action="store_true", help="stacked path: capture the step in a CUDA graph")
    args = parser.parse_args(argv)
    objectives = [o for o in args.objectives.split(",") if o]
    unknown = sorted(set(objectives) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objective(s) {unknown}; expected some of {OBJECTIVES}")
    threads = set_threads(args.threads)
    device = torch.device(args.device)
    settings = [make_setting(s, args.batch) for s in args.settings.split(",") if s]
    if args.stacked:
        ks = [int(k) for k in args.stacked.split(",") if k]
        rows = []
        for setting in settings:
            part = stacked_benchmark(objectives, setting, ks, args.steps, args.warmup, args.rounds, device,
                                     args.cuda_graph)
            print(stacked_table(part, setting, device, threads, args.cuda_graph), flush=True)
            rows += part
        return rows
    print(f"device {device} ({describe(device)}), threads {threads}, timed steps {args.steps} "
          f"after {args.warmup} warm-up")
    print(HEADER)
    return benchmark(objectives, settings, args.precisions.split(","), args.steps, args.warmup, device,
                     args.compile)


def describe(device: torch.device) -> str:
    """CPU capability (e.g. AVX2) or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16(device)}"


if __name__ == "__main__":
    main()
