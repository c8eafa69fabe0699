"""Carrying interrupted zoo runs: park, verify, unpark into another cache, resume bit-exactly."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from clvsmim import cli
from clvsmim.config import profile_from_dict, seed_profile
from clvsmim.train import trainer, zoo
from clvsmim.train.zoo_park import park_manifest_path, park_runs, unpark_runs
from clvsmim.train.zoo_weights import ZooWeightsError

TINY = {
    "name": "tiny",
    "data": {"img_size": 32, "num_train": 64, "num_eval": 32},
    "model": {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
    "sizes": {"Ti": {"embed_dim": 8}, "S": {"embed_dim": 16}},
    "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1},
    "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
    "simmim": {"mask_patch_size": 8},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
    "lams": [0.0, 1.0],
}
RUN = "simmim-Ti"


@pytest.fixture
def profile():
    return profile_from_dict(TINY)


@pytest.fixture
def parked(tmp_path, monkeypatch, profile):
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
        zoo.build(profile, only=RUN, jobs=1, progress=False)
    monkeypatch.setattr(trainer, "train", real)
    zoo.build(profile, only="moco-Ti", jobs=1, progress=False)  # a finished model: not parked
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert cli.main(["zoo", "park", "--profile", str(path), "--out", str(tmp_path / "park")]) == 0
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "second"))
    return {"dir": tmp_path / "park", "yaml": path}


def test_a_parked_run_resumes_in_another_cache_exactly_as_if_never_stopped(parked, profile, monkeypatch, tmp_path):
    manifest = json.loads(park_manifest_path(parked["dir"], "tiny").read_text())
    key = zoo.resolve(profile, RUN).key
    assert list(manifest["runs"]) == [key]  # the finished moco-Ti is not a run to carry
    run = manifest["runs"][key]
    assert (run["step"], run["total_steps"]) == (1, 3)
    assert set(run["files"]) == {"checkpoint.pt", "log.csv", "meta.json"}

    assert cli.main(["zoo", "unpark", "--profile", str(parked["yaml"]), "--from", str(parked["dir"])]) == 0
    assert {r["name"]: r["status"] for r in zoo.list_models(profile)}[RUN] == "partial"
    first_steps = []
    real = trainer.run_steps

    def recording(session, *args, **kwargs):
        first_steps.append(session.start)
        return real(session, *args, **kwargs)

    monkeypatch.setattr(trainer, "run_steps", recording)
    (resumed_dir,) = zoo.build(profile, only=RUN, jobs=1, progress=False).values()
    assert first_steps == [1]  # continued from the parked step, not from scratch
    assert unpark_runs(profile, parked["dir"]) == []  # built now: the parked copy is left alone

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "uninterrupted"))
    (straight_dir,) = zoo.build(profile, only=RUN, jobs=1, progress=False).values()
    resumed = torch.load(resumed_dir / zoo.CHECKPOINT_NAME, weights_only=True)
    straight = torch.load(straight_dir / zoo.CHECKPOINT_NAME, weights_only=True)
    assert resumed["step"] == straight["step"] == 3
    assert resumed["encoder"].keys() == straight["encoder"].keys()
    for name, value in straight["encoder"].items():
        assert torch.equal(resumed["encoder"][name], value), name


def test_a_corrupt_parked_checkpoint_is_refused_and_nothing_is_written(parked, profile):
    key = zoo.resolve(profile, RUN).key
    checkpoint = parked["dir"] / key / zoo.CHECKPOINT_NAME
    blob = bytearray(checkpoint.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(blob))
    with pytest.raises(ZooWeightsError, match=rf"checksum mismatch for .*{key}.*checkpoint\.pt: expected sha256"):
        unpark_runs(profile, parked["dir"])
    assert not (zoo.model_dir(profile, key) / zoo.CHECKPOINT_NAME).exists()


def test_runs_of_another_seed_or_nothing_to_park_are_refused_by_name(parked, profile):
    with pytest.raises(ZooWeightsError, match=r"belongs to profile 'tiny'.*seed"):
        unpark_runs(seed_profile(profile, 7), parked["dir"])
    with pytest.raises(ZooWeightsError, match=r"no interrupted run to park"):
        park_runs(profile, parked["dir"] / "again")  # the fresh cache has none


def test_a_cache_further_along_keeps_its_own_run(parked, profile):
    key = zoo.resolve(profile, RUN).key
    folder = zoo.model_dir(profile, key)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 2}, folder / zoo.CHECKPOINT_NAME)
    assert unpark_runs(profile, parked["dir"]) == []
    assert torch.load(folder / zoo.CHECKPOINT_NAME, weights_only=True) == {"step": 2}
