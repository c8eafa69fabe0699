"""``clvsmim analyze``: checkpoint vs in-memory equality, BEiT, data sources, clear errors, and a
ViT-B-sized run on CPU. No network: every checkpoint is built locally in its official layout."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from clvsmim.analysis import model_report as A
from clvsmim.analysis.backbones import resolve_model
from clvsmim.analysis.images import open_analysis_data
from clvsmim.analysis import analyze
from clvsmim.cli import main
from clvsmim.book.report import normalised_batches
from official_formats import DEPTH, HEADS, IMG, PATCH, simmim_checkpoint, tiny_beit, tiny_vit
from official_formats import moco_checkpoint as moco_v3_checkpoint

N_IMAGES, BATCH = 12, 5  # uneven batches on purpose


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLVSMIM_WEIGHTS_LOCK", str(tmp_path / "lock.json"))
    monkeypatch.chdir(tmp_path)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["analyze", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


# Fields describing provenance and wall time, not measurements.
VOLATILE_MODEL = ("name", "source", "path", "checkpoint_format", "pretrained", "timm_name", "registry_name")


def comparable(metrics: dict) -> dict:
    m = json.loads(json.dumps(metrics))
    m.pop("timing")
    m.pop("figures", None)
    for key in VOLATILE_MODEL:
        m["model"].pop(key, None)
    return m


def assert_close(a, b, path="", tol=1e-6):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and abs(a - b) <= tol, f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def all_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(all_finite(v) for v in obj)
    return obj is not None and (not isinstance(obj, float) or math.isfinite(obj))


def in_memory(model: nn.Module, **kwargs) -> dict:
    dataset, info = open_analysis_data("synthetic", IMG, N_IMAGES)
    return A.analyze_model(model, dataset, images=N_IMAGES, batch_size=BATCH, device="cpu", data_info=info, **kwargs)


# ----------------------------------------------------------------------------- equality
def test_checkpoints_analyse_like_the_model_they_came_from(tmp_path, capsys):
    vit = tiny_vit()
    torch.save(moco_v3_checkpoint(vit), tmp_path / "moco.pth.tar")
    torch.save(vit.state_dict(), tmp_path / "timm.pth")
    common = ["--data", "synthetic", "--images", str(N_IMAGES), "--batch-size", str(BATCH), "--device", "cpu"]
    results = {}
    for name, fmt, extra in (("moco.pth.tar", "moco_v3", []), ("timm.pth", "timm", ["--no-figures"])):
        rc, out, err = run_cli(["--model", str(tmp_path / name), *common, *extra, "--out", str(tmp_path / fmt)], capsys)
        assert rc == 0, err
        assert "metrics.json" in out and "depth 2, grid 4×4" in out
        results[fmt] = read_metrics(tmp_path / fmt)
        assert results[fmt]["model"]["checkpoint_format"] == fmt
    for fig in A.FIGURES:
        assert (tmp_path / "moco_v3" / f"{fig}.png").stat().st_size > 1000, fig
    assert results["moco_v3"]["figures"] == [f"{f}.png" for f in A.FIGURES] and results["timm"]["figures"] == []

    memory = in_memory(vit, out_dir=tmp_path / "memory", name="in-memory", figures=False)
    assert comparable(read_metrics(tmp_path / "memory")) == comparable(memory)
    assert_close(comparable(results["moco_v3"]), comparable(memory))
    assert_close(comparable(results["timm"]), comparable(memory))

    # per-depth lists and description
    m = memory
    assert m["num_images"] == N_IMAGES and m["model"]["geometry"]["depth"] == DEPTH
    assert m["model"]["num_params"] == sum(p.numel() for p in vit.parameters())
    assert len(m["attention_distance"]["mean"]) == DEPTH and len(m["fourier"]["delta_log_amplitude"]) == DEPTH + 1
    assert len(m["probe"]["accuracy"]) == DEPTH + 1 and m["probe"]["num_train"] + m["probe"]["num_test"] == N_IMAGES
    assert 2 <= len(m["tsne"]["image_positions"]) <= A.TSNE_IMAGES
    assert len(set(m["tsne"]["labels"])) <= A.TSNE_CLASSES
    assert len(m["tsne"]["points"]) == len(m["tsne"]["image_positions"]) * (IMG // PATCH) ** 2
    assert -1 <= m["tsne"]["image_cluster_score"] <= 1
    assert all_finite(comparable(m))

    # the per-depth metrics are exactly clvsmim.analysis.analyze on the same images
    dataset, _ = open_analysis_data("synthetic", IMG, N_IMAGES)
    order = A.analysis_order(A.dataset_labels(dataset), len(dataset), N_IMAGES)
    reference = analyze(vit, normalised_batches(dataset.images[order], BATCH, torch.device("cpu")), spectrum_every=1)
    assert_close({k: m[k] for k in reference}, json.loads(json.dumps(reference)), tol=1e-9)


def test_beit_analysis_from_a_simmim_checkpoint(tmp_path, capsys):
    beit = tiny_beit()
    torch.save(simmim_checkpoint(beit), tmp_path / "simmim.pth")
    rc, _, err = run_cli(["--model", str(tmp_path / "simmim.pth"), "--images", str(N_IMAGES), "--batch-size",
                          str(BATCH), "--device", "cpu", "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    from_file = read_metrics(tmp_path / "out")
    assert from_file["model"]["class"] == "Beit" and from_file["model"]["checkpoint_format"] == "simmim"
    memory = in_memory(beit)
    assert_close(comparable(from_file), comparable(memory))
    maps = np.asarray(memory["attention_maps"]["per_head"])
    grid = IMG // PATCH
    assert maps.shape == (2, HEADS, grid, grid) and memory["attention_maps"]["block"] == DEPTH
    np.testing.assert_allclose(maps.sum((-1, -2)), 1.0, atol=1e-6)
    max_distance = PATCH * math.hypot(grid - 1, grid - 1)
    assert all(0 < d < max_distance for d in memory["attention_distance"]["mean"])
    assert all_finite(comparable(memory))
    assert (tmp_path / "out" / "attention_maps.png").is_file() and (tmp_path / "out" / "tsne.png").is_file()


# ----------------------------------------------------------------------------- data sources
def test_image_folder_and_unlabelled_tensors(tmp_path, capsys):
    vit = tiny_vit()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "folder" / "val" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "folder" / "val" / cls / f"{i}.png")
    rc, _, err = run_cli(["--model", str(tmp_path / "vit.pth"), "--data", str(tmp_path / "folder"), "--images", "6",
                          "--out", str(tmp_path / "out"), "--device", "cpu", "--no-figures"], capsys)
    assert rc == 0, err
    m = read_metrics(tmp_path / "out")
    assert m["data"]["classes"] == ["cats", "dogs"] and m["num_images"] == 6 and m["data"]["img_size"] == IMG
    assert m["probe"]["num_classes"] == 2 and m["probe"]["num_train"] == 4 and m["probe"]["num_test"] == 2
    assert sorted(m["tsne"]["labels"]) == [0, 0, 0, 1, 1, 1]

    images = torch.randint(0, 256, (5, 3, IMG, IMG), dtype=torch.uint8)
    unlabelled = A.analyze_model(vit, images, images=None, batch_size=2, device="cpu", figures=False)
    assert unlabelled["num_images"] == 5 and "skipped" in unlabelled["probe"]
    assert unlabelled["tsne"]["labels"] is None and len(unlabelled["tsne"]["image_positions"]) == 5
    with pytest.raises(A.AnalyzeError, match="model takes 32×32"):
        A.analyze_model(vit, images[:, :, :16, :16], images=2, device="cpu")


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("model, data, expected", [
    ("missing/checkpoint.pth", "synthetic", "no such checkpoint file"),
    ("moco_v4_vit_b", "synthetic", "Available registry names: dino_vit_b, mae_vit_b, mae_vit_b_visualize, "
                                   "moco_v3_vit_b, simmim_vit_b"),
    ("timm:vit_tiny_patch16_2244", "synthetic", "unknown timm model 'vit_tiny_patch16_2244'; did you mean "
                                                "vit_tiny_patch16_224"),
    ("timm:", "synthetic", "needs a model name"),
    ("timm:resnet18", "synthetic", "is not a timm ViT / BEiT"),
    ("CKPT", "no/such/folder", "--data no/such/folder: no such folder"),
    ("CKPT", "synthetic --img-size 64", "takes 32×32 images"),
    ("CKPT", "synthetic --images 0", "--images and --batch-size must be >= 1"),
    pytest.param("CKPT", "synthetic --device cuda", "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
])
def test_bad_inputs_give_clear_errors(tmp_path, capsys, model, data, expected):
    if model == "CKPT":
        model = str(tmp_path / "vit.pth")
        torch.save(tiny_vit().state_dict(), model)
    extra = ["--random-init"] if model.startswith("timm:") else []
    rc, out, err = run_cli(["--model", model, "--device", "cpu", "--data", *data.split(), *extra,
                            "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and err.startswith("clvsmim analyze: error:"), (rc, err)
    assert expected in err, err
    assert "Traceback" not in err and not (tmp_path / "out" / "metrics.json").exists()


def test_api_errors_and_other_checkpoints(tmp_path):
    with pytest.raises(A.AnalyzeError, match="moco_v3_vit_b"):
        resolve_model("mocov3")
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "nope.pth"))
    with pytest.raises(A.AnalyzeError, match="not a timm ViT"):
        A.analyze_model(nn.Linear(3, 3), torch.zeros(1, 3, 8, 8))
    from clvsmim.weights import CheckpointError

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        resolve_model(str(tmp_path / "garbage.pth"))


# ----------------------------------------------------------------------------- ViT-B on CPU
@pytest.mark.slow
def test_vit_base_analysis_runs_on_cpu(tmp_path, capsys):
    rc, out, err = run_cli(["--model", "timm:vit_base_patch16_224", "--random-init", "--data", "synthetic",
                            "--images", "4", "--batch-size", "2", "--device", "cpu", "--no-figures",
                            "--out", str(tmp_path / "b")],
                           capsys)
    assert rc == 0, err
    m = read_metrics(tmp_path / "b")
    geo = m["model"]["geometry"]
    assert geo["depth"] == 12 and geo["grid"] == [14, 14] and geo["num_heads"] == 12 and m["model"]["img_size"] == 224
    assert m["num_images"] == 4 and m["model"]["pretrained"] is False
    assert len(m["attention_distance"]["per_head"]) == 12 and len(m["attention_distance"]["per_head"][0]) == 12
    assert len(m["token_cosine"]) == 13 and len(m["svd_spectrum"][0]) == 196
    assert np.asarray(m["attention_maps"]["per_head"]).shape == (2, 12, 14, 14)
    assert len(m["tsne"]["points"]) == len(m["tsne"]["image_positions"]) * 196 >= 2 * 196
    # 4 images of up to 4 shape classes: when no class has a test image the probe says why it is skipped
    assert "accuracy" in m["probe"] or "too few images" in m["probe"]["skipped"]
    assert all_finite(comparable(m))
    print(f"ViT-B analyze wall time: {m['timing']['total_s']:.1f} s ({m['timing']})")
