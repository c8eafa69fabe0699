"""The paper book on the official checkpoints, end to end on CPU, without network.

Stand-in official checkpoints (random ViT-B/16 weights in each upstream layout, where
``clvsmim weights fetch`` keeps them, pinned in a lock file) and a folder of real photographs
(scikit-image's sample images) — :mod:`paper_world`. ``clvsmim book --profile paper`` then
trains nothing, analyses the stand-ins on a few images and must produce every poster figure.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import nbformat
import torch
import pytest

from clvsmim.book.run import default_source, run_book
from clvsmim.cli import main

pytest.importorskip("skimage")
from official_formats import moco_checkpoint, tiny_beit  # noqa: E402
from paper_world import imagenette_standin, photo_folder, write_official_standins  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURE_IDS = [f"F{i}" for i in range(11)]
IMAGES = 8  # analysis images: small enough for CPU, enough for a train / test probe over 3 classes


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLVSMIM_WEIGHTS_LOCK", str(tmp_path / "lock.json"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield tmp_path
    # the stand-in ViT-B checkpoints are ~1.7 GB: free the disk as soon as the test is done
    shutil.rmtree(tmp_path / "cache" / "weights", ignore_errors=True)


def _errors(notebook: Path) -> list:
    nb = nbformat.read(notebook, as_version=4)
    return [(i, o.get("ename"), o.get("evalue")) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _text(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"], ensure_ascii=False)


def test_paper_profile_defaults_to_the_official_checkpoints():
    assert default_source("paper") == "official"
    assert default_source("smoke") == "zoo" and default_source("mini") == "zoo"


def test_a_folder_with_too_few_images_is_one_clear_error(isolated, capsys):
    photos = photo_folder(isolated / "photos", per_class=2)  # 3 classes × 2 + one corrupt file = 7 files
    with pytest.raises(ValueError) as info:
        run_book(REPO, "paper", data=photos, out=isolated / "out", images=50, html=False)
    msg = str(info.value)
    assert "holds 7 images" in msg and str(photos) in msg and "--images" in msg and "50" in msg
    # the CLI: one line, no traceback, exit 2
    assert main(["book", "--profile", "paper", "--data", str(photos), "--images", "50", "--no-html",
                 "--out", str(isolated / "out"), "--root", str(REPO)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvsmim book: error:") and "holds 7 images" in err and "--images" in err
    assert err.count("\n") == 1
    assert not (isolated / "out" / "book").exists()  # nothing ran


@pytest.mark.slow
def test_a_checkpoint_in_the_wrong_layout_fails_the_chapter_with_the_compact_error(isolated):
    """A MoCo v3 file whose base encoder is BEiT-shaped: the chapter reports missing / unexpected keys."""
    photos = photo_folder(isolated / "photos", per_class=2)
    write_official_standins(["moco_v3_vit_b"], checkpoint=lambda name: moco_checkpoint(tiny_beit()))
    report = run_book(REPO, "paper", data=photos, out=isolated / "out", images=4, html=False,
                      chapters=["representation"], device="cpu")
    result = next(r for r in report.results if r.file == "book/representation")
    assert result.status == "failed" and result.ename == "CheckpointError", result.detail()
    assert "missing keys:" in result.evalue and "unexpected keys:" in result.evalue, result.evalue
    assert "blocks.*.attn.q_bias" in result.evalue and len(result.evalue) < 1500  # compact, not a key dump
    assert report.exit_code != 0


@pytest.mark.slow
def test_paper_book_runs_on_official_standins_and_photos(isolated):
    """The whole paper book on CPU (in CI: ~2 GB of ViT-B/16 stand-ins, minutes on two cores)."""
    photos = photo_folder(isolated / "photos", per_class=8)
    write_official_standins()
    out = isolated / "out"
    start = time.perf_counter()
    report = run_book(REPO, "paper", data=photos, out=out, images=IMAGES, html=False, device="cpu")
    seconds = time.perf_counter() - start
    print(f"paper book on CPU, {IMAGES} images: {seconds:.0f} s\n{report.table()}")
    assert report.exit_code == 0, report.table()
    assert not (isolated / "cache" / "zoo").exists()  # nothing trained, no zoo built

    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    missing = [f for f in FIGURE_IDS if f not in manifest]
    assert not missing, f"figures missing from the manifest: {missing}"
    for fig_id in FIGURE_IDS:
        assert (out / "figures" / f"{fig_id}.png").stat().st_size > 1000
        assert manifest[fig_id]["profile"] == "paper"
    chapters = [r.file for r in report.results if r.status in ("ok", "cached")]
    for chapter in chapters:
        assert not _errors(out / f"{chapter}.ipynb"), chapter

    f7 = json.loads((out / "figures" / "F7.json").read_text())  # probed on the official stand-ins
    assert f7["source"] == "official" and set(f7["curves"]) == {"moco", "simmim", "mae"} and f7["control"]
    assert len(f7["curves"]["moco"]["accuracy"]) == 13  # ViT-B: depths 0..12
    f9 = json.loads((out / "figures" / "F9.json").read_text())
    assert f9["source"] == "literature" and [p["lam"] for p in f9["points"]] == [0.0, 1.0]
    summary = _text(out / "book" / "summary.ipynb")
    assert "needs the GPU-sized profile" in summary and "official MoCo v3 / SimMIM ViT-B/16" in summary
    assert "a short fine-tune (≤ 20 steps and ≤ 5 epochs" in summary  # C10 on the official models
    assert "needs the GPU-sized profile" in _text(out / "book" / "hybrid.ipynb")


def test_colab_notebooks_clone_the_repository_named_in_config(tmp_path):
    """The set-up cell and the launch buttons use one URL: ``repository.url`` of ``_config.yml``."""

    import yaml

    from clvsmim.book.notebooks import render_notebooks, repository_url

    root = tmp_path / "fork"
    (root / "book").mkdir(parents=True)
    shutil.copy(REPO / "_toc.yml", root / "_toc.yml")
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert repository_url(REPO) == cfg["repository"]["url"]
    cfg["repository"]["url"] = "https://github.com/someone/clvsmim-fork"
    (root / "_config.yml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO / "book" / "hybrid.py", root / "book" / "hybrid.py")
    written = render_notebooks(tmp_path / "nbs", root)
    setup = nbformat.read(written[0], as_version=4).cells[0].source
    assert '"https://github.com/someone/clvsmim-fork"' in setup and "github.com/clvsmim/clvsmim" not in setup
    params = next(c for c in nbformat.read(written[0], as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assert 'source = "official"' in params.source and 'profile = "paper"' in params.source
    del cfg["repository"]["url"]
    (root / "_config.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="repository.url"):
        render_notebooks(tmp_path / "nbs2", root)


def test_random_control_is_the_official_vit_b_built_from_the_seed():
    from clvsmim.book.paperbook import random_control
    from clvsmim.weights import get_entry
    from clvsmim.weights import build_architecture

    state = torch.random.get_rng_state()
    a, b, c = random_control(0), random_control(0), random_control(1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    reference = build_architecture(get_entry("moco_v3_vit_b").architecture).state_dict()
    sa = a.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in reference.items()}
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in sa.items())
    assert not torch.equal(sa["blocks.0.attn.qkv.weight"], c.state_dict()["blocks.0.attn.qkv.weight"])
    assert not a.training


def test_images_option_sets_the_analysis_count_and_probe_images_cover_every_class(isolated):
    from clvsmim.config import load_profile
    from clvsmim.book.paperbook import probe_images

    p = load_profile("paper", images=6)
    assert p.eval.num_analysis_images == 6 and load_profile("paper").eval.num_analysis_images == 256
    with pytest.raises(ValueError, match="at least 2"):
        load_profile("paper", images=1)
    photos = photo_folder(isolated / "photos", per_class=3)
    images, labels = probe_images(p.with_data_root(photos), 6)
    assert images.shape == (6, 3, 224, 224) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]  # two of each class, in file order


def test_hybrid_literature_end_points_come_from_the_literature_table():
    from clvsmim.book.chapters.common import read_literature
    from clvsmim.book.paperbook import literature_sweep_points

    df = read_literature(REPO / "book" / "data" / "literature.csv")
    points = literature_sweep_points(df)
    assert [(p["lam"], p["name"]) for p in points] == [(0.0, "SimMIM"), (1.0, "MoCo v3")]
    for p in points:
        row = df[(df["method"] == p["name"]) & (df["size"] == "B")].iloc[0]
        assert (p["linear_probe"], p["finetune"]) == (row["linear_probe"], row["finetune"])
        assert p["source"] == row["source"] and p["status"] == row["status"]


# --------------------------------------------------------------------------- the default images: Imagenette

def test_official_source_without_data_reads_imagenette_fetched_and_verified(isolated):
    """No --data: the paper book's images are Imagenette, verified against its pin and extracted
    into the cache once; the analyses read its val/ split."""
    from clvsmim.book.paperbook import book_data_root
    from clvsmim.config import load_profile
    from clvsmim.data import open_dataset

    imagenette_standin(isolated, per_class=2)
    root = Path(book_data_root("paper", "official", None))
    assert root == isolated / "cache" / "data" / "imagenette2-320" and (root / ".complete").is_file()
    val = open_dataset(load_profile("paper").with_data_root(str(root)).data, "eval")
    assert Path(val.root) == root / "val" and val.classes == ["colour", "gray", "rgba"]
    assert len(val) == 7  # 3 classes × 2 photographs + the corrupt file (dropped when read)
    assert book_data_root("paper", "official", "/my/photos") == "/my/photos"  # --data wins
    assert book_data_root("paper", "zoo", None) is None and book_data_root("smoke", "official", None) == str(root)
    stamp = (root / ".complete").stat().st_mtime_ns
    assert book_data_root("paper", "official", None) == str(root) and (root / ".complete").stat().st_mtime_ns == stamp
    # a chapter's setup cell reads the same images, with --images applied to its profile
    from clvsmim.book.chapters.common import chapter_profile
    official = chapter_profile("smoke", 3, "official", None)
    assert official.data.root == str(root) and official.eval.num_analysis_images == 3
    assert chapter_profile("smoke", None, "official", "/my/photos").data.root == "/my/photos"
    assert chapter_profile("smoke").data == load_profile("smoke").data


def test_imagenette_that_cannot_be_fetched_is_one_error_naming_data(isolated, monkeypatch, capsys):
    """No network (every request refused), or an archive that fails its pinned sha256: one line
    that names Imagenette, the reason and --data; nothing runs."""
    import urllib.error

    import clvsmim.weights.transfer as transfer
    from clvsmim.book.paperbook import DataUnavailableError, book_data_root

    requests = []

    def offline(request, *args, **kwargs):
        requests.append(request.full_url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(transfer.urllib.request, "urlopen", offline)
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)
    assert main(["book", "--profile", "paper", "--no-html", "--out", str(isolated / "out"), "--root", str(REPO)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvsmim book: error:") and err.count("\n") == 1, err
    assert "Imagenette" in err and "name resolution" in err and "--data" in err
    assert requests and requests[0].endswith("imagenette2-320.tgz")
    assert not (isolated / "out" / "book").exists()  # nothing ran

    archive = imagenette_standin(isolated, per_class=1)
    archive.write_bytes(archive.read_bytes()[:-10] + b"x" * 10)  # tampered after pinning
    with pytest.raises(DataUnavailableError) as info:
        book_data_root("paper", "official", None)
    msg = str(info.value)
    assert "\n" not in msg and "ChecksumError" in msg and "sha256" in msg and "--data" in msg
    assert not archive.exists() and list(archive.parent.glob(archive.name + ".corrupt-*"))  # moved aside


# --------------------------------------------------------------------------- the GPU-sized sweep

GPU_SHAPED = {  # shaped like profiles/gpu.yaml (S default, Ti for the size trend, a models: list), tiny
    "name": "gpu-tiny",
    "data": {"img_size": 32, "num_train": 24, "num_eval": 24, "seed": 0},
    "model": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0},
    "sizes": {"Ti": {"embed_dim": 16, "num_heads": 2}, "S": {"embed_dim": 32, "num_heads": 2}},
    "train": {"steps": 4, "batch_size": 8, "lr": 1.0e-3, "warmup_steps": 1, "precision": "fp32",
              "checkpoint_every": 4, "log_every": 2},
    "moco": {"proj_hidden": 32, "proj_out": 16, "pred_hidden": 32},
    "simmim": {"mask_ratio": 0.6, "mask_patch_size": 16},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
    "eval": {"probe_steps": 10, "finetune_steps": 4, "batch_size": 32, "num_analysis_images": 4},
    "lams": [0.0, 0.5, 1.0],
    "models": ["simmim", "hybrid-0.5", "moco", "moco-Ti", "simmim-Ti", "random"],
}


def test_gpu_profile_zoo_is_exactly_the_sweep_at_s_and_the_size_trend(capsys):
    from clvsmim.config import load_profile, profile_from_dict
    from clvsmim.train import zoo

    assert main(["zoo", "list", "--profile", "gpu", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert names == {"simmim-S", "hybrid-0.2-S", "hybrid-0.4-S", "hybrid-0.6-S", "hybrid-0.8-S", "moco-S",
                     "moco-Ti", "simmim-Ti", "random-S"}  # no MAE, no ViT-B; the control is not trained
    gpu = load_profile("gpu")
    assert [spec.name for _, spec in zoo.hybrid_sweep(gpu)] == ["simmim-S", "hybrid-0.2-S", "hybrid-0.4-S",
                                                               "hybrid-0.6-S", "hybrid-0.8-S", "moco-S"]
    # a profile without `models:` keeps its whole zoo, under the same keys
    whole = profile_from_dict({**GPU_SHAPED, "models": []})
    listed = profile_from_dict(GPU_SHAPED)
    keys = {s.name: s.key for s in zoo.zoo_specs(whole)}
    assert {"mae-S", "random-Ti"} <= set(keys) and len(keys) == 8  # 4 at S, CL/MIM at Ti, 2 controls
    assert {s.name: s.key for s in zoo.zoo_specs(listed)} == {n: keys[n] for n in
                                                               ("moco-S", "simmim-S", "hybrid-0.5-S", "moco-Ti",
                                                                "simmim-Ti", "random-S")}
    with pytest.raises(ValueError, match=r"'mae-B' is not a model of this profile"):
        zoo.zoo_specs(profile_from_dict({**GPU_SHAPED, "models": ["moco", "mae-B"]}))


@pytest.mark.slow
def test_paper_book_reads_the_built_gpu_sized_sweep_next_to_the_literature(isolated):
    """--source official with a built GPU-sized zoo (a tiny stand-in profile): the hybrid chapter
    draws its sweep next to the paper's end points, C8 / C11 are measured on it; before the
    build, one line says it needs the GPU-sized run."""
    import yaml

    from clvsmim.book import paperbook
    from clvsmim.config import load_profile
    from clvsmim.train import zoo

    photos = str(photo_folder(isolated / "photos", per_class=4))
    sweep_yaml = isolated / "gpu-tiny.yaml"
    sweep_yaml.write_text(yaml.safe_dump(GPU_SHAPED))
    assert paperbook.built_sweep(str(sweep_yaml), photos) is None
    note = paperbook.sweep_note("official", None, "The λ sweep", str(sweep_yaml), photos)
    assert "needs the GPU-sized profile" in note and f"clvsmim zoo build --profile {sweep_yaml} --data {photos}" in note

    zoo.build(load_profile(sweep_yaml).with_data_root(photos), jobs=1, progress=False)
    sweep = paperbook.built_sweep(str(sweep_yaml), photos, images=4)
    assert sweep is not None and sweep.eval.num_analysis_images == 4

    start = time.perf_counter()
    report = run_book(REPO, "paper", data=photos, out=isolated / "out", images=4, html=False, device="cpu",
                      chapters=["hybrid"], sweep_profile=str(sweep_yaml))
    print(f"hybrid chapter on the tiny sweep: {time.perf_counter() - start:.0f} s")
    assert report.exit_code == 0, report.table()
    out = isolated / "out"
    assert not _errors(out / "book" / "hybrid.ipynb")
    f9 = json.loads((out / "figures" / "F9.json").read_text())
    assert f9["source"] == "gpu-tiny" and [p["lam"] for p in f9["points"]] == [0.0, 0.5, 1.0]
    assert [(p["lam"], p["name"]) for p in f9["literature"]] == [(0.0, "SimMIM"), (1.0, "MoCo v3")]
    assert f9["claim"]["id"] == "C8"
    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    assert "A-hybrid-curves" in manifest and "hybrid-0.5-S" in manifest["F9"]["models"]
    text = _text(out / "book" / "hybrid.ipynb")
    assert "GPU-sized profile gpu-tiny" in text and "needs the GPU-sized profile" not in text

    trained = paperbook.sweep_claims(sweep, "cpu")
    assert set(trained) == {"C8", "C11"}
    for claim in trained.values():
        assert not claim.reason.startswith("not measured"), (claim.id, claim.reason)
    assert trained["C11"].details["models"]["mim-large"] == "simmim-S"
    assert trained["C11"].details["models"]["mim-small"] == "simmim-Ti"


# --------------------------------------------------------------------------- the rendered Colab notebooks

def _execute_rendered(notebook: Path, output: Path, parameters: dict, out: Path, monkeypatch) -> float:
    """Execute a notebook rendered by ``clvsmim notebooks`` off Colab, as a user would with
    papermill: its set-up cell runs and does nothing (no ``google.colab``), the working directory
    is the chapter's folder (as the set-up cell's ``chdir`` makes it on Colab). Returns seconds."""
    import papermill

    from clvsmim.book.execute import ensure_kernel
    from clvsmim.book.toc import KERNEL_NAME

    monkeypatch.setenv("JUPYTER_PATH", str(ensure_kernel(out)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(x for x in (str(REPO / "src"), os.environ.get("PYTHONPATH"))
                                                     if x))
    monkeypatch.setenv("CLVSMIM_BOOK_OUT", str(out))
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                               cwd=str(REPO / notebook.parent.name),  # <nbs>/book/x.ipynb: the book/ folder
                               progress_bar=False, log_output=False, start_timeout=120)
    return time.perf_counter() - start


def _rendered_notebooks(isolated) -> dict[str, Path]:
    from clvsmim.book.notebooks import render_notebooks

    assert main(["notebooks", "--out", str(isolated / "nbs"), "--root", str(REPO)]) == 0
    return {p.stem: p for p in render_notebooks(isolated / "nbs", REPO)}


def _execute_chapters(isolated, monkeypatch, names, images: int) -> dict[str, float]:
    """Render the Colab notebooks and execute ``names`` in order (``images`` analysis images,
    ``device="cpu"``: the only parameters passed); assert no error cell and a no-op set-up
    cell. Prints each chapter's wall time as it finishes; returns them."""
    notebooks = _rendered_notebooks(isolated)
    assert set(notebooks) == {"background", "behaviour", "representation", "architecture", "hybrid", "summary"}
    out = isolated / "out"
    seconds = {}
    for name in names:
        nb = nbformat.read(notebooks[name], as_version=4)
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert "data_root = None" in params.source and 'source = "official"' in params.source
        executed = out / f"{name}.ipynb"
        seconds[name] = _execute_rendered(notebooks[name], executed, {"images": images, "device": "cpu"}, out,
                                          monkeypatch)
        print(f"rendered {name}.ipynb on CPU, {images} images: {seconds[name]:.0f} s", flush=True)
        assert not _errors(executed), (name, _errors(executed))
        done = nbformat.read(executed, as_version=4)
        setup = next(c for c in done.cells if "colab-setup" in c.metadata.get("tags", []))
        assert setup.outputs == []  # off Colab the set-up cell does nothing
    return seconds


@pytest.mark.slow
def test_rendered_colab_notebooks_execute_background_and_hybrid(isolated, monkeypatch):
    """`clvsmim notebooks` as published (profile paper, source official, data_root None,
    sweep_profile gpu): background and hybrid execute top to bottom off Colab, their images
    being Imagenette fetched from the cache (a stand-in archive, pinned); the GPU-sized zoo is
    not built, so the hybrid chapter says so in one line and draws the paper's end points. No
    ViT-B is loaded: these two fit CI; the analysis chapters are the opt-in test below."""
    imagenette_standin(isolated, per_class=2)
    _execute_chapters(isolated, monkeypatch, ["background", "hybrid"], images=4)
    out = isolated / "out"
    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    assert {"F0", "F9"} <= set(manifest)
    assert json.loads((out / "figures" / "F9.json").read_text())["source"] == "literature"
    assert "needs the GPU-sized profile" in _text(out / "hybrid.ipynb")
    assert (isolated / "cache" / "data" / "imagenette2-320" / ".complete").is_file()  # the default images


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CLVSMIM_PAPER_BOOK"),
                    reason="the analysis chapters' Colab notebooks on ViT-B/16 stand-ins: ~2 GB of checkpoints and "
                           "tens of minutes on a 2-core CPU; run with CLVSMIM_PAPER_BOOK=1 "
                           "(CLVSMIM_PAPER_BOOK_IMAGES=N: N analysis images, default 4)")
def test_rendered_colab_analysis_notebooks_execute_on_official_standins(isolated, monkeypatch):
    """The rendered behaviour, representation, architecture and summary notebooks on the
    official stand-ins (MoCo v3, SimMIM, MAE, MAE visualize) and Imagenette's stand-in val/."""
    images = int(os.environ.get("CLVSMIM_PAPER_BOOK_IMAGES", "4"))
    imagenette_standin(isolated, per_class=max(2, -(-images // 3) + 1))  # 3 classes; the corrupt file extra
    write_official_standins()
    seconds = _execute_chapters(isolated, monkeypatch, ["behaviour", "representation", "architecture", "summary"],
                                images=images)
    print("rendered analysis notebooks: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
          + f"; total {sum(seconds.values()):.0f} s")
    out = isolated / "out"
    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    missing = [f for f in ("F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F10") if f not in manifest]
    assert not missing, missing
    f3 = json.loads((out / "figures" / "F3.json").read_text())
    assert f3["source"] == "official" and {"moco", "simmim", "mae"} <= set(f3["curves"])
    assert "official MoCo v3 / SimMIM ViT-B/16" in _text(out / "summary.ipynb")


# --------------------------------------------------------------------------- C10 on the official models

def test_short_finetune_splits_each_class_uses_the_stated_budget_and_leaves_the_model_alone():
    from clvsmim.book.paperbook import FINETUNE_BASE_LR, short_finetune
    from clvsmim.config import EvalConfig, ModelConfig
    from clvsmim.models import build_vit

    torch.manual_seed(0)
    model = build_vit(ModelConfig(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = torch.tensor([7, 7, 7, 3, 3, 3, 3, 9, 9])  # 3 classes of 3, 4, 2 images (any ids)
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8)
    a = short_finetune(model, images, labels, EvalConfig(), steps=3, seed=0)
    assert (a["num_train"], a["num_test"], a["num_classes"]) == (5, 4, 3)  # alternate images within each class
    assert a["budget"] == {"steps": 3, "batch_size": 5, "lr": FINETUNE_BASE_LR * 5 / 256}
    assert round(a["finetune"] * 4) == a["finetune"] * 4 and 0 <= a["finetune"] <= 1  # k of 4 test images
    from clvsmim.uncertainty import unpack_correct
    right = unpack_correct(a["finetune_correct"])  # which of the 4 test images: the record paired SEs read
    assert len(right) == 4 and right.mean() == a["finetune"]
    assert short_finetune(model, images, labels, EvalConfig(), steps=3, seed=0) == a  # deterministic
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a copy is fine-tuned
    # at most FINETUNE_MAX_EPOCHS passes over the 5 train images (one batch each): 30 steps -> 5
    assert short_finetune(model, images, labels, EvalConfig(), steps=30, seed=0)["budget"]["steps"] == 5
    with pytest.raises(ValueError, match="2 classes"):
        short_finetune(model, images[:3], labels[:3], EvalConfig(), steps=1)
