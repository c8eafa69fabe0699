"""The model zoo: specs and keys, build once / resume / isolate failures, load, list, evaluate."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from clvsmim import cli
from clvsmim.train import trainer
from clvsmim.train import zoo
from clvsmim.config import profile_from_dict

TINY = {
    "name": "tiny",
    "data": {"img_size": 32, "num_train": 64, "num_eval": 32},
    "model": {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
    "sizes": {"Ti": {"embed_dim": 8}, "S": {"embed_dim": 16}, "B": {"embed_dim": 24}},
    "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1},
    "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
    "simmim": {"mask_patch_size": 8},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
    "eval": {"probe_steps": 5, "finetune_steps": 2, "batch_size": 32},
    "lams": [0.0, 0.5, 1.0],
}


@pytest.fixture
def profile():
    return profile_from_dict(TINY)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture
def train_calls(monkeypatch):
    """Count (and record the kwargs of) every trainer.train call, still training for real."""
    calls = []
    real = trainer.train

    def counting(objective, dataset, cfg, out_dir, **kwargs):
        calls.append({"name": kwargs["extra_meta"]["zoo_name"], "resume": kwargs.get("resume")})
        return real(objective, dataset, cfg, out_dir, **kwargs)

    monkeypatch.setattr(trainer, "train", counting)
    return calls


# --------------------------------------------------------------------------- specs

def test_specs_cover_objectives_lams_and_sizes(profile):
    specs = zoo.zoo_specs(profile)
    names = [s.name for s in specs]
    keys = [s.key for s in specs]
    assert len(set(keys)) == len(keys)
    assert zoo.default_size(profile) == "S"
    expected = {"moco-S", "simmim-S", "mae-S", "hybrid-0.5-S", "moco-Ti", "simmim-Ti", "moco-B", "simmim-B",
                "random-Ti", "random-S", "random-B"}
    assert set(names) == expected and len(names) == len(expected)  # the default size is not trained twice
    for s in specs:
        assert s.key.startswith(s.name + "-")
        assert (s.train_cfg is None) == (s.objective == "random")
    # the sweep's endpoints are the pure runs
    sweep = zoo.hybrid_sweep(profile)
    assert [lam for lam, _ in sweep] == [0.0, 0.5, 1.0]
    assert [s.name for _, s in sweep] == ["simmim-S", "hybrid-0.5-S", "moco-S"]
    assert zoo.resolve(profile, "hybrid-1").name == "moco-S"
    assert zoo.resolve(profile, "moco").key == zoo.resolve(profile, objective="moco", size="S").key
    assert zoo.resolve(profile, "simmim-Ti").model_cfg.embed_dim == 8
    with pytest.raises(KeyError):
        zoo.resolve(profile, "mae-Ti")


def test_status_lookups_leave_no_folder(profile, tmp_path):
    """Listing, resolving and checking a zoo that is not built create nothing in the cache (a
    book on the official checkpoints asks whether the gpu zoo exists; it must not appear)."""
    rows = zoo.list_models(profile)
    assert {r["status"] for r in rows} == {"missing"}
    assert not zoo.is_built(profile, zoo.resolve(profile, "moco")) and zoo.model_dir(profile, "moco").name.startswith("moco-")
    with pytest.raises(FileNotFoundError, match="not built"):
        zoo.load(profile, "moco")
    assert not (tmp_path / "cache" / "zoo").exists()


def test_keys_follow_the_configuration(profile):
    before = {s.name: s.key for s in zoo.zoo_specs(profile)}
    longer = dataclasses.replace(profile, train=dataclasses.replace(profile.train, steps=4))
    after = {s.name: s.key for s in zoo.zoo_specs(longer)}
    assert all(after[n] != before[n] for n in before if not n.startswith("random"))
    assert all(after[n] == before[n] for n in before if n.startswith("random"))
    tau = dataclasses.replace(profile, moco=dataclasses.replace(profile.moco, tau=0.5))
    after = {s.name: s.key for s in zoo.zoo_specs(tau)}
    assert after["moco-S"] != before["moco-S"] and after["hybrid-0.5-S"] != before["hybrid-0.5-S"]
    assert after["simmim-S"] == before["simmim-S"] and after["mae-S"] == before["mae-S"]
    evals = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, probe_steps=7))
    assert {s.name: s.key for s in zoo.zoo_specs(evals)} == before  # evaluation never retrains
    assert {s.name: s.key for s in zoo.zoo_specs(profile.with_data_root("/data/x"))}["moco-S"] != before["moco-S"]


def test_a_larger_evaluation_split_reevaluates_without_retraining(profile):
    from clvsmim.config import EvalConfig, to_dict

    n = profile.data.num_eval
    bigger = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, num_images=4 * n))
    assert {s.name: s.key for s in zoo.zoo_specs(bigger)} == {s.name: s.key for s in zoo.zoo_specs(profile)}
    spec = zoo.resolve(profile, "moco-S")
    assert zoo.eval_path(bigger, spec) != zoo.eval_path(profile, spec)
    assert zoo.eval_path(profile, spec, eval_format=zoo.EVAL_FORMAT - 1) != zoo.eval_path(profile, spec)  # a format is a new key
    assert profile.eval_data() == profile.data and bigger.eval_data().num_eval == 4 * n
    assert dataclasses.replace(bigger.eval_data(), num_eval=n) == profile.data  # nothing else changes
    assert bigger.with_data_root("/data/x").eval_data().num_eval == n  # a folder's val split is read whole
    assert "num_images" not in to_dict(EvalConfig())  # unset: every earlier evaluation key stands
    with pytest.raises(ValueError, match="eval.num_images: expected a positive number"):
        profile_from_dict({**TINY, "eval": {**TINY["eval"], "num_images": 0}})


# --------------------------------------------------------------------------- build

def test_build_trains_each_model_once_then_nothing(profile, train_calls):
    assert {r["status"] for r in zoo.list_models(profile)} == {"missing"}
    dirs = zoo.build(profile, jobs=1, progress=False)
    specs = zoo.zoo_specs(profile)
    assert set(dirs) == {s.key for s in specs}
    trained = sorted(c["name"] for c in train_calls)
    assert trained == sorted(s.name for s in specs if s.objective != "random")
    assert not any(c["resume"] for c in train_calls)
    mtimes = {k: (d / "done.json").stat().st_mtime_ns for k, d in dirs.items()}

    train_calls.clear()
    assert zoo.build(profile, jobs=1, progress=False) == dirs
    assert train_calls == []
    assert {k: (d / "done.json").stat().st_mtime_ns for k, d in dirs.items()} == mtimes

    rows = {r["name"]: r for r in zoo.list_models(profile)}
    assert {r["status"] for r in rows.values()} == {"cached"}
    assert rows["moco-S"]["steps"] == 3 and rows["moco-S"]["final_loss"] is not None
    assert rows["random-Ti"]["steps"] == 0
    done = json.loads((dirs[rows["hybrid-0.5-S"]["key"]] / "done.json").read_text())
    assert done["lam"] == 0.5 and done["objective"] == "hybrid" and done["complete"]

    enc = zoo.load_model(profile, "hybrid", lam=0.0)  # = the SimMIM model
    assert not enc.training and enc.embed_dim == 16
    ref = zoo.load(profile, "simmim")
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), ref.state_dict().values()))
    assert zoo.load(profile, "simmim-B").embed_dim == 24
    out = zoo.load(profile, "random-Ti").forward_features(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 1 + 16, 8)

    # evaluations: computed once, cached as JSON next to the checkpoint
    res = zoo.evaluations(profile, only="moco,random-S", jobs=1, progress=False)
    assert len(res) == 2
    key = zoo.resolve(profile, "moco").key
    assert zoo.eval_path(profile, zoo.resolve(profile, "moco")).is_file()
    assert len(res[key]["linear_probe"]["per_layer"]) == 3

    import clvsmim.evaluation as evaluation

    def boom(*args, **kwargs):
        raise AssertionError("re-evaluated a cached model")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluation, "evaluate_model", boom)
        assert zoo.evaluations(profile, only="moco,random-S", jobs=1, progress=False) == res


def test_failed_job_is_reported_and_others_finish(profile, monkeypatch):
    real = trainer.train

    def flaky(objective, dataset, cfg, out_dir, **kwargs):
        if kwargs["extra_meta"]["zoo_name"] == "simmim-Ti":
            raise RuntimeError("injected failure")
        return real(objective, dataset, cfg, out_dir, **kwargs)

    monkeypatch.setattr(trainer, "train", flaky)
    only = "moco-Ti,simmim-Ti,mae"
    with pytest.raises(zoo.ZooBuildError) as info:
        zoo.build(profile, only=only, jobs=1, progress=False)
    bad = zoo.resolve(profile, "simmim-Ti").key
    assert set(info.value.failures) == {bad}
    assert bad in str(info.value) and "injected failure" in str(info.value)
    assert set(info.value.built) == {zoo.resolve(profile, n).key for n in ("moco-Ti", "mae")}
    status = {r["name"]: r["status"] for r in zoo.list_models(profile)}
    assert status["moco-Ti"] == status["mae-S"] == "cached" and status["simmim-Ti"] == "missing"

    monkeypatch.setattr(trainer, "train", real)
    zoo.build(profile, only=only, jobs=1, progress=False)
    assert {r["name"]: r["status"] for r in zoo.list_models(profile)}["simmim-Ti"] == "cached"


def test_interrupted_run_resumes(profile, monkeypatch):
    real = trainer.train
    calls = []

    def crash_after_one_step(objective, dataset, cfg, out_dir, **kwargs):
        calls.append(kwargs.get("resume"))
        real(objective, dataset, cfg, out_dir, **{**kwargs, "stop_after": 1})
        raise RuntimeError("killed")

    monkeypatch.setattr(trainer, "train", crash_after_one_step)
    with pytest.raises(zoo.ZooBuildError):
        zoo.build(profile, only="simmim-Ti", jobs=1, progress=False)
    assert {r["name"]: r["status"] for r in zoo.list_models(profile)}["simmim-Ti"] == "partial"

    def recording(objective, dataset, cfg, out_dir, **kwargs):
        calls.append(kwargs.get("resume"))
        return real(objective, dataset, cfg, out_dir, **kwargs)

    monkeypatch.setattr(trainer, "train", recording)
    dirs = zoo.build(profile, only="simmim-Ti", jobs=1, progress=False)
    assert calls == [False, True]
    (path,) = dirs.values()
    assert json.loads((path / "done.json").read_text())["step"] == 3
    assert torch.load(path / "checkpoint.pt", weights_only=True)["step"] == 3


@pytest.mark.slow
def test_parallel_build_in_spawned_workers(profile):
    dirs = zoo.build(profile, only="moco-Ti,simmim-Ti", jobs=2, progress=False)
    assert len(dirs) == 2 and all((d / "done.json").is_file() for d in dirs.values())
    assert all(zoo.load(profile, k).embed_dim == 8 for k in dirs)


def test_cli_list_and_build(profile, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert cli.main(["zoo", "list", "--profile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "moco-S" in out and "missing" in out and "hybrid-0.5-S" in out
    assert cli.main(["zoo", "build", "--profile", str(path), "--only", "random-B", "--no-progress"]) == 0
    capsys.readouterr()
    cli.main(["zoo", "list", "--profile", str(path), "--json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["random-B"]["status"] == "cached" and rows["moco-S"]["status"] == "missing"


def test_only_is_a_priority_order_and_seed_selects_the_seeds_zoo(profile, tmp_path, capsys, train_calls):
    from clvsmim.config import seed_profile

    assert [s.name for s in zoo.select_specs(profile, "simmim-Ti,moco,simmim-Ti,random-B")] == [
        "simmim-Ti", "moco-S", "random-B"]  # given order, duplicates once
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert cli.main(["zoo", "build", "--profile", str(path), "--seed", "3", "--only", "simmim-Ti,moco-Ti",
                     "--jobs", "1", "--no-progress"]) == 0
    assert [c["name"] for c in train_calls] == ["simmim-Ti", "moco-Ti"]
    capsys.readouterr()
    cli.main(["zoo", "list", "--profile", str(path), "--seed", "3", "--json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    seeded = seed_profile(profile, 3)
    assert rows["moco-Ti"]["key"] == zoo.resolve(seeded, "moco-Ti").key != zoo.resolve(profile, "moco-Ti").key
    assert rows["moco-Ti"]["status"] == "cached" and zoo.is_built(seeded, zoo.resolve(seeded, "simmim-Ti"))
    assert not zoo.is_built(profile, zoo.resolve(profile, "moco-Ti"))  # the profile's own seed: untouched
