"""Images per second of :func:`clvsmim.data.make_synthetic` on one CPU thread.

Usage: ``python benchmarks/data_speed.py [--repeats 3]``. Prints one line per image size
and mode; the number is the best of ``repeats`` runs (after one warm-up run).
"""
from __future__ import annotations

import argparse
import time

import torch

from clvsmim.data import make_synthetic

#: images generated per timed run, per image size (about the same number of pixels each)
SIZES = {32: 4096, 64: 1024, 224: 96}


def images_per_second(n: int, img_size: int, mode: str, repeats: int) -> float:
    """Best-of-``repeats`` throughput of generating ``n`` images of ``img_size`` px."""
    make_synthetic(min(n, 64), img_size, seed=123, mode=mode)  # warm-up
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        make_synthetic(n, img_size, seed=r, mode=mode)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["independent"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for mode in args.modes:
        for size, n in SIZES.items():
            rate = images_per_second(n, size, mode, args.repeats)
            print(f"make_synthetic {mode:>11s} {size:>3d} px: {rate:10.0f} images/s  (n={n}, 1 thread)")


if __name__ == "__main__":
    main()
