"""Repeated fine-tunes (`eval.finetune_repeats`): the runs are cached beside the evaluation without
changing its key, the accuracy is their mean, they travel with the fp16 weights, and the claims'
standard errors add the runs' variance."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from clvsmim.uncertainty import accuracy_contrast_se
from clvsmim.config import profile_from_dict
from clvsmim.evaluation import EVALUATION_SEED
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_encoder
from clvsmim.train.zoo_weights import export_zoo, install_zoo
from clvsmim.uncertainty import pack_correct, paired_rate_contrast_se

from test_zoo_weights import TINY

QUICK = {**TINY, "eval": {"probe_steps": 3, "finetune_steps": 3, "batch_size": 32, "num_analysis_images": 8}}


def _no(what):
    return lambda *a, **k: pytest.fail(f"{what} again")


def test_repeats_are_cached_beside_the_evaluation_and_travel_with_the_weights(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    once = profile_from_dict(QUICK)
    thrice = dataclasses.replace(once, eval=dataclasses.replace(once.eval, finetune_repeats=3))
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "trained"))
    zoo.build(once, only="random", jobs=1, progress=False)
    spec = zoo.resolve(once, "random")
    single = zoo.evaluations(once, only="random", jobs=1, progress=False)[spec.key]
    assert "finetune_runs" not in single
    assert zoo.eval_path(thrice, spec) == zoo.eval_path(once, spec)  # the repeats do not change the key

    real_evaluate, real_finetune_run = zoo.evaluate_model, zoo.finetune_run
    monkeypatch.setattr(zoo, "evaluate_model", _no("evaluated"))  # only the two repeats are computed
    merged = zoo.evaluations(thrice, only="random", jobs=1, progress=False)[spec.key]
    runs = merged["finetune_runs"]
    assert [r["seed"] for r in runs] == [EVALUATION_SEED, EVALUATION_SEED + 1, EVALUATION_SEED + 2]
    assert runs[0] == {"seed": EVALUATION_SEED, "accuracy": single["finetune"], "correct": single["finetune_correct"]}
    assert merged["finetune"] == pytest.approx(np.mean([r["accuracy"] for r in runs]))
    assert {k: v for k, v in merged.items() if k not in ("finetune", "finetune_runs")} == \
        {k: v for k, v in single.items() if k != "finetune"}
    assert zoo.finetune_repeats_path(thrice, spec).is_file()
    # a repeat with the evaluation's own seed is the evaluation's fine-tune, image for image
    encoder = load_encoder(zoo.model_dir(once, "random") / zoo.CHECKPOINT_NAME)
    again = zoo.finetune_run(encoder, once, EVALUATION_SEED)
    assert again["correct"] == single["finetune_correct"] and again["accuracy"] == single["finetune"]
    monkeypatch.setattr(zoo, "finetune_run", _no("fine-tuned"))  # cached: nothing runs
    assert zoo.evaluations(thrice, only="random", jobs=1, progress=False)[spec.key] == merged
    assert zoo.evaluations(once, only="random", jobs=1, progress=False)[spec.key] == single

    # fp16 weights: installed, evaluated with repeats, exported; a fresh install computes nothing
    monkeypatch.setattr(zoo, "evaluate_model", real_evaluate)
    monkeypatch.setattr(zoo, "finetune_run", real_finetune_run)
    export_zoo(once, tmp_path / "fp32")
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "fp16"))
    install_zoo(once, tmp_path / "fp32")
    evaluated = zoo.evaluations(thrice, only="random", jobs=1, progress=False)[spec.key]
    export_zoo(once, tmp_path / "ship")
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "fresh"))
    install_zoo(once, tmp_path / "ship")
    monkeypatch.setattr(zoo, "evaluate_model", _no("evaluated"))
    monkeypatch.setattr(zoo, "finetune_run", _no("fine-tuned"))
    assert zoo.evaluations(thrice, only="random", jobs=1, progress=False)[spec.key] == evaluated


def test_repeats_must_be_a_positive_count():
    with pytest.raises(ValueError, match="eval.finetune_repeats: expected a positive number"):
        profile_from_dict({**QUICK, "eval": {"finetune_repeats": 0}})


def _record(bits):
    return pack_correct(np.asarray(bits, dtype=bool))


def test_the_standard_error_adds_the_runs_variance():
    a, b = [1, 1, 0, 0], [1, 0, 0, 0]
    one, kind = accuracy_contrast_se([(1.0, 0.5, _record(a)), (-1.0, 0.25, _record(b))], 4)
    assert kind == "paired" and one == pytest.approx(paired_rate_contrast_se([a, b], [1.0, -1.0]))
    # identical runs: no run-to-run variance, the same SE
    same, kind = accuracy_contrast_se([(1.0, 0.5, [{"correct": _record(a)}] * 3), (-1.0, 0.25, _record(b))], 4)
    assert kind == "paired+runs" and same == pytest.approx(one)
    # closed form: A's runs get 2 and 4 of 4 images right (mean 0.75), B one run with 1 of 4
    runs = [{"correct": _record(a)}, {"correct": _record([1, 1, 1, 1])}]
    se, kind = accuracy_contrast_se([(1.0, 0.75, runs), (-1.0, 0.25, _record(b))], 4)
    # per image A − B: [0, 1, 0.5, 0.5], variance 0.125 over 4 images; A's run accuracies 0.5 and 1.0:
    # sample variance 0.125 over 2 runs
    assert kind == "paired+runs" and se == pytest.approx(math.sqrt(0.125 / 4 + 0.125 / 2))
    missing, kind = accuracy_contrast_se([(1.0, 0.75, runs + [{"correct": None}]), (-1.0, 0.25, _record(b))], 4)
    assert kind == "binomial"  # a run without its record: no paired SE
