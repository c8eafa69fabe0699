"""C5's silhouette: linear-time :func:`clvsmim.analysis.cosine_silhouette` vs scikit-learn.

Tokens grouped by image, cosine distance, at the paper's analysis size by default:
256 images × 196 tokens × 768 channels (one ViT-B/16 depth at 224 px). Random tokens with a
per-image offset so that the score is neither 0 nor 1. Prints both wall times (best of
``--repeats``), the speed-up and the largest difference of the two scores.
Usage: ``python benchmarks/silhouette_speed.py [--images 256] [--tokens 196] [--dim 768] [--repeats 1]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import silhouette_score

from clvsmim.analysis import cosine_silhouette


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall time in s, value) of ``repeats`` calls of ``fn``."""
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=196)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(args.images), args.tokens)
    x = rng.normal(size=(len(ids), args.dim)) + 0.5 * rng.normal(size=(args.images, args.dim))[ids]
    fast, s_fast = best_time(lambda: cosine_silhouette(x, ids), args.repeats)
    slow, s_slow = best_time(lambda: silhouette_score(x, ids, metric="cosine"), args.repeats)
    print(f"{args.images} images × {args.tokens} tokens × {args.dim} dims ({len(ids)} tokens)")
    print(f"  sklearn silhouette_score(cosine): {slow:8.2f} s   score {s_slow:+.6f}")
    print(f"  cosine_silhouette (linear):       {fast:8.2f} s   score {s_fast:+.6f}")
    print(f"  speed-up ×{slow / fast:.0f}, |difference| {abs(s_fast - s_slow):.1e}")


if __name__ == "__main__":
    main()
