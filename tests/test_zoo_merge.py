"""Growing a shipped zoo: `zoo merge` adds models trained here, evaluated on their fp16 weights,
and keeps what was shipped byte for byte; a shipped model or a corrupt folder is refused."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from clvsmim import cli
from clvsmim.config import profile_from_dict
from clvsmim.train import zoo
from clvsmim.train.zoo_merge import merge_evaluations, merge_zoo
from clvsmim.train.zoo_weights import ZooWeightsError, export_zoo, install_zoo, weights_paths

from test_zoo_weights import TINY

QUICK = {**TINY, "eval": {"probe_steps": 3, "finetune_steps": 2, "batch_size": 32, "num_analysis_images": 8}}


@pytest.fixture
def profile():
    return profile_from_dict(QUICK)


@pytest.fixture
def ship(tmp_path, monkeypatch, profile):
    """MoCo and the control trained in ``tmp_path/trained`` (the current cache); MoCo alone
    exported to ``tmp_path/ship``."""
    torch.set_num_threads(1)
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "trained"))
    zoo.build(profile, only="moco,random", jobs=1, progress=False)
    export_zoo(profile, tmp_path / "ship", only="moco")
    return tmp_path / "ship"


def _files(folder, profile):
    return [p.read_bytes() for p in weights_paths(folder, profile.name)]


def test_merge_adds_the_evaluated_fp16_model_and_keeps_the_shipped_ones(ship, profile, tmp_path, monkeypatch, capsys):
    weights, provenance = weights_paths(ship, profile.name)
    before, shipped = load_file(str(weights)), json.loads(provenance.read_text())["models"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(QUICK))
    assert cli.main(["zoo", "merge", "--profile", str(path), "--only", "random", "--into", str(ship),
                     "--no-progress"]) == 0
    assert "1 model(s) added" in capsys.readouterr().out

    after, record = load_file(str(weights)), json.loads(provenance.read_text())
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())
    moco, random = zoo.resolve(profile, "moco"), zoo.resolve(profile, "random")
    assert record["models"][moco.key] == shipped[moco.key]  # the shipped record untouched
    new = record["models"][random.key]
    assert list(new["evaluations"]) == [zoo.eval_path(profile, random).name]
    assert new["done"]["weights_dtype"] == "float16" and "installed_from" not in new["done"]  # no scratch path
    trained = torch.load(zoo.model_dir(profile, "random") / zoo.CHECKPOINT_NAME, weights_only=False)["encoder"]
    for name, value in trained.items():  # exactly the fp16 rounding of what was trained here
        assert torch.equal(after[f"{random.key}/encoder/{name}"], value.half())
    assert not zoo.eval_path(profile, random).exists()  # the fp32 model here was not evaluated
    assert (tmp_path / "trained" / "data").is_dir()  # the scratch cache shared it and left it

    # a fresh cache installs both; the shipped evaluation is used, nothing is evaluated again
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "fresh"))
    assert sorted(install_zoo(profile, ship)) == sorted([moco.key, random.key])
    monkeypatch.setattr(zoo, "evaluate_model", lambda *a, **k: pytest.fail("evaluated a shipped evaluation again"))
    result = zoo.evaluations(profile, only="random", jobs=1, progress=False)[random.key]
    assert result == json.loads(new["evaluations"][zoo.eval_path(profile, random).name])


def test_merge_refuses_a_shipped_model_or_a_corrupt_folder_and_writes_nothing(ship, profile):
    untouched = _files(ship, profile)
    with pytest.raises(ZooWeightsError, match="moco-default already shipped"):
        merge_zoo(profile, ship, only="moco,random")
    assert _files(ship, profile) == untouched

    weights = weights_paths(ship, profile.name)[0]
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    corrupt = _files(ship, profile)
    with pytest.raises(ZooWeightsError, match="checksum mismatch"):
        merge_zoo(profile, ship, only="random")
    assert _files(ship, profile) == corrupt


def test_merge_into_a_new_folder_takes_every_built_model_then_nothing_is_left(ship, profile, tmp_path):
    added = merge_zoo(profile, tmp_path / "new")
    assert sorted(added) == sorted(zoo.resolve(profile, n).key for n in ("moco", "random"))
    record = json.loads(weights_paths(tmp_path / "new", profile.name)[1].read_text())
    assert all(len(m["evaluations"]) == 1 for m in record["models"].values())
    with pytest.raises(ZooWeightsError, match="every built one is shipped already"):
        merge_zoo(profile, tmp_path / "new")


def test_merge_evaluations_adds_the_repeats_computed_after_an_install_and_leaves_the_weights(ship, profile, tmp_path,
                                                                                              monkeypatch, capsys):
    """Fine-tuning repeats computed on installed fp16 weights travel with them: `zoo merge
    --evaluations` writes them into the record (the weights file byte for byte as it was), and a
    fresh install then reads the runs' mean without fine-tuning anything."""
    import dataclasses

    twice = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, finetune_repeats=2))
    weights, provenance = weights_paths(ship, profile.name)
    shipped_weights = weights.read_bytes()
    moco = zoo.resolve(twice, "moco")
    with pytest.raises(ZooWeightsError, match="no evaluation cached here is new"):
        merge_evaluations(twice, ship)  # MoCo here was trained, not installed from the fp16 weights

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "installed"))
    install_zoo(twice, ship)
    computed = zoo.evaluations(twice, only="moco", jobs=1, progress=False)[moco.key]
    assert len(computed["finetune_runs"]) == 2
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump({**QUICK, "eval": {**QUICK["eval"], "finetune_repeats": 2}}))
    assert cli.main(["zoo", "merge", "--evaluations", "--profile", str(path), "--into", str(ship)]) == 0
    assert "2 evaluation file(s) added to 1 shipped model(s)" in capsys.readouterr().out
    assert weights.read_bytes() == shipped_weights
    record = json.loads(provenance.read_text())
    eval_file = zoo.eval_path(twice, moco)
    assert sorted(record["models"][moco.key]["evaluations"]) == sorted(
        [eval_file.name, zoo.finetune_repeats_path(twice, moco).name])
    with pytest.raises(ZooWeightsError, match="no evaluation cached here is new"):
        merge_evaluations(twice, ship)  # nothing left to add; the record is not rewritten
    assert json.loads(provenance.read_text()) == record

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "fresh"))
    install_zoo(twice, ship)
    monkeypatch.setattr(zoo, "evaluate_model", lambda *a, **k: pytest.fail("evaluated a shipped evaluation again"))
    monkeypatch.setattr(zoo, "finetune_run", lambda *a, **k: pytest.fail("fine-tuned a shipped repeat again"))
    assert zoo.evaluations(twice, only="moco", jobs=1, progress=False)[moco.key] == computed
