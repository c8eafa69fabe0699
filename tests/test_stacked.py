"""The stacked trainer (train/stacked.py) equals K separate runs of the reference trainer."""
from __future__ import annotations

import copy
import csv
import dataclasses

import pytest
import torch

from clvsmim.config import ModelConfig, MocoConfig, Profile, SimMIMConfig, TrainConfig
from clvsmim.objectives import build_objective
from clvsmim.train.checkpoint import load_checkpoint, load_encoder
from clvsmim.train.stacked import StackedObjectives, check_stackable, train_stacked
from clvsmim.train.trainer import NonFiniteLossError, train

torch.set_num_threads(1)

TINY = ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
PROFILE = Profile(name="test", model=TINY, moco=MocoConfig(proj_hidden=32, proj_out=16, pred_hidden=32),
                  simmim=SimMIMConfig(mask_ratio=0.6, mask_patch_size=16))
CFG = TrainConfig(steps=4, batch_size=8, lr=2e-3, min_lr=1e-4, warmup_steps=2, log_every=1, checkpoint_every=2)
SEEDS = (3, 11)
ATOL = 2e-5


class Images:
    """Random uint8 32-px images (``batch_fn`` below)."""

    def __init__(self, n: int = 32):
        self.images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)


def batch_fn(dataset: Images, indices):
    return dataset.images[indices], torch.zeros(len(indices), dtype=torch.int64)


DATA = Images()


def fresh(name: str, seed: int, lam: float | None = None, profile: Profile = PROFILE):
    torch.manual_seed(100 + seed)
    obj = build_objective(name, profile, lam=lam)
    obj.model_config = TINY
    return obj


def losses(out_dir) -> list[float]:
    with open(out_dir / "log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


# Float tolerance, calibrated on the reference trainer against itself with timm's unfused
# attention (the same math, other rounding): after 4 MoCo steps its losses moved by up to 2e-4 and
# its parameters as below. Directions whose exact gradient is zero: softmax ignores the key bias (qkv.bias[C:2C]); MoCo's
# projector starts Linear -> BatchNorm, which removes any shift of the encoder's final norm bias
# (and so its running mean only tracks that shift). Adam turns the rounding noise of a zero
# gradient into steps of ±lr, so there two correct runs agree only to the size of those steps;
# elsewhere a near-zero gradient does the same to a few entries (≤ 0.1 % allowed).
LOOSE = 2 * CFG.lr * CFG.steps


def _gauge(key: str, value: torch.Tensor, moco: bool) -> torch.Tensor | None:
    """Mask of the zero-gradient entries of parameter / buffer ``key`` (None: none)."""
    mask = torch.zeros_like(value, dtype=torch.bool)
    if key.endswith("attn.qkv.bias"):
        c = value.shape[0] // 3
        mask[c:2 * c] = True
    elif moco and (key.endswith("encoder.norm.bias") or key.endswith("projector.1.running_mean")):
        mask[:] = True
    else:
        return None
    return mask


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        if not a[key].is_floating_point():
            assert torch.equal(a[key], b[key]), f"{what} {key}"
            continue
        gauge = _gauge(key, a[key], moco=any("projector" in k for k in a))
        tight = torch.ones_like(a[key], dtype=torch.bool) if gauge is None else ~gauge
        diff = (a[key] - b[key]).abs()
        off = (diff[tight] > ATOL + 1e-4 * b[key][tight].abs()).float().mean() if tight.any() else 0.0
        assert off <= 1e-3, f"{what} {key}: {float(off):.2%} of the entries differ by more than {ATOL}"
        assert diff.max() <= LOOSE, f"{what} {key}: max difference {float(diff.max()):.2e}"


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for key, value in a["state"][i].items():
            torch.testing.assert_close(value, b["state"][i][key], atol=1e-4, rtol=2e-2)


def reference_runs(name, tmp_path, cfg=CFG, lams=(None, None), profile=PROFILE):
    """K separate ``train`` runs; returns (objectives, out_dirs)."""
    objs, dirs = [], []
    for seed, lam in zip(SEEDS, lams):
        obj, out = fresh(name, seed, lam, profile), tmp_path / f"ref-{seed}"
        train(obj, DATA, dataclasses.replace(cfg, seed=seed), out, progress=False, batch_fn=batch_fn)
        objs.append(obj)
        dirs.append(out)
    return objs, dirs


def stacked_run(name, tmp_path, cfg=CFG, lams=(None, None), device="cpu", profile=PROFILE, **kw):
    objs = [fresh(name, seed, lam, profile) for seed, lam in zip(SEEDS, lams)]
    dirs = [tmp_path / f"stack-{seed}" for seed in SEEDS]
    summaries = train_stacked(objs, DATA, [dataclasses.replace(cfg, seed=s) for s in SEEDS], dirs,
                              progress=False, batch_fn=batch_fn, device=device, **kw)
    return objs, dirs, summaries


CASES = [("simmim", (None, None)), ("moco", (None, None)), ("hybrid", (0.3, 0.7)), ("mae", (None, None))]


@pytest.mark.parametrize("name,lams", CASES, ids=[c[0] for c in CASES])
def test_stacked_equals_separate_runs(tmp_path, name, lams):
    ref_objs, ref_dirs = reference_runs(name, tmp_path, lams=lams)
    objs, dirs, summaries = stacked_run(name, tmp_path, lams=lams)
    assert [s["complete"] for s in summaries] == [True, True]
    for k in range(2):
        assert losses(dirs[k]) == pytest.approx(losses(ref_dirs[k]), abs=1e-5, rel=3e-4)
        # parameters AND buffers (MoCo's BatchNorm statistics, the momentum encoder)
        assert_same_state(objs[k].state_dict(), ref_objs[k].state_dict(), f"model {k}")
        ref, got = load_checkpoint(ref_dirs[k] / "checkpoint.pt"), load_checkpoint(dirs[k] / "checkpoint.pt")
        assert got.keys() == ref.keys()
        assert_same_state(got["model"], ref["model"], f"checkpoint {k}")
        assert_same_optimizer(got["optimizer"], ref["optimizer"])
        assert got["scheduler"] == ref["scheduler"]
        assert got["step"] == ref["step"] == CFG.steps and got["objective_id"] == ref["objective_id"]
    # the two models really differ (their own seeds and batches)
    assert not torch.allclose(objs[0].encoder.blocks[0].mlp.fc1.weight, objs[1].encoder.blocks[0].mlp.fc1.weight)
    # a stacked model is an ordinary zoo entry: the backbone loads alone
    enc = load_encoder(dirs[0] / "checkpoint.pt")
    assert_same_state(enc.state_dict(), {k: v for k, v in objs[0].encoder.state_dict().items()
                                         if k in enc.state_dict()}, "encoder")


def test_gradient_clipping_is_per_model(tmp_path):
    """With a tight clip the stack still equals separate runs (a global clip over the stack would
    scale both models by the larger norm); and the norms are clip_grad_norm_'s per model."""
    cfg = dataclasses.replace(CFG, grad_clip=0.05, steps=3)
    ref_objs, ref_dirs = reference_runs("simmim", tmp_path, cfg)
    objs, dirs, _ = stacked_run("simmim", tmp_path, cfg)
    for k in range(2):
        assert_same_state(objs[k].state_dict(), ref_objs[k].state_dict(), f"model {k}")

    stack = StackedObjectives([fresh("simmim", s) for s in SEEDS], torch.device("cpu"))
    grads = {n: torch.randn_like(p) * (1 + 9 * torch.arange(2).view(-1, *[1] * (p.dim() - 1)))
             for n, p in stack.trainable()}
    for n, p in stack.trainable():
        p.grad = grads[n].clone()
    norms = stack.clip_per_model(1.0)
    for k in range(2):
        single = [torch.zeros_like(grads[n][k], requires_grad=True) for n, _ in stack.trainable()]
        for (n, _), t in zip(stack.trainable(), single):
            t.grad = grads[n][k].clone()
        expected = torch.nn.utils.clip_grad_norm_(single, 1.0)
        torch.testing.assert_close(norms[k], expected)
        for (n, p), t in zip(stack.trainable(), single):
            torch.testing.assert_close(p.grad[k], t.grad)
    assert norms[1] > 5 * norms[0]


def test_stacked_resume_is_exact_and_checkpoints_are_single_format(tmp_path):
    """Stop a MoCo stack after 2 steps, resume it: same as uninterrupted. One of the stopped
    models resumed by the single trainer gives the same too."""
    full_objs, full_dirs, _ = stacked_run("moco", tmp_path / "full")
    objs, dirs, summaries = stacked_run("moco", tmp_path / "cut", stop_after=2)
    assert [s["step"] for s in summaries] == [2, 2] and not summaries[0]["complete"]
    single = fresh("moco", SEEDS[1])
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    (single_dir / "checkpoint.pt").write_bytes((dirs[1] / "checkpoint.pt").read_bytes())
    train(single, DATA, dataclasses.replace(CFG, seed=SEEDS[1]), single_dir, resume=True, progress=False,
          batch_fn=batch_fn)
    objs, dirs, summaries = stacked_run("moco", tmp_path / "cut", resume=True)
    assert all(s["complete"] for s in summaries)
    for k in range(2):
        assert_same_state(objs[k].state_dict(), full_objs[k].state_dict(), f"resumed model {k}")
        assert losses(dirs[k]) == pytest.approx(losses(full_dirs[k]), abs=1e-6)
    assert_same_state(single.state_dict(), full_objs[1].state_dict(), "single-trainer resume")
    # finished models are skipped (weights loaded), as train does
    again = [fresh("moco", s) for s in SEEDS]
    train_stacked(again, DATA, [dataclasses.replace(CFG, seed=s) for s in SEEDS], dirs, progress=False,
                  batch_fn=batch_fn, device="cpu")
    assert_same_state(again[0].state_dict(), objs[0].state_dict(), "skipped model")


def test_non_finite_loss_names_the_model(tmp_path):
    objs = [fresh("simmim", s) for s in SEEDS]
    with torch.no_grad():
        objs[1].head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss of model 1"):
        train_stacked(objs, DATA, [dataclasses.replace(CFG, seed=s) for s in SEEDS],
                      [tmp_path / "a", tmp_path / "b"], progress=False, batch_fn=batch_fn, device="cpu")
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


def test_a_busy_run_folder_stops_the_stack_before_it_writes(tmp_path):
    """Each stacked model takes its folder's run lock: one folder held elsewhere (here by a
    second open lock, as another process would) stops the whole stack before anything is
    written into any folder, and frees the locks it took."""
    from clvsmim.train.run_lock import LOCK_NAME, RunBusyError, run_lock

    dirs = [tmp_path / "a", tmp_path / "b"]
    with run_lock(dirs[1]):
        with pytest.raises(RunBusyError, match="another process is training"):
            train_stacked([fresh("simmim", s) for s in SEEDS], DATA, [dataclasses.replace(CFG, seed=s) for s in SEEDS],
                          dirs, progress=False, batch_fn=batch_fn, device="cpu")
        assert [sorted(p.name for p in d.iterdir()) for d in dirs] == [[LOCK_NAME], [LOCK_NAME]]
    with run_lock(dirs[0]):  # the lock the stack took on the first folder was released
        pass


def test_stacked_lr_scales_equal_separate_runs_and_resume(tmp_path):
    """``train.lr_scales`` in the stack: the same AdamW groups (order, learning rates) as the
    per-model trainer, so a stack equals separate runs, and a stack stopped after 2 steps and
    resumed (its checkpoints restacked group by group) equals them too."""
    cfg = dataclasses.replace(CFG, lr_scales=(("blocks.1.mlp", 0.25), ("patch_embed", 10.0)))
    ref_objs, ref_dirs = reference_runs("simmim", tmp_path, cfg)
    stacked_run("simmim", tmp_path / "cut", cfg, stop_after=2)
    objs, dirs, summaries = stacked_run("simmim", tmp_path / "cut", cfg, resume=True)
    assert all(s["complete"] for s in summaries)
    for k in range(2):
        assert_same_state(objs[k].state_dict(), ref_objs[k].state_dict(), f"model {k}")
        ref, got = load_checkpoint(ref_dirs[k] / "checkpoint.pt"), load_checkpoint(dirs[k] / "checkpoint.pt")
        assert_same_optimizer(got["optimizer"], ref["optimizer"])
        # base decay / no decay, then (no decay, decay) x (0.25, 10), at the end of the cosine
        lrs = [g["lr"] for g in got["optimizer"]["param_groups"]]
        assert lrs == pytest.approx([CFG.min_lr * f for f in (1, 1, 0.25, 10, 0.25, 10)])
    stack = StackedObjectives([fresh("simmim", s) for s in SEEDS], torch.device("cpu"))
    names = {id(p): n for n, p in stack.trainable()}
    scaled = stack.param_groups(0.05, 1e-3, cfg.lr_scales)[2:]
    assert sorted(g["lr"] for g in scaled) == pytest.approx([2.5e-4, 2.5e-4, 1e-2, 1e-2])
    fast = {names[id(p)] for g in scaled if g["lr"] > 1e-3 for p in g["params"]}
    assert fast and fast == {n for n in names.values() if "patch_embed" in n}


def test_stacked_faithful_simmim_with_its_table_scale_equals_separate_runs(tmp_path):
    """mini3's SimMIM as the GPU path would train it: the BEiT-style encoder (shared relative
    position bias, layer scale) with the table at 10x, stacked, equals separate runs."""
    faithful = dataclasses.replace(PROFILE, families="faithful")
    cfg = dataclasses.replace(CFG, lr_scales=(("relative_position_bias_table", 10.0),))
    ref_objs, _ = reference_runs("simmim", tmp_path, cfg, profile=faithful)
    objs, _, _ = stacked_run("simmim", tmp_path, cfg, profile=faithful)
    assert type(objs[0].encoder).__name__ == "Beit"
    for k in range(2):
        assert_same_state(objs[k].state_dict(), ref_objs[k].state_dict(), f"model {k}")


def test_check_stackable_names_the_difference():
    cfgs = [dataclasses.replace(CFG, seed=s) for s in SEEDS]
    with pytest.raises(ValueError, match="is a MoCo"):
        check_stackable([fresh("simmim", 0), fresh("moco", 1)], cfgs)
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        check_stackable([fresh("simmim", 0), fresh("simmim", 1)], [cfgs[0], dataclasses.replace(cfgs[1], lr=1.0)])
    with pytest.raises(ValueError, match="branch"):
        check_stackable([fresh("hybrid", 0, lam=0.5), fresh("hybrid", 1, lam=1.0)], cfgs)
    wide = copy.deepcopy(PROFILE.model)
    other = build_objective("simmim", dataclasses.replace(PROFILE, model=dataclasses.replace(wide, embed_dim=64,
                                                                                           num_heads=2)))
    with pytest.raises(ValueError, match="other parameters"):
        check_stackable([fresh("simmim", 0), other], cfgs)
    check_stackable([fresh("hybrid", 0, lam=0.2), fresh("hybrid", 1, lam=0.8)], cfgs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,lams", [CASES[1], CASES[2]], ids=["moco", "hybrid"])
def test_cuda_stacked_and_cuda_graph_equal_separate_runs(tmp_path, name, lams):
    """On CUDA: the eager stack and the CUDA-graph stack (3 eager warm-up steps, capture, replays,
    resumed once across the capture) equal separate ``train`` runs on the same device."""
    cfg = dataclasses.replace(CFG, steps=7, checkpoint_every=7)
    ref_objs, ref_dirs = reference_runs(name, tmp_path, cfg, lams)
    for graph in (False, True):
        objs, dirs, _ = stacked_run(name, tmp_path / f"graph-{graph}", cfg, lams, cuda_graph=graph, device="cuda",
                                    stop_after=5)
        objs, dirs, summaries = stacked_run(name, tmp_path / f"graph-{graph}", cfg, lams, cuda_graph=graph,
                                            device="cuda", resume=True)
        assert all(s["complete"] for s in summaries)
        for k in range(2):
            assert losses(dirs[k]) == pytest.approx(losses(ref_dirs[k]), abs=1e-4, rel=1e-3)
            assert_same_state({n: t.cpu() for n, t in objs[k].state_dict().items()},
                              {n: t.cpu() for n, t in ref_objs[k].state_dict().items()}, f"graph={graph} model {k}")


def test_cuda_graph_falls_back_on_cpu(tmp_path):
    with pytest.warns(UserWarning, match="cuda_graph needs a CUDA device"):
        _, dirs, summaries = stacked_run("simmim", tmp_path, dataclasses.replace(CFG, steps=1), cuda_graph=True)
    assert summaries[0]["complete"] and (dirs[0] / "checkpoint.pt").is_file()


# --------------------------------------------------------------------------- the zoo hook

def test_zoo_build_stacked_equals_zoo_build(tmp_path, monkeypatch):
    """Two seeds' zoos built as stacks (SimMIM seeds together; hybrids of both λ and seeds together)
    are the zoos ``zoo.build`` makes, done.json and all; the CLI builds them too."""
    import yaml

    from clvsmim import cli
    from clvsmim.config import profile_from_dict, seed_profile
    from clvsmim.train import zoo
    from clvsmim.train.zoo_stacked import build_stacked, stack_groups

    spec = {"name": "tiny", "data": {"img_size": 32, "num_train": 64, "num_eval": 32},
            "model": {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2,
                      "mlp_ratio": 2.0},
            "sizes": {"Ti": {"embed_dim": 8}, "S": {"embed_dim": 16}},
            "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1},
            "moco": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16}, "simmim": {"mask_patch_size": 8},
            "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
            "eval": {"probe_steps": 5, "finetune_steps": 2, "batch_size": 32}, "lams": [0.0, 0.3, 0.6, 1.0]}
    profile = profile_from_dict(spec)
    only = "simmim-Ti,hybrid-0.3,hybrid-0.6,random-Ti"
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "stacked"))
    groups = stack_groups(profile, [0, 1], only=only)
    assert sorted(sorted((p.train.seed, s.name) for p, s in g) for g in groups) == [
        [(0, "hybrid-0.3-S"), (0, "hybrid-0.6-S"), (1, "hybrid-0.3-S"), (1, "hybrid-0.6-S")],
        [(0, "simmim-Ti"), (1, "simmim-Ti")]]
    built = build_stacked(profile, [0, 1], only=only, progress=False)
    stacked = {(seed, key): load_checkpoint(d / "checkpoint.pt") for seed, dirs in built.items()
               for key, d in dirs.items() if not key.startswith("random")}
    assert all((d / "done.json").is_file() for dirs in built.values() for d in dirs.values())
    assert stack_groups(profile, [0, 1], only=only) == []  # nothing left to build

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "single"))
    for seed in (0, 1):
        dirs = zoo.build(seed_profile(profile, seed), only=only, jobs=1, progress=False)
        assert dirs.keys() == built[seed].keys()
        for key, d in dirs.items():
            if not key.startswith("random"):
                ref = load_checkpoint(d / "checkpoint.pt")
                assert_same_state(stacked[(seed, key)]["model"], ref["model"], f"seed {seed} {key}")

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cli"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["zoo", "build", "--profile", str(path), "--stacked", "--seeds", "0,2", "--only", "moco-Ti",
                     "--no-progress"]) == 0
    assert all(zoo.is_built(seed_profile(profile, s), zoo.resolve(seed_profile(profile, s), "moco-Ti"))
               for s in (0, 2))
    assert cli.main(["zoo", "build", "--profile", str(path), "--seeds", "0,2"]) == 2  # --seeds needs --stacked
