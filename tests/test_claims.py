"""Claims: the logic on hand-made result sets, the control rule, seeds, and one tiny end-to-end run."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from clvsmim import claims, cli
from clvsmim.train import zoo
from clvsmim.claims import Measurements, aggregate, claims_table, evaluate_claim, evaluate_claims
from clvsmim.claims.measure import model_names
from clvsmim.config import load_profile, profile_from_dict

L = 6


def _analysis(distance, nmi, cosine, fourier):
    return {"depth": L, "attention_distance": {"mean": [distance] * L}, "nmi": {"mean": [nmi] * L},
            "token_cosine": [0.5] + [cosine] * L, "fourier": {"delta_log_amplitude": [fourier] * (L + 1)}}


def _eval(per_layer, finetune, shape_bias):
    return {"linear_probe": {"per_layer": list(per_layer), "final": per_layer[-1]}, "finetune": finetune,
            "shape_texture": {"shape_bias": shape_bias}}


CL_LP = [0.10, 0.20, 0.30, 0.40, 0.50, 0.55, 0.60]  # best at the last block
MIM_LP = [0.15, 0.30, 0.45, 0.50, 0.45, 0.40, 0.35]  # peaks early, drops over the last blocks
CONTROL_LP = [0.15, 0.12, 0.10, 0.10, 0.10, 0.10, 0.10]


def holding_set() -> Measurements:
    """The paper's picture, clearly: every claim holds."""
    cl_eval, mim_eval = _eval(CL_LP, 0.60, 0.70), _eval(MIM_LP, 0.70, 0.30)
    return Measurements(
        analyses={"cl": _analysis(10.0, 0.00, 0.80, -3.0), "mim": _analysis(6.0, 0.30, 0.20, -1.5),
                  "control": _analysis(10.2, 0.00, 0.50, -2.0)},
        evaluations={"cl": cl_eval, "mim": mim_eval, "control": _eval(CONTROL_LP, 0.30, 0.50),
                     "cl-small": {"finetune": 0.50}, "cl-large": {"finetune": 0.55},
                     "mim-small": {"finetune": 0.50}, "mim-large": {"finetune": 0.70},
                     "control-large": {"finetune": 0.30}},
        cluster={"cl": {"depths": list(range(L + 1)), "score": [0.0] * L + [0.40]},
                 "mim": {"depths": list(range(L + 1)), "score": [0.0] * L + [0.00]},
                 "control": {"depths": list(range(L + 1)), "score": [0.0] * L + [0.05]}},
        sweep={0.0: mim_eval, 0.5: _eval([0.1] * L + [0.62], 0.72, 0.5), 1.0: cl_eval},
    )


def failing_set() -> Measurements:
    """CL and MIM swapped (and a poor hybrid): every claim fails."""
    m = holding_set()
    a, e, c = m.analyses, m.evaluations, m.cluster
    a["cl"], a["mim"] = a["mim"], a["cl"]
    e["cl"], e["mim"] = e["mim"], e["cl"]
    e["cl-large"], e["mim-large"] = e["mim-large"], e["cl-large"]
    c["cl"], c["mim"] = c["mim"], c["cl"]
    m.sweep = {0.0: e["mim"], 0.5: _eval([0.1] * L + [0.40], 0.50, 0.5), 1.0: e["cl"]}
    return m


def test_every_claim_holds_on_the_papers_picture():
    results = evaluate_claims(holding_set())
    assert [c.id for c in results] == list(claims.CLAIMS)
    assert {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"} <= {c.id for c in results}
    bad = {c.id: c.reason for c in results if c.verdict != "holds"}
    assert not bad
    for c in results:
        assert c.value is not None and c.value >= 0
        assert c.row in claims.ROWS and c.id in claims.ROWS[c.row]
        json.dumps(c.to_dict(), allow_nan=False)
    c7 = evaluate_claim("C7", holding_set())
    assert (c7.cl, c7.mim) == (L, 3) and c7.details["mim_drop"] == pytest.approx(0.15)
    c8 = evaluate_claim("C8", holding_set())
    assert c8.details["best_lam"] == 0.5 and c8.value == pytest.approx(0.02)


def test_c6_reports_the_binomial_standard_error_of_the_difference():
    m = holding_set()
    assert "difference_se" not in evaluate_claim("C6", m).details  # evaluations without counts
    m.evaluations["cl"]["shape_texture"]["num_decided"] = 100  # p = 0.7
    m.evaluations["mim"]["shape_texture"]["num_decided"] = 300  # p = 0.3
    c6 = evaluate_claim("C6", m)
    se = math.sqrt(0.7 * 0.3 / 100 + 0.3 * 0.7 / 300)
    assert c6.verdict == "holds" and c6.details["difference_se"] == pytest.approx(se) and c6.se == pytest.approx(se)
    assert c6.details["num_decided"] == [100, 300] and f"SE {se:.2g}" in c6.reason


def test_every_claim_is_reversed_when_cl_and_mim_swap():
    results = evaluate_claims(failing_set())
    wrong = {c.id: (c.verdict, c.reason) for c in results if c.verdict != "reversed"}
    assert not wrong


def test_ordering_without_moving_from_the_control_is_not_holds():
    m = holding_set()
    # C1: CL more global than MIM, but MIM is exactly as global as the untrained control
    m.analyses["mim"] = _analysis(10.0, 0.30, 0.20, -1.5)
    m.analyses["control"] = _analysis(10.0, 0.00, 0.50, -2.0)
    m.analyses["cl"] = _analysis(11.0, 0.00, 0.80, -3.0)
    c1 = evaluate_claim("C1", m)
    assert c1.cl > c1.mim and c1.verdict == "tie" and "but MIM has not moved away from the control" in c1.reason
    # C2: MIM's NMI no higher than the (collapsed) control's: not holds even though CL < MIM is false anyway
    m.analyses["mim"]["nmi"]["mean"] = [0.005] * L
    m.analyses["cl"]["nmi"]["mean"] = [-0.02] * L
    c2 = evaluate_claim("C2", m)
    assert c2.cl < c2.mim and c2.verdict == "tie"
    # C3 ("either"): ordered, but both within the margin of the control
    m.analyses["cl"]["token_cosine"] = [0.5] + [0.552] * L
    m.analyses["mim"]["token_cosine"] = [0.5] + [0.538] * L
    m.analyses["control"]["token_cosine"] = [0.5] + [0.545] * L
    c3 = evaluate_claim("C3", m)
    assert c3.value > claims.MARGINS["C3"] and c3.verdict == "tie"
    assert not c3.details["cl_moved"] and not c3.details["mim_moved"]
    # ... and holds once one of them moved away to its own side
    m.analyses["mim"]["token_cosine"] = [0.5] + [0.3] * L
    assert evaluate_claim("C3", m).verdict == "holds"
    # C7: the profile over depth is inherited from the control -> not holds
    m.evaluations["control"] = _eval([0.2, 0.35, 0.5, 0.55, 0.5, 0.55, 0.65], 0.3, 0.5)
    assert evaluate_claim("C7", m).verdict == "tie"
    # C8: a hybrid at the endpoints' level but no better than the control
    m.evaluations["control"] = _eval(CONTROL_LP[:-1] + [0.9], 0.9, 0.5)
    c8 = evaluate_claim("C8", m)
    assert c8.value >= 0 and c8.verdict == "tie"


def test_mim_fine_tuning_is_compared_with_the_untrained_control_of_its_own_architecture():
    """C10 / C11's control rule: MIM must beat fine-tuning *its own* encoder from scratch. With
    the shared control at 0.30 MIM (0.70) passes; with its own architecture's control at 0.75
    (an encoder that fine-tunes better untrained) pretraining did not help: a tie, not holds."""
    m = holding_set()
    m.names = {"control-mim": "random-simmim-S", "control-mim-large": "random-simmim-S"}
    m.evaluations["control-mim"] = {"finetune": 0.75}
    m.evaluations["control-mim-large"] = {"finetune": 0.75}
    c10, c11 = evaluate_claim("C10", m), evaluate_claim("C11", m)
    assert c10.verdict == "tie" and not c10.details["mim_moved"] and c10.control == pytest.approx(0.75)
    assert c10.details["control_model"] == "random-simmim-S" and "own architecture (random-simmim-S)" in c10.reason
    assert c10.details["gain_over_own_architecture"]["cl"] == pytest.approx(0.60 - 0.30)  # CL: the shared control
    assert c10.details["gain_over_own_architecture"]["mim"] == pytest.approx(0.70 - 0.75)
    assert c11.verdict == "tie" and c11.control == pytest.approx(0.75) and c11.details["models"]["control-large"] == "random-simmim-S"
    m.evaluations["control-mim"] = m.evaluations["control-mim-large"] = {"finetune": 0.40}
    assert evaluate_claim("C10", m).verdict == "holds" and evaluate_claim("C11", m).verdict == "holds"
    # named but not measured (a skipped model): the shared control, and the reason says so
    del m.evaluations["control-mim"]
    c10 = evaluate_claim("C10", m)
    assert c10.control == pytest.approx(0.30) and "was not measured" in c10.reason
    # CL's gain is measured against CL's own untrained encoder where it has one
    m.names["control-cl"], m.evaluations["control-cl"] = "random-moco-S", {"finetune": 0.45}
    c10 = evaluate_claim("C10", m)
    assert c10.details["gain_over_own_architecture"]["cl"] == pytest.approx(0.60 - 0.45)
    assert "CL's control is the untrained encoder of its own architecture (random-moco-S)" in c10.reason


def test_missing_inputs_are_inconclusive():
    empty = evaluate_claims(Measurements())
    assert {c.verdict for c in empty} == {"inconclusive"}
    m = holding_set()
    del m.analyses["control"]
    assert evaluate_claim("C1", m).verdict == "inconclusive"
    m = holding_set()
    m.evaluations["mim"] = _eval(MIM_LP, None, float("nan"))
    assert evaluate_claim("C6", m).verdict == "inconclusive"
    assert evaluate_claim("C10", m).verdict == "inconclusive"


def test_seeds_agree_or_the_verdict_is_inconclusive():
    held, failed = evaluate_claim("C1", holding_set()), evaluate_claim("C1", failing_set())
    assert aggregate([held, held]).verdict == "holds"
    assert aggregate([failed, failed, failed]).verdict == "reversed"
    assert aggregate([held, failed]).verdict == "inconclusive"
    profile = profile_from_dict({"name": "hand"})
    table = claims_table(profile, seeds=(0, 1), measurements={0: holding_set(), 1: failing_set()})
    assert {s.verdict for s in table.summaries} == {"inconclusive"}
    same = claims_table(profile, seeds=(3, 4), measurements={3: holding_set(), 4: holding_set()})
    assert same.counts() == {v: len(claims.CLAIMS) if v == "holds" else 0 for v in claims.VERDICTS}
    c1 = same["C1"].to_dict()
    assert c1["cl"]["mean"] == pytest.approx(10.0) and c1["cl"]["std"] == pytest.approx(0.0)
    assert [p["seed"] for p in c1["per_seed"]] == [3, 4]
    text = same.format()
    assert "C1" in text and "holds" in text
    assert same.markdown().count("\n") == len(claims.CLAIMS) + 1
    json.dumps(same.to_dict(), allow_nan=False)


def test_a_saved_table_loads_back_and_its_verdicts_are_checked(tmp_path, capsys):
    profile = profile_from_dict({"name": "hand"})
    table = claims_table(profile, seeds=(0, 1, 2),
                         measurements={0: holding_set(), 1: holding_set(), 2: failing_set()})
    path = table.save(tmp_path / "t.json")
    loaded = claims.ClaimsTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    md = loaded.markdown(per_seed=True).splitlines()
    assert len(md) == 2 + len(claims.CLAIMS) and "CL (seeds 0/1/2)" in md[0]
    c1 = next(line for line in md if line.startswith("| C1 "))
    assert "✓ ✓ ✗" in c1 and "10 / 10 / 6" in c1 and "**inconclusive**" in c1
    assert cli.main(["claims", "--show", str(path), "--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == loaded.markdown(per_seed=True) + f"\n\nNote: {loaded.note()}."  # hand-made: no SEs
    assert "margins alone" in loaded.note()
    # a stored verdict that its seeds do not give is an error naming the claim
    data = json.loads(path.read_text())
    data["claims"][0]["verdict"] = "holds"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="C1 is stored as 'holds'.*'inconclusive'"):
        claims.ClaimsTable.load(path)
    del data["seeds"]
    path.write_text(json.dumps(data))
    assert cli.main(["claims", "--show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvsmim claims: error:") and "missing key 'seeds'" in err and err.count("\n") == 1


def test_last_third_and_seed_profiles():
    assert claims.last_third(12) == [8, 9, 10, 11]
    assert claims.last_third(6) == [4, 5] and claims.last_third(3) == [2] and claims.last_third(1) == [0]
    profile = profile_from_dict(TINY)
    assert claims.seed_profile(profile, 0) is profile
    other = claims.seed_profile(profile, 1)
    assert other.train.seed == 1 and other.data == profile.data
    before = {s.name: s.key for s in zoo.zoo_specs(profile)}
    after = {s.name: s.key for s in zoo.zoo_specs(other)}
    assert before.keys() == after.keys() and all(before[n] != after[n] for n in before)
    assert claims.seeds_for(profile, 3) == [0, 1, 2]
    assert claims.seeds_for(profile, 2, first=5) == [5, 6]  # one seed per process: --first-seed


# --------------------------------------------------------------------------- end to end

TINY = {
    "name": "tiny-claims",
    "data": {"img_size": 16, "num_train": 48, "num_eval": 32},
    "model": {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
    "sizes": {"Ti": {"embed_dim": 8}, "S": {"embed_dim": 16}},
    "train": {"steps": 2, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
    "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
    "simmim": {"mask_patch_size": 8},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
    "eval": {"probe_steps": 2, "finetune_steps": 2, "batch_size": 32, "num_analysis_images": 8},
    "lams": [0.0, 0.5, 1.0],
}


@pytest.fixture
def tiny_yaml(tmp_path, monkeypatch):
    """TINY as a profile file, with its own cache and in-process zoo runs."""
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "default_jobs", lambda: 1)
    torch.set_num_threads(1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_claims_command_end_to_end(tmp_path, tiny_yaml, capsys):
    path = tiny_yaml
    out = tmp_path / "claims.json"
    assert cli.main(["claims", "--profile", str(path), "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "C1" in printed and "C8" in printed
    table = json.loads(out.read_text())
    assert table["profile"] == "tiny-claims" and table["seeds"] == [0, 1]
    assert [c["id"] for c in table["claims"]] == list(claims.CLAIMS)
    for c in table["claims"]:
        assert c["verdict"] in claims.VERDICTS
        assert [p["seed"] for p in c["per_seed"]] == [0, 1]
    # every seed's C1-C5 and C7-C11 carry a standard error (per-image bootstrap / binomial)
    for c in table["claims"]:
        if c["id"] not in ("C6",):
            assert all(p["se"] is not None and p["se"] >= 0 for p in c["per_seed"]), c["id"]
    finite = {c["id"] for c in table["claims"]
              if all(isinstance(c[k]["mean"], float) and math.isfinite(c[k]["mean"]) for k in ("cl", "mim", "value"))}
    assert {"C1", "C2", "C3", "C4", "C5", "C7", "C8", "C9", "C10", "C11"} <= finite
    models = table["models"]["0"]
    assert models["cl"] == "moco" and models["mim-large"] == "simmim-S" and models["lam=0.5"] == "hybrid-0.5-S"
    # the second seed trained its own models (the data stayed the same)
    c1 = next(c for c in table["claims"] if c["id"] == "C1")
    assert c1["cl"]["per_seed"][0] != c1["cl"]["per_seed"][1] and c1["cl"]["std"] is not None
    profile = claims.seed_profile(profile_from_dict(TINY), 1)
    assert all(zoo.is_built(profile, zoo.resolve(profile, n)) for n in ("moco", "simmim", "hybrid-0.5", "random"))
    # the per-image values behind the SEs average to the cached analysis' statistics
    from clvsmim.book.report import model_analysis
    from clvsmim.claims.per_image import per_image_statistics
    from clvsmim.methods import ModelRef

    for name in ("moco", "simmim"):
        ref = ModelRef(profile, name)
        per_image, analysis = per_image_statistics(ref), model_analysis(ref)
        mean = lambda rows: torch.tensor(rows, dtype=torch.float64).mean(0)  # noqa: E731
        assert torch.allclose(mean(per_image["attention_distance"]),
                              torch.tensor(analysis["attention_distance"]["mean"], dtype=torch.float64), atol=1e-4)
        assert torch.allclose(mean(per_image["nmi"]), torch.tensor(analysis["nmi"]["mean"], dtype=torch.float64),
                              atol=1e-5)
        assert torch.allclose(mean(per_image["token_cosine"]), torch.tensor(analysis["token_cosine"],
                                                                             dtype=torch.float64), atol=1e-5)
        assert torch.allclose(mean(per_image["fourier_delta"]), torch.tensor(
            analysis["fourier"]["delta_log_amplitude"], dtype=torch.float64), atol=1e-5)
        score = claims.token_cluster_scores(ref)["score"][-1]
        assert sum(per_image["silhouette"]) / len(per_image["silhouette"]) == pytest.approx(score, abs=1e-5)


def test_claims_skip_missing_models_leaves_their_claims_inconclusive(tmp_path, tiny_yaml, capsys):
    path = tiny_yaml
    zoo.build(profile_from_dict(TINY), only="moco,simmim,random", jobs=1, progress=False)  # no hybrid, no Ti
    args = ["claims", "--profile", str(path), "--no-build", "--no-progress", "--out", str(tmp_path / "c.json")]
    assert cli.main(args) == 2  # without --skip-missing an unbuilt model is an error naming it
    assert "moco-Ti" in capsys.readouterr().err
    assert cli.main(args + ["--skip-missing"]) == 0
    printed = capsys.readouterr().out
    table = json.loads((tmp_path / "c.json").read_text())
    by_id = {c["id"]: c for c in table["claims"]}
    assert {"moco-Ti", "simmim-Ti", "hybrid-0.5-S"} <= set(table["missing_models"]["0"]) and "left out" in printed
    # C8 (part of the λ sweep) and C11 (the Ti models) are not measured; the S-model claims are
    for cid in ("C8", "C11"):
        assert by_id[cid]["verdict"] == "inconclusive" and "not measured" in by_id[cid]["per_seed"][0]["reason"]
    for cid in ("C1", "C2", "C3", "C9", "C10"):
        assert math.isfinite(by_id[cid]["cl"]["mean"]) and math.isfinite(by_id[cid]["mim"]["mean"])


# --------------------------------------------------------------------------- uncertainty

def _with_images(m: Measurements, values: dict[str, list[float]], metric: str = "attention_distance") -> Measurements:
    """Per-image values of ``metric`` (the same value in every block) for CL / MIM / control."""
    width = {"attention_distance": L, "nmi": L}.get(metric, L + 1)
    m.per_image = {r: {metric: [[v] * width for v in vals]} for r, vals in values.items()}
    return m


def test_bootstrap_and_binomial_standard_errors_match_their_closed_forms():
    from clvsmim.uncertainty import binomial_se, bootstrap_se, paired_bootstrap_se, rate_difference_se

    rng = torch.Generator().manual_seed(0)
    x = torch.randn(400, generator=rng).double().numpy()
    assert bootstrap_se(x) == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)), rel=0.08)
    assert bootstrap_se(x) == bootstrap_se(x)  # deterministic
    shared = torch.randn(400, generator=rng).double().numpy() * 5
    # paired: the per-image effect shared by both models cancels
    assert paired_bootstrap_se(shared + x, shared) == pytest.approx(bootstrap_se(x), rel=1e-9)
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert rate_difference_se([0.7, 0.3], [100, 300]) == pytest.approx(math.sqrt(0.21 / 100 + 0.21 / 300))
    with pytest.raises(ValueError, match="n > 0"):
        binomial_se(0.5, 0)
    with pytest.raises(ValueError, match="one value per image"):
        paired_bootstrap_se([1.0, 2.0], [1.0])


def test_three_way_rule():
    from clvsmim.uncertainty import three_way

    assert three_way(0.05, 0.01, 0.02) == "holds"  # beyond 2 SE = 0.02 and the margin
    assert three_way(0.03, 0.02, 0.01) == "tie"  # within 2 SE = 0.04
    assert three_way(0.015, None, 0.02) == "tie"  # within the margin, no SE
    assert three_way(-0.05, 0.01, 0.02) == "reversed"


def test_c1_holds_ties_or_reverses_by_the_bootstrap_se_over_images():
    n = 64
    spread = [(-1) ** i * (1 + (i // 2) % 4) for i in range(n)]  # mean-0 per-image scatter, std ≈ 2.7
    # the means are those of holding_set: CL 10, MIM 6, control 10.2 px
    quiet = _with_images(holding_set(), {"cl": [10.0 + 0.01 * d for d in spread], "mim": [6.0] * n,
                                         "control": [10.2] * n})
    c1 = evaluate_claim("C1", quiet)
    assert c1.verdict == "holds" and 0 < c1.se < 0.1 and "SE" in c1.reason
    # the same means with a per-image scatter of ±22 px (SE ≈ 2.7): CL − MIM = 4 px is within 2 SE
    noisy = _with_images(holding_set(), {"cl": [10.0 + 8.0 * d for d in spread], "mim": [6.0] * n,
                                         "control": [10.2] * n})
    c1 = evaluate_claim("C1", noisy)
    assert c1.se > 2.0 and c1.verdict == "tie" and "do not differ beyond noise" in c1.reason
    swapped = failing_set()
    _with_images(swapped, {"cl": [6.0 + 0.01 * d for d in spread], "mim": [10.0] * n, "control": [10.2] * n})
    assert evaluate_claim("C1", swapped).verdict == "reversed"
    # the SE in the claim is that of the paired difference, from the same images
    from clvsmim.uncertainty import paired_bootstrap_se
    assert c1.se == pytest.approx(paired_bootstrap_se([10.0 + 8.0 * d for d in spread], [6.0] * n))


def test_accuracy_claims_use_the_binomial_se_of_the_evaluation_split():
    m = holding_set()
    m.evaluations["cl"]["linear_probe"]["final"] = 0.25
    m.evaluations["mim"]["linear_probe"]["final"] = 0.23
    m.evaluations["control"]["linear_probe"]["final"] = 0.16
    assert evaluate_claim("C9", m).verdict == "holds"  # no SE: the margin 0.01 alone
    m.num_eval = 2048  # SE of the difference ≈ 0.013: 0.02 is within 2 SE
    c9 = evaluate_claim("C9", m)
    assert c9.verdict == "tie" and c9.se == pytest.approx(math.sqrt((0.25 * 0.75 + 0.23 * 0.77) / 2048))
    m.num_eval = 100_000
    assert evaluate_claim("C9", m).verdict == "holds"
    m.evaluations["mim"]["linear_probe"]["final"] = 0.30
    assert evaluate_claim("C9", m).verdict == "reversed"


def _with_cls(evaluation: dict, per_layer) -> dict:
    """``evaluation`` plus a normed-CLS probe (``linear_probe_cls``) of ``per_layer``."""
    return {**evaluation, "linear_probe_cls": {"per_layer": list(per_layer), "final": per_layer[-1], "pool": "cls_norm"}}


def test_probe_claims_read_each_method_on_its_own_representation():
    assert claims.PROBE_POOL == {"cl": "cls_norm", "mim": "mean"}
    m = holding_set()
    e = m.evaluations
    # mean-pooled, CL is behind MIM; on its normed CLS token (MoCo v3's representation) it is ahead
    e["cl"]["linear_probe"]["final"], e["mim"]["linear_probe"]["final"] = 0.30, 0.35
    e["control"]["linear_probe"]["final"] = 0.10
    before = evaluate_claim("C9", m)
    assert before.verdict == "reversed" and before.details["pool"] == {"cl": "mean", "mim": "mean", "control": "mean"}
    assert "probes: every model on mean-pooled patch tokens (no normed-CLS probe measured for CL, the control: " \
           "mean-pooled read instead)" in before.reason
    e["cl"] = _with_cls(e["cl"], [0.1] * L + [0.45])
    e["control"] = _with_cls(e["control"], [0.1] * L + [0.12])
    after = evaluate_claim("C9", m)
    assert after.verdict == "holds" and after.cl == 0.45 and after.mim == 0.35 and after.control == 0.12
    assert after.details["pool"] == {"cl": "cls_norm", "mim": "mean", "control": "cls_norm"}
    assert "CL, the control on the normed CLS token; MIM on mean-pooled patch tokens" in after.reason
    assert "instead" not in after.reason
    # MIM is read mean-pooled even when it has a CLS probe
    e["mim"] = _with_cls(e["mim"], [0.1] * L + [0.90])
    assert evaluate_claim("C9", m).mim == 0.35
    # the control is read like CL (the rule compares them): a strong CLS control stops the claim
    e["control"] = _with_cls(e["control"], [0.1] * L + [0.46])
    assert e["control"]["linear_probe"]["final"] == 0.10 and evaluate_claim("C9", m).verdict == "tie"
    # ... and follows CL's fallback: without CL's CLS probe, the control's mean is read
    del e["cl"]["linear_probe_cls"]
    c9 = evaluate_claim("C9", m)
    assert c9.control == 0.10 and c9.details["pool"]["control"] == "mean"


def test_c7_reads_cl_on_the_cls_token_and_mim_mean_pooled():
    m = holding_set()
    e = m.evaluations
    # mean-pooled CL peaks early (as MIM); its CLS curve rises to the last block
    e["cl"]["linear_probe"] = {"per_layer": MIM_LP, "final": MIM_LP[-1]}
    assert evaluate_claim("C7", m).verdict != "holds"
    e["cl"] = _with_cls(e["cl"], CL_LP)
    e["control"] = _with_cls(e["control"], CONTROL_LP)
    e["mim"] = _with_cls(e["mim"], CL_LP)  # MIM's CLS curve does not drop: it must not be read
    c7 = evaluate_claim("C7", m)
    assert c7.verdict == "holds" and c7.cl == L and c7.details["cl_per_layer"] == CL_LP
    assert c7.details["mim_per_layer"] == MIM_LP
    assert c7.details["pool"] == {"cl": "cls_norm", "mim": "mean", "control_vs_cl": "cls_norm",
                                  "control_vs_mim": "mean"}
    assert "normed CLS token" in c7.reason and "mean-pooled" in c7.reason
    # CL vs the control with CLS: a CLS control as good as CL at the last block -> not holds,
    # while the mean-pooled control (compared with MIM) stays low
    e["control"] = _with_cls(e["control"], [0.1] * L + [0.60])
    c7 = evaluate_claim("C7", m)
    assert c7.verdict == "tie" and not c7.details["cl_moved"] and c7.details["mim_moved"]


def test_c6_is_not_measurable_when_a_cue_probe_is_near_chance():
    m = holding_set()
    for role, (shape, texture) in {"cl": (0.18, 0.19), "mim": (0.40, 0.35)}.items():
        m.evaluations[role]["shape_texture"].update(shape_acc=shape, texture_acc=texture)
    c6 = evaluate_claim("C6", m)
    assert c6.verdict == "not measurable" and "CL shape 0.180" in c6.reason and "CL texture 0.190" in c6.reason
    assert "chance" in c6.reason and c6.details["chance"] == pytest.approx(1 / 8)
    m.evaluations["cl"]["shape_texture"].update(shape_acc=0.30, texture_acc=0.26)  # both ≥ 2 × 1/8
    assert evaluate_claim("C6", m).verdict == "holds"
    text = claims.claim_markdown(c6)
    assert "Not measurable at this scale" in text


def test_the_recorded_table_without_standard_errors_still_shows(capsys):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "mini2-claims-3seeds.json"
    table = claims.ClaimsTable.load(path)
    assert not table.has_standard_errors and "without standard errors" in table.note()
    assert cli.main(["claims", "--show", str(path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| C1 " in out and "without standard errors" in out
    assert cli.main(["claims", "--show", str(path)]) == 0
    assert "note: recorded without standard errors" in capsys.readouterr().out


def test_the_claims_read_mims_own_control_only_where_its_architecture_differs():
    faithful, v2 = model_names(load_profile("mini3")), model_names(load_profile("mini2"))
    assert faithful["control-mim"] == "random-simmim-S" and faithful["control-mim-large"] == "random-simmim-S"
    assert faithful["control"] == "random" and not any(r.startswith("control-mim") for r in v2)
    assert "control-cl" not in faithful  # MoCo's encoder is the shared control's
