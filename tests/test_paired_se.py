"""Paired standard errors of accuracy contrasts: the closed form, the per-image records an
evaluation writes, and the claims that read them (C7–C11)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clvsmim import evaluation as E
from clvsmim.analysis import linear_probe_per_layer
from clvsmim.analysis.probe import linear_probe_correct_per_layer
from clvsmim.claims import evaluate_claim
from clvsmim.config import ModelConfig, profile_from_dict
from clvsmim.models import build_vit
from clvsmim.uncertainty import (binomial_se, pack_correct, paired_bootstrap_se, paired_rate_contrast_se,
                                 rate_difference_se, unpack_correct)
from test_claims import holding_set

N = 2048


def _hits(k: int, start: int = 0, n: int = N) -> np.ndarray:
    """Correct on images ``start … start + k − 1`` (wrapping), wrong elsewhere: accuracy k / n."""
    out = np.zeros(n, dtype=bool)
    out[(start + np.arange(k)) % n] = True
    return out


# --------------------------------------------------------------------------- the closed form

def test_paired_contrast_se_closed_forms():
    a = _hits(512)
    assert paired_rate_contrast_se([a], [1.0]) == pytest.approx(binomial_se(0.25, N))
    assert paired_rate_contrast_se([a, a], [1.0, -1.0]) == 0.0  # the same images right: no noise
    # complementary classifiers: d = 2a − 1, SE = 2·sqrt(p(1−p)/n)
    assert paired_rate_contrast_se([a, ~a], [1.0, -1.0]) == pytest.approx(2 * binomial_se(0.25, N))
    # nested: MIM right on 471 of CL's 512 images -> d ∈ {0, 1} with mean 41/2048
    p = 41 / N
    assert paired_rate_contrast_se([a, _hits(471)], [1.0, -1.0]) == pytest.approx(math.sqrt(p * (1 - p) / N))
    # independent classifiers: the unpaired formula
    rng = np.random.default_rng(0)
    x, y = rng.random(200_000) < 0.3, rng.random(200_000) < 0.6
    assert paired_rate_contrast_se([x, y], [1, -1]) == pytest.approx(
        rate_difference_se([x.mean(), y.mean()], [len(x)] * 2), rel=0.01)
    # ... and the bootstrap over images agrees with the closed form
    u, v = rng.random(N) < 0.4, rng.random(N) < 0.2
    v |= u & (rng.random(N) < 0.5)  # correlated: v tends to be right where u is
    assert paired_rate_contrast_se([u, v], [1, -1]) == pytest.approx(paired_bootstrap_se(u, v), rel=0.06)


def test_paired_contrast_se_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match=r"lengths \[4, 3\]"):
        paired_rate_contrast_se([[1, 0, 1, 1], [1, 0, 1]], [1, -1])
    with pytest.raises(ValueError, match="2 correctness vectors but 1 weights"):
        paired_rate_contrast_se([[1], [0]], [1])


def test_correctness_records_round_trip_and_reject_truncated_bits():
    for n in (1, 13, N):
        c = np.random.default_rng(n).random(n) < 0.5
        rec = pack_correct(c)
        assert rec["num_images"] == n and np.array_equal(unpack_correct(rec), c)
    assert unpack_correct(None) is None
    assert len(pack_correct(_hits(5))["bits"]) == 344  # 2048 bits -> 256 bytes -> 344 base64 characters
    bad = {**pack_correct(_hits(5, n=16)), "num_images": 40}
    with pytest.raises(ValueError, match="num_images=40"):
        unpack_correct(bad)


# --------------------------------------------------------------------------- the records an evaluation writes

def test_probe_correctness_averages_to_the_probe_accuracies():
    gen = torch.Generator().manual_seed(0)
    y, y_test = torch.arange(120) % 3, torch.arange(60) % 3
    feats = [torch.randn(120, 5, generator=gen) + s * torch.eye(3, 5)[y] for s in (0.0, 1.0, 3.0)]
    tests = [torch.randn(60, 5, generator=gen) + s * torch.eye(3, 5)[y_test] for s in (0.0, 1.0, 3.0)]
    acc = linear_probe_per_layer(feats, y, tests, y_test, steps=50, lr=1e-2, seed=0)
    correct = linear_probe_correct_per_layer(feats, y, tests, y_test, steps=50, lr=1e-2, seed=0)
    assert [float(c.double().mean()) for c in correct] == acc
    assert all(c.dtype == torch.bool and c.shape == (60,) for c in correct) and acc[2] > acc[0]


def test_evaluate_model_records_which_images_each_probe_and_the_fine_tune_get_right(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    model = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
    profile = profile_from_dict({"name": "tiny", "data": {"img_size": 32, "num_train": 64, "num_eval": 40},
                                 "model": model, "eval": {"probe_steps": 10, "finetune_steps": 2, "batch_size": 16,
                                                          "num_images": 56}})
    torch.manual_seed(0)
    encoder = build_vit(ModelConfig(**model)).eval()
    res = E.evaluate_model(encoder, profile)
    for key in ("linear_probe", "linear_probe_cls"):
        records = res[key]["correct_per_layer"]
        assert len(records) == 3 and all(r["num_images"] == 56 for r in records)  # eval.num_images, not data.num_eval
        assert [unpack_correct(r).mean() for r in records] == pytest.approx(res[key]["per_layer"], abs=1e-12)
    assert unpack_correct(res["finetune_correct"]).mean() == pytest.approx(res["finetune"], abs=1e-12)
    # the plain fine-tune is the same deterministic run
    from clvsmim.data import open_dataset
    assert res["data"]["num_eval"] == 56
    train, test = open_dataset(profile.data, "train"), open_dataset(profile.eval_data(), "eval")
    assert E.finetune(encoder, train, test, profile.eval) == res["finetune"]


# --------------------------------------------------------------------------- the claims that read them

def _probe(per_layer: list[float], correct: list[np.ndarray] | None = None) -> dict:
    out = {"per_layer": per_layer, "final": per_layer[-1]}
    if correct is not None:
        out["correct_per_layer"] = [pack_correct(c) for c in correct]
    return out


def _c9_set(records: bool):
    """CL 25 %, MIM 23 % (right on a subset of CL's images), control 16 % (a subset too)."""
    m = holding_set()
    m.num_eval = N
    hits = {"cl": _hits(512), "mim": _hits(471), "control": _hits(328)}
    for role, h in hits.items():
        m.evaluations[role] = {**m.evaluations[role], "linear_probe_cls": None,
                               "linear_probe": _probe([h.mean()], [h] if records else None)}
    return m


def test_c9_pairs_the_accuracies_on_the_same_images():
    unpaired = evaluate_claim("C9", _c9_set(records=False))
    assert unpaired.verdict == "tie" and unpaired.details["se_kind"] == "binomial"
    assert unpaired.se == pytest.approx(rate_difference_se([512 / N, 471 / N], [N, N]))
    paired = evaluate_claim("C9", _c9_set(records=True))
    p = 41 / N
    assert paired.se == pytest.approx(math.sqrt(p * (1 - p) / N))  # ≈ 0.31 points, against 1.3 unpaired
    assert paired.verdict == "holds" and paired.details["se_kind"] == "paired"
    assert "paired over the evaluation images" in paired.reason


def test_a_claim_falls_back_to_the_binomial_se_when_one_record_is_missing():
    m = _c9_set(records=True)
    del m.evaluations["mim"]["linear_probe"]["correct_per_layer"]
    c9 = evaluate_claim("C9", m)
    assert c9.details["se_kind"] == "binomial" and c9.verdict == "tie"


def test_c7_pairs_two_depths_of_one_probe():
    m = holding_set()
    m.num_eval = N
    cl = [_hits(k) for k in (300, 350, 400, 420)]  # best at the last block
    mim = [_hits(k) for k in (300, 400, 430, 400)]  # best at block 2, drops 30 images = 1.5 points
    ctrl = [_hits(k) for k in (300, 300, 300, 300)]
    acc = lambda hs: [float(h.mean()) for h in hs]  # noqa: E731
    for role, hs in (("cl", cl), ("mim", mim), ("control", ctrl)):
        m.evaluations[role] = {**m.evaluations[role], "linear_probe_cls": None, "linear_probe": _probe(acc(hs), hs)}
    c7 = evaluate_claim("C7", m)
    p = 30 / N
    assert c7.details["mim_drop"] == pytest.approx(p) and c7.se == pytest.approx(math.sqrt(p * (1 - p) / N))
    assert c7.verdict == "holds" and c7.details["se_kind"] == "paired"
    for role in ("cl", "mim", "control"):
        del m.evaluations[role]["linear_probe"]["correct_per_layer"]
    unpaired = evaluate_claim("C7", m)  # 1.5 points against 2 SE ≈ 2.6 points
    assert unpaired.verdict == "tie" and unpaired.details["se_kind"] == "binomial"


def test_c10_and_c11_pair_fine_tuning_on_the_same_images():
    m = holding_set()
    m.num_eval = N
    ft = {"cl": _hits(400), "mim": _hits(460), "control": _hits(300),
          "cl-small": _hits(380), "cl-large": _hits(400), "mim-small": _hits(380), "mim-large": _hits(460),
          "control-large": _hits(300)}
    for role, h in ft.items():
        m.evaluations[role] = {**m.evaluations.get(role, {}), "finetune": float(h.mean()),
                               "finetune_correct": pack_correct(h)}
    c10 = evaluate_claim("C10", m)
    assert c10.se == pytest.approx(paired_rate_contrast_se([ft["cl"], ft["mim"]], [1, -1]))
    assert c10.verdict == "holds" and c10.details["se_kind"] == "paired"
    c11 = evaluate_claim("C11", m)
    four = [ft[r] for r in ("mim-large", "mim-small", "cl-large", "cl-small")]
    assert c11.se == pytest.approx(paired_rate_contrast_se(four, [1, -1, -1, 1]))
    assert c11.value == pytest.approx(60 / N) and c11.verdict == "holds" and c11.details["se_kind"] == "paired"


def test_the_per_seed_markdown_writes_accuracy_differences_in_points():
    from clvsmim.claims.table import _difference_text

    assert _difference_text("C9", 0.0551, 0.0058) == "+5.5 ± 0.6 points"
    assert _difference_text("C10", -0.0376, None) == "−3.8 points"
    assert _difference_text("C1", 8.94, 0.07) == "8.94 ± 0.07"  # not an accuracy: unitless
