"""One pass, many collectors: analyze() runs ONE capture per batch and every collector agrees
with the same quantity computed directly from a capture of all the images at once."""
import numpy as np
import pytest
import torch

from clvsmim.analysis import (FourierSums, MetricSums, PatchTokens, PooledFeatures, QueryMaps, analyze,
                              pooled_features, query_attention_map, relative_log_amplitude)
from clvsmim.analysis.collectors import Collector, batch_sums
from clvsmim.config import ModelConfig
from clvsmim.models import build_vit, capture, square_geometry


def tiny_model(depth: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_vit(ModelConfig(img_size=16, patch_size=4, embed_dim=32, depth=depth, num_heads=2)).eval()


def images_and_labels(n: int = 7):
    images = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return images, torch.arange(n) % 3


def split(images, labels, sizes):
    """(images, labels) batches of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append((images[start:start + size], labels[start:start + size]))
        start += size
    return out


class CountForwards(Collector):
    """Counts the batches it sees and records whether attention maps were captured."""

    def __init__(self, attentions: bool):
        self.attentions = attentions
        self.calls, self.saw_attention = 0, []

    def update(self, captured, batch):
        self.calls += 1
        self.saw_attention.append(bool(captured.attentions))

    def result(self):
        return self.calls


def test_every_collector_matches_a_direct_capture_of_all_images():
    model = tiny_model()
    images, labels = images_and_labels()
    whole = capture(model, images)
    positions = [5, 1, 3]
    collected = analyze(model, split(images, labels, [3, 2, 2]), {
        "metrics": MetricSums(spectrum_every=1),
        "fourier": FourierSums(),
        "pooled": PooledFeatures("mean"),
        "cls_last": PooledFeatures("cls", depths=[-1]),
        "cls_norm": PooledFeatures("cls_norm", depths=[0, -1]),
        "tokens": PatchTokens(depths=[0, -1], positions=positions),
        "maps": QueryMaps([(0, 0), (2, 3)], block=2, position=4),
    })
    # metrics equal the default analyze() result (one-batch run)
    default = analyze(model, [images], spectrum_every=1)
    np.testing.assert_allclose(collected["metrics"]["fourier"]["curves"], default["fourier"]["curves"], atol=1e-9)
    np.testing.assert_allclose(collected["metrics"]["nmi"]["per_head"], default["nmi"]["per_head"], atol=1e-9)
    # Fourier curves: mean over images of the per-image curve, centred = relative_log_amplitude per depth
    direct = torch.stack([relative_log_amplitude(z) for z in whole.hidden_states])
    np.testing.assert_allclose(collected["fourier"].numpy(), direct.numpy(), atol=1e-9)
    # pooled features and labels, in image order
    feats, seen = collected["pooled"]
    assert seen.tolist() == labels.tolist() and len(feats) == 4
    for f, z in zip(feats, pooled_features(whole.hidden_states)):
        torch.testing.assert_close(f, z.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(collected["cls_last"][0][0], whole.hidden_states[-1][:, 0], atol=1e-5, rtol=1e-5)
    for f, z in zip(collected["cls_norm"][0], (whole.hidden_states[0], whole.hidden_states[-1])):  # same pass
        token = z[:, 0]
        manual = (token - token.mean(-1, keepdim=True)) / (token.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
        torch.testing.assert_close(f, manual, atol=1e-5, rtol=1e-5)
    # patch tokens of the chosen images, in the order asked for, prefix dropped
    first, last = collected["tokens"]
    assert first.shape == (3, 16, 32)
    torch.testing.assert_close(last, whole.hidden_states[-1][positions, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first, whole.hidden_states[0][positions, 1:], atol=1e-5, rtol=1e-5)
    # query maps of image 4 (second batch) at block 2
    attn = whole.attentions[1][4:5]
    expected = torch.stack([query_attention_map(attn, q, 1)[0] for q in [(0, 0), (2, 3)]]).double()
    torch.testing.assert_close(collected["maps"], expected, atol=1e-6, rtol=1e-6)


def test_one_capture_per_batch_and_attention_only_when_read():
    model = tiny_model()
    images, labels = images_and_labels()
    calls = 0

    def count(_module, _args, _out):
        nonlocal calls
        calls += 1

    handle = model.patch_embed.register_forward_hook(count)
    try:
        plain, attn = CountForwards(False), CountForwards(True)
        analyze(model, split(images, labels, [4, 3]), {"a": PooledFeatures(), "b": PatchTokens(), "c": plain})
        assert calls == 2 and plain.saw_attention == [False, False]
        calls = 0
        out = analyze(model, split(images, labels, [4, 3]), {"a": PooledFeatures(), "c": attn, "m": MetricSums()})
        assert calls == 2 and attn.saw_attention == [True, True] and out["c"] == 2
    finally:
        handle.remove()


def test_streamed_attention_equals_the_stored_maps_and_none_is_kept():
    """MetricSums reads each block's map while it is computed (capture's ``on_attention``), so
    the stored list stays empty, and its metrics equal those of the stored maps."""
    model = tiny_model()
    images, labels = images_and_labels()
    streamed = []
    live = capture(model, images, attentions=False, on_attention=lambda i, a: streamed.append((i, a.clone())))
    stored = capture(model, images)
    assert live.attentions == [] and [i for i, _ in streamed] == [0, 1, 2]
    for (_, a), b in zip(streamed, stored.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sums = batch_sums(stored, square_geometry(model), 0, 1)  # from the stored maps
    result = analyze(model, split(images, labels, [4, 3]), spectrum_every=1)  # streamed, two batches
    for name in ("attention_distance", "nmi"):
        np.testing.assert_allclose(result[name]["per_head"], (sums[name][0] / len(images)).numpy(), rtol=1e-6)  # float32 batches of 4 + 3 vs 7
    plain = CountForwards(False)
    analyze(model, split(images, labels, [4, 3]), {"c": plain, "m": MetricSums()})
    assert plain.saw_attention == [False, False]  # the metrics alone keep no map


def test_max_images_and_errors():
    model = tiny_model()
    images, labels = images_and_labels()
    feats, seen = analyze(model, split(images, labels, [4, 3]), {"p": PooledFeatures()}, max_images=5)["p"]
    assert feats[0].shape == (5, 32) and seen.tolist() == labels[:5].tolist()
    with pytest.raises(ValueError, match="no images"):
        analyze(model, [], {"p": PooledFeatures()})
    with pytest.raises(ValueError, match="out of range"):
        analyze(model, [images], {"p": PooledFeatures(depths=[9])})
    with pytest.raises(ValueError, match="1-based"):
        QueryMaps([(0, 0)], block=0)
    assert analyze(model, [images], {"q": QueryMaps([(0, 0)], position=99)})["q"] is None
