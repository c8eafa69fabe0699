"""Tests of clvsmim.analysis: closed forms, slow reference implementations, capture, analyze."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from clvsmim.analysis import (analyze, attention_distance, attention_nmi, attention_statistics,
                              collect_pooled_features, cosine_silhouette, image_cluster_score, linear_probe_per_layer,
                              pooled_features, query_attention_map, relative_log_amplitude,
                              singular_value_spectrum, token_cosine_similarity, token_tsne)
from clvsmim.config import ModelConfig
from clvsmim.models import build_vit, capture


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is fastest on a shared machine (restored after)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# ----------------------------------------------------------------------------- helpers
def random_attention(b: int, h: int, t: int, seed: int = 0, sharpness: float = 2.0) -> torch.Tensor:
    """Random row-stochastic ``b×h×t×t`` attention (float64)."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(b, h, t, t, generator=g, dtype=torch.float64), -1)


def with_cls(patch_attn: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Embed a patch-only attention into ``T = N + 1`` tokens, giving each row random CLS mass."""
    b, h, n, _ = patch_attn.shape
    g = torch.Generator().manual_seed(seed)
    cls_mass = 0.1 + 0.8 * torch.rand(b, h, n + 1, 1, generator=g, dtype=patch_attn.dtype)
    full = torch.zeros(b, h, n + 1, n + 1, dtype=patch_attn.dtype)
    full[..., 1:, 1:] = patch_attn * (1 - cls_mass[..., 1:, :])
    full[..., 1:, :1] = cls_mass[..., 1:, :]
    full[..., 0, :] = torch.softmax(torch.randn(b, h, n + 1, generator=g, dtype=patch_attn.dtype), -1)
    return full


def renormalised_patches(attn: np.ndarray, prefix: int) -> np.ndarray:
    a = attn[..., prefix:, prefix:]
    return a / a.sum(-1, keepdims=True)


def slow_distance(attn: torch.Tensor, patch_size: int, prefix: int) -> np.ndarray:
    a = renormalised_patches(attn.numpy(), prefix)
    b, h, n, _ = a.shape
    side = math.isqrt(n)
    out = np.zeros((b, h))
    for bi, hi in itertools.product(range(b), range(h)):
        total = 0.0
        for i in range(n):
            for j in range(n):
                gi, gj = divmod(i, side), divmod(j, side)
                total += a[bi, hi, i, j] * patch_size * math.dist(gi, gj)
        out[bi, hi] = total / n
    return out


def slow_nmi(attn: torch.Tensor, prefix: int) -> np.ndarray:
    a = renormalised_patches(attn.numpy(), prefix)
    b, h, n, _ = a.shape
    out = np.zeros((b, h))
    for bi, hi in itertools.product(range(b), range(h)):
        p_q = np.full(n, 1.0 / n)
        p_k = [sum(p_q[q] * a[bi, hi, q, k] for q in range(n)) for k in range(n)]
        info = sum(p_q[q] * a[bi, hi, q, k] * math.log(a[bi, hi, q, k] / p_k[k])
                   for q in range(n) for k in range(n) if a[bi, hi, q, k] > 0)
        h_q = -sum(p * math.log(p) for p in p_q)
        h_k = -sum(p * math.log(p) for p in p_k if p > 0)
        out[bi, hi] = info / math.sqrt(h_q * h_k)
    return out


def slow_relative_log_amplitude(z: torch.Tensor, prefix: int) -> np.ndarray:
    x = z.numpy()[:, prefix:]
    b, n, c = x.shape
    side = math.isqrt(n)
    maps = x.reshape(b, side, side, c).transpose(0, 3, 1, 2)
    f = np.log(np.abs(np.fft.fft2(maps)) + 1e-6)
    f = np.fft.fftshift(f, axes=(-2, -1)).mean(axis=(0, 1))
    diag = np.diag(f)[side // 2:]
    return diag - diag[0]


def slow_token_cosine(z: torch.Tensor, prefix: int) -> np.ndarray:
    x = z.numpy()[:, prefix:]
    out = []
    for img in x:
        sims = [img[i] @ img[j] / (np.linalg.norm(img[i]) * np.linalg.norm(img[j]))
                for i in range(len(img)) for j in range(len(img)) if i != j]
        out.append(np.mean(sims))
    return np.array(out)


def tiny_model(seed: int = 0, depth: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(img_size=16, patch_size=4, embed_dim=32, depth=depth, num_heads=2)
    return build_vit(cfg).eval()


def tiny_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- attention
def test_uniform_attention_distance_and_nmi_closed_forms():
    patch = 16
    attn = torch.full((2, 3, 5, 5), 1 / 5, dtype=torch.float64)  # CLS + 2×2 patches
    # 2×2 grid: from any patch the distances are 0, 1, 1, √2 (patch units)
    expected = patch * (2 + math.sqrt(2)) / 4
    assert torch.allclose(attention_distance(attn, patch), torch.full((2, 3), expected, dtype=torch.float64))
    assert torch.allclose(attention_nmi(attn), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12)
    # 5×5 grid against a brute-force mean pairwise distance
    side = 5
    cells = list(itertools.product(range(side), range(side)))
    brute = np.mean([math.dist(p, q) for p in cells for q in cells]) * patch
    uniform = torch.full((1, 1, side * side, side * side), 1 / side ** 2, dtype=torch.float64)
    assert attention_distance(uniform, patch, num_prefix_tokens=0).item() == pytest.approx(brute, rel=1e-12)


def test_identity_attention_distance_zero_nmi_one():
    eye = torch.eye(17, dtype=torch.float64).expand(2, 4, 17, 17)  # CLS + 4×4
    assert torch.allclose(attention_distance(eye, 16), torch.zeros(2, 4, dtype=torch.float64))
    assert torch.allclose(attention_nmi(eye), torch.ones(2, 4, dtype=torch.float64), atol=1e-12)
    eye32 = torch.eye(17).expand(1, 1, 17, 17)  # exact zeros in float32 must not give NaN
    assert attention_nmi(eye32).item() == pytest.approx(1.0, abs=1e-5)


def test_collapsed_attention_has_zero_nmi():
    attn = torch.zeros(1, 2, 10, 10, dtype=torch.float64)
    attn[..., 3] = 1.0  # every query attends to the same patch
    assert torch.equal(attention_nmi(attn), torch.zeros(1, 2, dtype=torch.float64))


def test_prefix_dropped_and_rows_renormalised():
    patch_only = random_attention(2, 3, 16, seed=3)
    full = with_cls(patch_only)
    assert torch.allclose(full.sum(-1), torch.ones(2, 3, 17, dtype=torch.float64))
    assert torch.allclose(attention_distance(full, 8), attention_distance(patch_only, 8, num_prefix_tokens=0))
    assert torch.allclose(attention_nmi(full), attention_nmi(patch_only, num_prefix_tokens=0))
    assert torch.allclose(query_attention_map(full, 5), query_attention_map(patch_only, 5, num_prefix_tokens=0))


@pytest.mark.parametrize("prefix,side", [(1, 3), (0, 4), (2, 3)])
def test_attention_metrics_match_slow_reference(prefix, side):
    attn = random_attention(2, 2, prefix + side * side, seed=side + prefix)
    np.testing.assert_allclose(attention_distance(attn, 16, prefix).numpy(), slow_distance(attn, 16, prefix),
                               rtol=1e-10)
    np.testing.assert_allclose(attention_nmi(attn, prefix).numpy(), slow_nmi(attn, prefix), rtol=1e-10)
    dist, nmi = attention_statistics(attn, 16, prefix)
    assert torch.allclose(dist, attention_distance(attn, 16, prefix))
    assert torch.allclose(nmi, attention_nmi(attn, prefix))


def test_attention_statistics_with_hard_attention_matches_slow_reference():
    """One image with hard attention (exact zeros: 0·log 0 = 0) among soft ones, through the
    shared workspace of attention_statistics."""
    prefix, side = 1, 3
    attn = random_attention(5, 2, prefix + side * side, seed=11)
    hard = torch.zeros(2, side * side, side * side, dtype=attn.dtype)
    hard[..., torch.arange(side * side), (torch.arange(side * side) + 1) % (side * side)] = 1.0
    attn[3] = with_cls(hard.unsqueeze(0), seed=3)[0]
    dist, nmi = attention_statistics(attn, 16, prefix)
    np.testing.assert_allclose(dist.numpy(), slow_distance(attn, 16, prefix), rtol=1e-10)
    np.testing.assert_allclose(nmi.numpy(), slow_nmi(attn, prefix), rtol=1e-10)


def test_attention_metrics_float32_close_to_float64():
    attn = random_attention(2, 3, 50, seed=7, sharpness=4.0)
    assert torch.allclose(attention_nmi(attn.float()).double(), attention_nmi(attn), atol=1e-5)
    assert torch.allclose(attention_distance(attn.float(), 16).double(), attention_distance(attn, 16), rtol=1e-5)


def test_query_attention_map_shape_sum_and_indexing():
    attn = random_attention(2, 3, 1 + 16, seed=5)
    maps = query_attention_map(attn, 6)
    assert maps.shape == (2, 3, 4, 4)
    assert torch.allclose(maps.sum((-1, -2)), torch.ones(2, 3, dtype=torch.float64))
    expected = renormalised_patches(attn.numpy(), 1)[:, :, 6].reshape(2, 3, 4, 4)
    np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-12)
    assert torch.equal(query_attention_map(attn, (1, 2)), maps)  # row 1, col 2 = index 6
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        query_attention_map(attn, 16)
    with pytest.raises(ValueError, match="4×4 grid"):
        query_attention_map(attn, (4, 0))


# ----------------------------------------------------------------------------- tokens / Fourier
def grid_tokens(maps: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """``B×C×h×w`` maps -> ``B×(prefix + h·w)×C`` tokens with random prefix tokens."""
    b, c, h, w = maps.shape
    tokens = maps.permute(0, 2, 3, 1).reshape(b, h * w, c)
    return torch.cat([torch.randn(b, prefix, c, dtype=maps.dtype), tokens], dim=1)


@pytest.mark.parametrize("side,prefix", [(4, 1), (5, 1), (7, 0), (14, 2)])
def test_relative_log_amplitude_matches_fft_reference(side, prefix):
    z = torch.randn(3, prefix + side * side, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(side))
    curve = relative_log_amplitude(z, prefix)
    assert curve.shape == (side - side // 2,)
    assert curve[0] == 0
    np.testing.assert_allclose(curve.numpy(), slow_relative_log_amplitude(z, prefix), atol=1e-9)
    np.testing.assert_allclose(relative_log_amplitude(z.float(), prefix).numpy(), curve.numpy(), atol=1e-4)


def test_flat_spectrum_gives_zero_differences_constant_map_only_dc():
    impulse = torch.zeros(2, 3, 6, 6, dtype=torch.float64)
    impulse[:, :, 2, 3] = torch.tensor([1.0, -2.0, 0.5])  # |FFT| constant in frequency
    assert torch.allclose(relative_log_amplitude(grid_tokens(impulse)), torch.zeros(3, dtype=torch.float64),
                          atol=1e-12)
    constant = torch.full((2, 3, 6, 6), 2.0, dtype=torch.float64)  # all energy at zero frequency
    expected = math.log(1e-6) - math.log(36 * 2.0 + 1e-6)
    np.testing.assert_allclose(relative_log_amplitude(grid_tokens(constant)).numpy(),
                               [0.0, expected, expected], atol=1e-9)


def test_checkerboard_high_frequency_ramp_low_frequency():
    side = 7
    r, c = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    checker = ((-1.0) ** (r + c)).to(torch.float64).expand(1, 4, side, side)
    curve = relative_log_amplitude(grid_tokens(checker))
    # separable: |X(u)| = 1/|cos(πu/7)| per axis, so Δ(u) = −2·log|cos(πu/7)|
    expected = [-2 * math.log(abs(math.cos(math.pi * u / side))) for u in range(side - side // 2)]
    np.testing.assert_allclose(curve.numpy(), expected, atol=1e-6)
    assert curve[-1] > 2.5
    ramp = (r + c).to(torch.float64).expand(1, 4, side, side)
    assert relative_log_amplitude(grid_tokens(ramp))[-1] < -2.0


def test_token_cosine_similarity():
    same = torch.randn(1, 1, 8).expand(2, 1 + 9, 8).clone()
    same[:, 0] = torch.randn(8)  # CLS differs, ignored
    assert torch.allclose(token_cosine_similarity(same), torch.ones(2), atol=1e-6)
    z = torch.randn(3, 1 + 16, 5, dtype=torch.float64)
    np.testing.assert_allclose(token_cosine_similarity(z).numpy(), slow_token_cosine(z, 1), rtol=1e-10)


def test_singular_value_spectrum_matches_numpy():
    z = torch.randn(3, 1 + 9, 12, dtype=torch.float64)
    per_image = []
    for img in z[:, 1:].numpy():
        s = np.linalg.svd(img - img.mean(0), compute_uv=False)
        per_image.append(s / s[0])
    spectrum = singular_value_spectrum(z)
    assert spectrum.shape == (9,) and spectrum[0] == pytest.approx(1.0)
    np.testing.assert_allclose(spectrum.numpy(), np.mean(per_image, 0), atol=1e-7)
    stacked = z[:, 1:].reshape(-1, 12).numpy()
    s = np.linalg.svd(stacked - stacked.mean(0), compute_uv=False)
    np.testing.assert_allclose(singular_value_spectrum(z, per_image=False).numpy(), s / s[0], atol=1e-7)
    s = np.linalg.svd(z[0, 1:].numpy(), compute_uv=False)
    np.testing.assert_allclose(singular_value_spectrum(z[:1], center=False, normalize="sum").numpy(),
                               s / s.sum(), atol=1e-7)
    rank_one = torch.randn(1, 1 + 16, 1) * torch.randn(1, 1, 8)
    spec = singular_value_spectrum(rank_one.double(), center=False)
    assert spec[0] == pytest.approx(1.0) and spec[1:].abs().max() < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cosine_silhouette_matches_sklearn(seed):
    """The linear-time silhouette equals scikit-learn's O(N²) one, singleton groups and a zero row included."""
    from sklearn.metrics import silhouette_samples, silhouette_score

    from clvsmim.analysis.tokens import cosine_silhouette_samples

    rng = np.random.default_rng(seed)
    n, d, k = 60, 7, 6
    labels = rng.integers(0, k, n)
    labels[0] = k  # a singleton group (sklearn: s = 0 there)
    x = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(k + 1, d))[labels]
    if seed == 2:
        x[5] = 0.0  # zero row: sklearn keeps it at zero norm (distance 1 to everything)
    expected = silhouette_score(x, labels, metric="cosine")
    assert cosine_silhouette(x, labels) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(cosine_silhouette_samples(x, labels), silhouette_samples(x, labels, metric="cosine"),
                               atol=1e-6)  # every row's own silhouette, not only the mean
    shuffled = rng.permutation(n)  # row order does not matter
    assert cosine_silhouette(x[shuffled], labels[shuffled]) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="2 ≤ number of groups"):
        cosine_silhouette(x, np.zeros(n))
    with pytest.raises(ValueError, match="one label per row"):
        cosine_silhouette(x, labels[:-1])


def test_token_tsne_and_image_cluster_score():
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(3, 1, 10, generator=g)
    clustered = centres + 0.1 * torch.randn(3, 1 + 9, 10, generator=g)  # 3 images × 9 patches
    ids = torch.arange(3)
    emb = token_tsne(clustered, ids, perplexity=5, seed=0)
    assert emb.shape == (27, 2) and np.isfinite(emb).all()
    np.testing.assert_array_equal(emb, token_tsne(clustered, ids, perplexity=5, seed=0))
    assert image_cluster_score(clustered, ids) > 0.8
    mixed = torch.randn(3, 1 + 9, 10, generator=g)
    assert abs(image_cluster_score(mixed, ids)) < 0.2
    flat = clustered[:, 1:].reshape(27, 10)  # N_tokens×C with per-token ids
    assert image_cluster_score(flat, ids.repeat_interleave(9)) == pytest.approx(image_cluster_score(clustered, ids))
    with pytest.raises(ValueError, match="perplexity"):
        token_tsne(clustered, ids, perplexity=30)
    with pytest.raises(ValueError, match="one image id per image"):
        image_cluster_score(clustered, [0, 1])


# ----------------------------------------------------------------------------- probing
def test_pooled_features_modes():
    z = torch.randn(2, 1 + 4, 3)
    assert torch.equal(pooled_features(z, "cls"), z[:, 0])
    assert torch.allclose(pooled_features([z, z])[1], z[:, 1:].mean(1))
    with pytest.raises(ValueError, match="'mean', 'cls', 'cls_norm'"):
        pooled_features(z, "max")
    for mode in ("cls", "cls_norm"):
        with pytest.raises(ValueError, match="num_prefix_tokens=0"):
            pooled_features(z[:, 1:], mode, num_prefix_tokens=0)


def test_cls_norm_is_the_normalised_cls_token():
    """Against a slow per-image loop: (x − mean) / sqrt(var + 1e-6) over the channels of token 0."""
    z = 3.0 * torch.randn(4, 1 + 9, 7, dtype=torch.float64) + 5.0
    got = pooled_features(z, "cls_norm")
    for b in range(4):
        x = [float(v) for v in z[b, 0]]
        mean = sum(x) / len(x)
        var = sum((v - mean) ** 2 for v in x) / len(x)
        expected = torch.tensor([(v - mean) / math.sqrt(var + 1e-6) for v in x], dtype=torch.float64)
        torch.testing.assert_close(got[b], expected)
    # a per-token scale and shift of the CLS token does not change it (the other tokens never do)
    moved = z.clone()
    moved[:, 0] = 2.5 * z[:, 0] - 4.0
    moved[:, 1:] = torch.randn_like(z[:, 1:])
    torch.testing.assert_close(pooled_features(moved, "cls_norm"), got, atol=1e-6, rtol=1e-6)


def test_linear_probe_per_layer_separable_vs_noise_and_deterministic():
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.randint(3, (120,), generator=g), torch.randint(3, (60,), generator=g)
    means = 4 * torch.randn(3, 8, generator=g)
    informative = [means[y] + torch.randn(len(y), 8, generator=g) for y in (y_train, y_test)]
    noise = [torch.randn(len(y), 8, generator=g) for y in (y_train, y_test)]
    args = ([informative[0], noise[0]], y_train, [informative[1], noise[1]], y_test)
    acc = linear_probe_per_layer(*args, steps=100, lr=0.05, seed=0)
    assert acc[0] > 0.95 and acc[1] < 0.6
    assert acc == linear_probe_per_layer(*args, steps=100, lr=0.05, seed=0)
    mini = linear_probe_per_layer(*args, steps=100, lr=0.05, seed=1, batch_size=32)
    assert mini == linear_probe_per_layer(*args, steps=100, lr=0.05, seed=1, batch_size=32) and mini[0] > 0.9
    with pytest.raises(ValueError, match="one label per sample"):
        linear_probe_per_layer([informative[0]], y_train[:10], [informative[1]], y_test, steps=1, lr=0.1, seed=0)


def test_collect_pooled_features_shapes():
    model = tiny_model(depth=2)
    loader = [(tiny_images(3, s), torch.tensor([0, 1, 2])) for s in range(2)]
    feats, labels = collect_pooled_features(model, loader, max_images=5)
    assert len(feats) == 3 and all(f.shape == (5, 32) for f in feats) and labels.tolist() == [0, 1, 2, 0, 1]


# ----------------------------------------------------------------------------- capture / analyze
def test_capture_attention_equals_manual_softmax():
    model = tiny_model(depth=3)
    images = tiny_images(2)
    cap = capture(model, images)
    assert len(cap.attentions) == 3 and len(cap.hidden_states) == 4
    with torch.no_grad():
        for block, x, attn in zip(model.blocks, cap.hidden_states, cap.attentions):
            b, t, c = x.shape
            heads = block.attn.num_heads
            qkv = block.attn.qkv(block.norm1(x)).reshape(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            q, k = block.attn.q_norm(qkv[0]), block.attn.k_norm(qkv[1])
            manual = torch.softmax(q @ k.transpose(-2, -1) * block.attn.scale, dim=-1)
            assert torch.allclose(attn, manual, atol=1e-6)


def test_analyze_running_means_equal_single_batch():
    model = tiny_model(depth=2)
    images = tiny_images(5)
    labels = torch.arange(5)
    split = analyze(model, [(images[:2], labels[:2]), (images[2:], labels[2:])])
    whole = analyze(model, [images])
    assert split["num_images"] == whole["num_images"] == 5
    for key in ("attention_distance", "nmi", "fourier"):
        for sub in split[key]:
            np.testing.assert_allclose(split[key][sub], whole[key][sub], rtol=1e-6, atol=1e-9)
    for key in ("token_cosine", "svd_spectrum"):
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, atol=1e-9)
    truncated = analyze(model, [images[:2], images[2:]], max_images=3)
    reference = analyze(model, [images[:3]])
    assert truncated["num_images"] == 3
    np.testing.assert_allclose(truncated["nmi"]["per_head"], reference["nmi"]["per_head"], rtol=1e-6)


def test_analyze_structure_and_values_match_metric_functions():
    model = tiny_model(depth=2)
    model.train()
    images = tiny_images(3)
    result = analyze(model, [images], spectrum_every=1)
    assert model.training  # restored
    json.dumps(result)
    assert (result["depth"], result["num_heads"], result["patch_size"], result["grid"]) == (2, 2, 4, [4, 4])
    assert len(result["attention_distance"]["per_head"]) == 2 and len(result["attention_distance"]["per_head"][0]) == 2
    assert len(result["nmi"]["mean"]) == 2
    assert len(result["fourier"]["delta_log_amplitude"]) == 3 and len(result["fourier"]["curves"][0]) == 2
    assert len(result["token_cosine"]) == 3 and len(result["svd_spectrum"][0]) == 16
    model.eval()
    cap = capture(model, images)
    np.testing.assert_allclose(result["attention_distance"]["per_head"][1],
                               attention_distance(cap.attentions[1], 4).mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(result["nmi"]["mean"][0], attention_nmi(cap.attentions[0]).mean().item(), rtol=1e-5)
    np.testing.assert_allclose(result["fourier"]["curves"][2], relative_log_amplitude(cap.hidden_states[2]).numpy(),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result["token_cosine"][0], token_cosine_similarity(cap.hidden_states[0]).mean().item(),
                               rtol=1e-5)
    # analyze solves the spectra in float32 (SPECTRUM_DTYPE): within ~1e-3 of the largest value
    np.testing.assert_allclose(result["svd_spectrum"][1], singular_value_spectrum(cap.hidden_states[1]).numpy(),
                               rtol=1e-4, atol=1e-3)


def test_batched_eigvalsh_threads_and_float32_spectra():
    from clvsmim.analysis.tokens import batched_eigvalsh, singular_values

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 12, 20, generator=g, dtype=torch.float64)
    gram = x @ x.mT
    serial = batched_eigvalsh(gram)
    assert serial.shape == (3, 5, 12)
    torch.testing.assert_close(batched_eigvalsh(gram, workers=4), serial, rtol=0, atol=0)  # same solver per matrix
    torch.testing.assert_close(serial, torch.linalg.eigvalsh(gram))
    exact = torch.linalg.svdvals(x - x.mean(-2, keepdim=True))
    torch.testing.assert_close(singular_values(x, workers=2), exact, rtol=1e-9, atol=1e-6)  # rank-deficient: 0 ~ 1e-7
    fast = singular_values(x.float(), dtype=torch.float32, workers=2)
    assert fast.dtype == torch.float32
    assert ((fast.double() - exact).abs() / exact[..., :1]).max() < 1e-3


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_value_errors():
    with pytest.raises(ValueError, match=r"B×H×T×T.*found shape \(3, 10, 10\)"):
        attention_distance(torch.rand(3, 10, 10), 16)
    with pytest.raises(ValueError, match=r"T=11 .* N=10 patch tokens, which is not a perfect square"):
        attention_nmi(torch.rand(1, 1, 11, 11))
    with pytest.raises(ValueError, match=r"B×T×C.*found shape \(10, 4\)"):
        relative_log_amplitude(torch.rand(10, 4))
    with pytest.raises(ValueError, match="T=9 with num_prefix_tokens=1 -> N=8"):
        token_cosine_similarity(torch.rand(2, 9, 4))  # 9 tokens minus CLS
    with pytest.raises(ValueError, match="'max' or 'sum'"):
        singular_value_spectrum(torch.rand(1, 5, 3), normalize="l2")
    with pytest.raises(ValueError, match="no images"):
        analyze(tiny_model(), [])
    with pytest.raises(ValueError, match=r"B×3×H×W.*found shape \(3, 16, 16\)"):
        analyze(tiny_model(), [torch.rand(3, 16, 16)])
    with pytest.raises(ValueError, match="found str"):
        analyze(tiny_model(), ["not a batch"])


def test_analyze_spectrum_subsampling_is_batch_split_invariant():
    model = tiny_model(depth=1)
    images = tiny_images(7)
    split = analyze(model, [images[:3], images[3:5], images[5:]], spectrum_every=3)
    whole = analyze(model, [images], spectrum_every=3)
    assert split["svd_num_images"] == whole["svd_num_images"] == 3  # images 0, 3, 6
    np.testing.assert_allclose(split["svd_spectrum"], whole["svd_spectrum"], rtol=1e-6, atol=1e-9)
    cap = capture(model, images[[0, 3, 6]])
    np.testing.assert_allclose(whole["svd_spectrum"][1], singular_value_spectrum(cap.hidden_states[1]).numpy(),
                               rtol=1e-4, atol=1e-3)  # float32 spectra in analyze
    np.testing.assert_allclose(whole["token_cosine"], analyze(model, [images])["token_cosine"], rtol=1e-6)
    with pytest.raises(ValueError, match="spectrum_every must be >= 1"):
        analyze(model, [images], spectrum_every=0)


def test_spectrum_selection_picks_global_multiples_in_any_batch_split():
    from clvsmim.analysis.pipeline import spectrum_selection

    picked, start = [], 0
    for size in (1, 2, 3, 1, 5, 4):  # batches shorter than the stride included
        picked += (spectrum_selection(start, size, 4) + start).tolist()
        start += size
    assert picked == list(range(0, start, 4))
