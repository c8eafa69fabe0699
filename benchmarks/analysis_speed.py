"""Speed of ``clvsmim.analysis.analyze`` against a bare forward pass and a naive reference.

ViT-S/16 (timm ``vit_small_patch16_224``, random init) on one CPU batch of 16 images at 224 px:

* forward   — ``model.forward_features`` under ``no_grad`` (fused attention, timm default);
* capture   — :func:`clvsmim.models.capture` alone (unfused attention + hooks, no metrics);
* analyze   — :func:`clvsmim.analysis.analyze` on the same batch (one capture + all metrics);
* analyze, all collectors — the same ONE pass also feeding the probe features, the t-SNE
  tokens and the query maps (what ``clvsmim analyze`` collects);
* separate passes — the same four results with one pass per consumer (the layout before the
  collectors: metrics, probe features, tokens and maps each ran their own capture loop);
* naive     — one capture per metric, distance matrix by a Python double loop, explicit
  renormalisation, full FFT, ``svdvals`` per image.

Prints a table (median of ``--repeats`` rounds, each round times every method once, so a
change of machine load hits all of them) and the largest difference naive vs analyze.
Usage: ``python benchmarks/analysis_speed.py [--threads 2] [--batch 16] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import timm
import torch

from clvsmim.analysis import MetricSums, PatchTokens, PooledFeatures, QueryMaps, analyze
from clvsmim.models import capture, geometry


def naive_distance_matrix(h: int, w: int) -> torch.Tensor:
    """``N×N`` grid distances in patch units, by a Python double loop over patches."""
    n = h * w
    rows = [[math.dist(divmod(i, w), divmod(j, w)) for j in range(n)] for i in range(n)]
    return torch.tensor(rows)


def _renormalised(attn: torch.Tensor, p: int) -> torch.Tensor:
    a = attn[..., p:, p:]
    return a / a.sum(-1, keepdim=True)


def naive_attention_distance(model, images, geo) -> list[float]:
    d = naive_distance_matrix(*geo.grid)
    p = geo.num_prefix_tokens
    return [((_renormalised(a, p) * d).sum(-1).mean(-1) * geo.patch_size).mean().item()
            for a in capture(model, images, hidden_states=False).attentions]


def naive_nmi(model, images, geo) -> list[float]:
    out = []
    for attn in capture(model, images, hidden_states=False).attentions:
        a = _renormalised(attn, geo.num_prefix_tokens)
        n = a.shape[-1]
        p_k = a.mean(-2, keepdim=True)
        info = (a / n * torch.log(a / p_k)).nan_to_num().sum((-1, -2))
        h_k = -(p_k * p_k.log()).nan_to_num().sum((-1, -2))
        out.append((info / (math.log(n) * h_k).sqrt()).mean().item())
    return out


def naive_fourier(model, images, geo) -> list[float]:
    out = []
    for z in capture(model, images, attentions=False).hidden_states:
        x = z[:, geo.num_prefix_tokens:]
        b, n, c = x.shape
        h, w = geo.grid
        f = torch.fft.fft2(x.transpose(1, 2).reshape(b, c, h, w)).abs().add(1e-6).log()
        diag = torch.fft.fftshift(f, dim=(-2, -1)).mean((0, 1)).diag()[h // 2:]
        out.append((diag[-1] - diag[0]).item())
    return out


def naive_token_cosine(model, images, geo) -> list[float]:
    out = []
    for z in capture(model, images, attentions=False).hidden_states:
        x = torch.nn.functional.normalize(z[:, geo.num_prefix_tokens:], dim=-1)
        n = x.shape[1]
        sims = x @ x.mT
        out.append(((sims.sum((-1, -2)) - sims.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))).mean().item())
    return out


def naive_spectrum(model, images, geo) -> list[list[float]]:
    out = []
    for z in capture(model, images, attentions=False).hidden_states:
        x = z[:, geo.num_prefix_tokens:]
        s = torch.linalg.svdvals(x - x.mean(1, keepdim=True))
        out.append((s / s[:, :1]).mean(0).tolist())
    return out


def naive_analysis(model, images) -> dict:
    """Every metric by its own forward pass (what a straightforward script would do)."""
    geo = geometry(model)
    return {
        "attention_distance": naive_attention_distance(model, images, geo),
        "nmi": naive_nmi(model, images, geo),
        "fourier": naive_fourier(model, images, geo),
        "token_cosine": naive_token_cosine(model, images, geo),
        "svd_spectrum": naive_spectrum(model, images, geo),
    }


def max_differences(fast: dict, naive: dict) -> dict[str, float]:
    """Largest absolute difference per metric between analyze and the naive reference."""
    pairs = {
        "attention_distance": (fast["attention_distance"]["mean"], naive["attention_distance"]),
        "nmi": (fast["nmi"]["mean"], naive["nmi"]),
        "fourier": (fast["fourier"]["delta_log_amplitude"], naive["fourier"]),
        "token_cosine": (fast["token_cosine"], naive["token_cosine"]),
        "svd_spectrum": (fast["svd_spectrum"], naive["svd_spectrum"]),
    }
    return {name: (torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)).abs().max().item()
            for name, (a, b) in pairs.items()}


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False, num_classes=0).eval()
    size = model.patch_embed.img_size[0]
    images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.no_grad():
            model.forward_features(images)

    def collectors():
        return {"metrics": MetricSums(), "pooled": PooledFeatures(), "tokens": PatchTokens([-1]),
                "maps": QueryMaps([(0, 0), (7, 7)])}

    def separate_passes():
        for name, collector in collectors().items():
            analyze(model, [images], {name: collector})

    methods = {
        "forward (fused attention)": forward,
        "capture only (unfused + hooks)": lambda: capture(model, images),
        "analyze (spectrum_every=4, default)": lambda: analyze(model, [images]),
        "analyze, spectrum_every=1": lambda: analyze(model, [images], spectrum_every=1),
        "analyze, all collectors": lambda: analyze(model, [images], collectors()),
        "separate passes (4 consumers)": separate_passes,
        "naive (1 pass per metric)": lambda: naive_analysis(model, images),
    }
    forward()  # warm-up
    analyze(model, [images[:2]])
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(seconds(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["forward (fused attention)"]
    print(f"{args.model}, batch {args.batch}, {size} px, CPU, torch threads {args.threads}, "
          f"median of {args.repeats}")
    print(f"{'method':34s} {'seconds':>8s} {'× forward':>10s}")
    for name, value in medians.items():
        print(f"{name:34s} {value:8.3f} {value / base:10.2f}")
    diffs = max_differences(analyze(model, [images], spectrum_every=1), naive_analysis(model, images))
    print("max |analyze − naive|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))


if __name__ == "__main__":
    main()
