"""Shipping a zoo: export to fp16 safetensors + provenance, verified install, refusal of bad files;
carrying interrupted runs: park, verify, unpark into another cache, resume bit-exactly."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from clvsmim import cli
from clvsmim.train import trainer
from clvsmim.train import zoo
from clvsmim.train.checkpoint import load_objective_state
from clvsmim.config import profile_from_dict, seed_profile
from clvsmim.objectives import build_objective
from clvsmim.train.zoo_park import park_manifest_path, park_runs, unpark_runs
from clvsmim.train.zoo_weights import ZooWeightsError, export_zoo, install_zoo, weights_paths

TINY = {
    "name": "tiny",
    "data": {"img_size": 32, "num_train": 64, "num_eval": 32},
    "model": {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
    "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1},
    "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
    "simmim": {"mask_patch_size": 8},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
    "lams": [0.0, 1.0],
}
MODELS = "moco,mae,random"


@pytest.fixture
def profile():
    return profile_from_dict(TINY)


@pytest.fixture
def shipped(tmp_path, monkeypatch, profile):
    """A built tiny zoo (MoCo, MAE, control) exported to ``tmp_path/ship``; then a fresh cache."""
    torch.set_num_threads(1)
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "trained"))
    zoo.build(profile, only=MODELS, jobs=1, progress=False)
    originals = {name: zoo.load(profile, name) for name in MODELS.split(",")}
    weights, provenance = export_zoo(profile, tmp_path / "ship")
    mae_path = zoo.model_dir(profile, "mae") / zoo.CHECKPOINT_NAME
    mae_state = torch.load(mae_path, weights_only=False)["model"]
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "fresh"))
    return {"weights": weights, "provenance": provenance, "originals": originals, "mae_state": mae_state}


def test_export_then_install_gives_the_same_models_in_fp16(shipped, profile, monkeypatch):
    record = json.loads(shipped["provenance"].read_text())
    assert record["weights"]["sha256"] and record["weights"]["dtype"] == "float16"
    assert {m["done"]["name"] for m in record["models"].values()} == {"moco-default", "mae-default", "random-default"}
    moco = next(m for m in record["models"].values() if m["done"]["name"] == "moco-default")
    assert moco["done"]["step"] == 3 and moco["files"]["log.csv"].startswith("step")  # the training log travels
    assert not any(zoo.is_built(profile, s) for s in zoo.zoo_specs(profile))  # fresh cache

    installed = install_zoo(profile, shipped["weights"].parent)
    assert len(installed) == 3
    for name, original in shipped["originals"].items():
        got = zoo.load(profile, name)
        for (k, a), (k2, b) in zip(original.state_dict().items(), got.state_dict().items()):
            assert k == k2 and a.shape == b.shape
            torch.testing.assert_close(b, a.half().float(), rtol=0, atol=0)  # exactly the fp16 rounding
        done = json.loads((zoo.model_dir(profile, name) / "done.json").read_text())
        assert done["weights_sha256"] == json.loads(shipped["provenance"].read_text())["weights"]["sha256"]
    # MAE: the whole objective (decoder included) is restored
    mae = build_objective("mae", profile)
    load_objective_state(mae, zoo.model_dir(profile, "mae") / zoo.CHECKPOINT_NAME)
    for k, v in shipped["mae_state"].items():
        torch.testing.assert_close(mae.state_dict()[k], v.half().float(), rtol=0, atol=0)
    # installed models count as built: nothing trains, a second install writes nothing
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained an installed model"))
    zoo.build(profile, only=MODELS, jobs=1, progress=False)
    assert install_zoo(profile, shipped["weights"].parent) == []


def test_evaluations_travel_only_with_the_fp16_weights_they_were_computed_on(shipped, profile, monkeypatch, tmp_path):
    record = json.loads(shipped["provenance"].read_text())
    assert all(m["evaluations"] == {} for m in record["models"].values())  # trained in fp32: none
    quick = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, probe_steps=3, finetune_steps=2,
                                                                   batch_size=32, num_analysis_images=8))
    install_zoo(quick, shipped["weights"].parent)
    measured = zoo.evaluations(quick, only="random", jobs=1, progress=False)  # of the installed fp16 weights
    export_zoo(quick, tmp_path / "again", only="moco,random")
    again = json.loads(weights_paths(tmp_path / "again", "tiny")[1].read_text())["models"]
    key = zoo.resolve(quick, "random").key
    assert list(again[key]["evaluations"]) == [zoo.eval_path(quick, zoo.resolve(quick, "random")).name]
    assert again[zoo.resolve(quick, "moco").key]["evaluations"] == {}  # installed, but never evaluated

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "third"))
    install_zoo(quick, tmp_path / "again")
    monkeypatch.setattr(zoo, "evaluate_model", lambda *a, **k: pytest.fail("evaluated a shipped evaluation again"))
    assert zoo.evaluations(quick, only="random", jobs=1, progress=False) == measured


def test_install_refuses_a_corrupt_file_naming_both_hashes(shipped, profile):
    data = bytearray(shipped["weights"].read_bytes())
    data[-3] ^= 0xFF
    shipped["weights"].write_bytes(bytes(data))
    expected = json.loads(shipped["provenance"].read_text())["weights"]["sha256"]
    with pytest.raises(ZooWeightsError, match=f"checksum mismatch .*expected sha256 {expected}, found [0-9a-f]{{64}}"):
        install_zoo(profile, shipped["weights"].parent)
    assert not any(zoo.is_built(profile, s) for s in zoo.zoo_specs(profile))


def test_install_refuses_weights_of_another_configuration(shipped, profile):
    # another learning rate: the trained models' keys differ, only the untrained control still fits
    other_lr = dataclasses.replace(profile, train=dataclasses.replace(profile.train, lr=profile.train.lr * 2))
    assert [k.split("-")[0] for k in install_zoo(other_lr, shipped["weights"].parent)] == ["random"]
    other_model = dataclasses.replace(profile, model=dataclasses.replace(profile.model, mlp_ratio=4.0))
    with pytest.raises(ZooWeightsError, match="none of its 3 models belongs to profile 'tiny'"):
        install_zoo(other_model, shipped["weights"].parent)
    with pytest.raises(ZooWeightsError, match="missing"):
        install_zoo(profile, shipped["weights"].parent / "nowhere")


def test_cli_install_if_present_and_export(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    assert cli.main(["zoo", "install", "--profile", "smoke", "--from", str(tmp_path), "--if-present"]) == 0
    assert "no shipped smoke zoo" in capsys.readouterr().out
    assert cli.main(["zoo", "install", "--profile", "smoke", "--from", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvsmim zoo: error:") and "missing" in err
    assert cli.main(["zoo", "export", "--profile", "smoke", "--out", str(tmp_path)]) == 2  # nothing built
    assert not any(p.exists() for p in weights_paths(tmp_path, "smoke"))


def test_the_shipped_mini_zoo_is_complete_for_the_profile_and_verifies():
    """zoo-weights/ (what `make book` installs) holds every model of `mini` as configured now,
    each fully trained, with sha256 verified and tensors for every model."""
    from pathlib import Path

    from safetensors import safe_open

    from clvsmim.config import load_profile
    from clvsmim.evaluation import EVALUATION_SEED
    from clvsmim.train.zoo_weights import load_shipped

    profile = load_profile("mini")
    weights, provenance = weights_paths(Path(__file__).resolve().parents[1] / "zoo-weights", "mini")
    record = load_shipped(weights, provenance)  # raises on a checksum mismatch
    specs = {s.key: s for s in zoo.zoo_specs(profile)}
    assert set(record["models"]) == set(specs), "zoo-weights/ is not the mini zoo: re-export with `make zoo`"
    with safe_open(str(weights), "pt") as f:
        prefixes = {name.split("/", 1)[0] for name in f.keys()}
    assert prefixes == set(specs)
    for key, entry in record["models"].items():
        total = specs[key].train_cfg.steps if specs[key].trains else 0
        assert entry["step"] == total and entry["done"]["complete"], key
        # its evaluation of the recipe as configured now, and every fine-tuning repeat: `make book`
        # evaluates and fine-tunes nothing
        evaluation = entry["evaluations"].get(zoo.eval_path(profile, specs[key]).name)
        assert evaluation is not None, f"{key}: no evaluation of the current recipe shipped"
        if profile.eval.finetune_repeats > 1 and json.loads(evaluation).get("finetune") is not None:
            repeats = json.loads(entry["evaluations"][zoo.finetune_repeats_path(profile, specs[key]).name])
            seeds = range(EVALUATION_SEED + 1, EVALUATION_SEED + profile.eval.finetune_repeats)
            assert sorted(r["seed"] for r in repeats["runs"]) == list(seeds), key


# --------------------------------------------------------------------------- interrupted runs

RUN = "simmim-Ti"
SIZED = {**TINY, "sizes": {"Ti": {"embed_dim": 8}, "S": {"embed_dim": 16}}}


@pytest.fixture
def sized():
    return profile_from_dict(SIZED)


@pytest.fixture
def parked(tmp_path, monkeypatch, sized):
    """``RUN`` interrupted after one of its three steps in one cache, parked to ``tmp_path/park``
    with the CLI; the environment then points at a fresh cache."""
    torch.set_num_threads(1)
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "first"))
    real = trainer.train

    def stop_after_one_step(objective, dataset, cfg, out_dir, **kwargs):
        real(objective, dataset, cfg, out_dir, **{**kwargs, "stop_after": 1})
        raise RuntimeError("machine shut down")

    monkeypatch.setattr(trainer, "train", stop_after_one_step)
    with pytest.raises(zoo.ZooBuildError):
        zoo.build(sized, only=RUN, jobs=1, progress=False)
    monkeypatch.setattr(trainer, "train", real)
    zoo.build(sized, only="moco-Ti", jobs=1, progress=False)  # a finished model: not parked
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SIZED))
    assert cli.main(["zoo", "park", "--profile", str(path), "--out", str(tmp_path / "park")]) == 0
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "second"))
    return {"dir": tmp_path / "park", "yaml": path}


def test_a_parked_run_resumes_in_another_cache_exactly_as_if_never_stopped(parked, sized, monkeypatch, tmp_path):
    manifest = json.loads(park_manifest_path(parked["dir"], "tiny").read_text())
    key = zoo.resolve(sized, RUN).key
    assert list(manifest["runs"]) == [key]  # the finished moco-Ti is not a run to carry
    run = manifest["runs"][key]
    assert (run["step"], run["total_steps"]) == (1, 3)
    assert set(run["files"]) == {"checkpoint.pt", "log.csv", "meta.json"}

    assert cli.main(["zoo", "unpark", "--profile", str(parked["yaml"]), "--from", str(parked["dir"])]) == 0
    assert {r["name"]: r["status"] for r in zoo.list_models(sized)}[RUN] == "partial"
    first_steps = []
    real = trainer.run_steps

    def recording(session, *args, **kwargs):
        first_steps.append(session.start)
        return real(session, *args, **kwargs)

    monkeypatch.setattr(trainer, "run_steps", recording)
    (resumed_dir,) = zoo.build(sized, only=RUN, jobs=1, progress=False).values()
    assert first_steps == [1]  # continued from the parked step, not from scratch
    assert unpark_runs(sized, parked["dir"]) == []  # built now: the parked copy is left alone

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "uninterrupted"))
    (straight_dir,) = zoo.build(sized, only=RUN, jobs=1, progress=False).values()
    resumed = torch.load(resumed_dir / zoo.CHECKPOINT_NAME, weights_only=True)
    straight = torch.load(straight_dir / zoo.CHECKPOINT_NAME, weights_only=True)
    assert resumed["step"] == straight["step"] == 3
    assert resumed["encoder"].keys() == straight["encoder"].keys()
    for name, value in straight["encoder"].items():
        assert torch.equal(resumed["encoder"][name], value), name


def test_a_corrupt_parked_checkpoint_is_refused_and_nothing_is_written(parked, sized):
    key = zoo.resolve(sized, RUN).key
    checkpoint = parked["dir"] / key / zoo.CHECKPOINT_NAME
    blob = bytearray(checkpoint.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(blob))
    with pytest.raises(ZooWeightsError, match=rf"checksum mismatch for .*{key}.*checkpoint\.pt: expected sha256"):
        unpark_runs(sized, parked["dir"])
    assert not (zoo.model_dir(sized, key) / zoo.CHECKPOINT_NAME).exists()


def test_runs_of_another_seed_or_nothing_to_park_are_refused_by_name(parked, sized):
    with pytest.raises(ZooWeightsError, match=r"belongs to profile 'tiny'.*seed"):
        unpark_runs(seed_profile(sized, 7), parked["dir"])
    with pytest.raises(ZooWeightsError, match=r"no interrupted run to park"):
        park_runs(sized, parked["dir"] / "again")  # the fresh cache has none


def test_parking_again_drops_the_copies_of_runs_that_finished(parked, sized):
    first, second = zoo.resolve(sized, RUN).key, zoo.resolve(sized, "simmim-S").key
    unpark_runs(sized, parked["dir"])
    folder = zoo.model_dir(sized, second)
    folder.mkdir(parents=True, exist_ok=True)  # a second interrupted run: a checkpoint, no done.json
    (folder / zoo.CHECKPOINT_NAME).write_bytes((zoo.model_dir(sized, first) / zoo.CHECKPOINT_NAME).read_bytes())
    zoo.build(sized, only=RUN, jobs=1, progress=False)  # the first one finishes
    assert set(park_runs(sized, parked["dir"])) == {second}
    assert not (parked["dir"] / first).exists() and (parked["dir"] / second / zoo.CHECKPOINT_NAME).is_file()


def test_a_cache_further_along_keeps_its_own_run(parked, sized):
    key = zoo.resolve(sized, RUN).key
    folder = zoo.model_dir(sized, key)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 2}, folder / zoo.CHECKPOINT_NAME)
    assert unpark_runs(sized, parked["dir"]) == []
    assert torch.load(folder / zoo.CHECKPOINT_NAME, weights_only=True) == {"step": 2}
