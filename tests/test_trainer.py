"""Trainer tests on a toy objective (tiny ViT regressing per-image colour means)."""
from __future__ import annotations

import csv
import dataclasses
import importlib
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from clvsmim.train import checkpoint as ckpt_mod
from clvsmim.train.checkpoint import load_checkpoint, load_encoder, load_objective_state, save_atomic
from clvsmim.config import ModelConfig, TrainConfig
from clvsmim.models import build_vit
from clvsmim.objectives.base import Objective
from clvsmim.rng import hash_uniform
from clvsmim.train.trainer import (CosineSchedule, NonFiniteLossError, build_optimizer, build_scheduler,
                             epoch_permutation, param_groups, train)

TOY_MODEL = ModelConfig(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)


# --------------------------------------------------------------------------- toy fixtures

class ToyObjective(Objective):
    """Tiny ViT + linear head regressing each image's channel means from a seeded-noisy input.

    ``ema_head`` is a frozen momentum copy of the head updated in ``after_optimizer_step``;
    ``nan_at`` makes the forward of that 0-based step return NaN.
    """

    name = "toy"

    def __init__(self, model_cfg: ModelConfig = TOY_MODEL, nan_at: int | None = None):
        super().__init__(build_vit(model_cfg))
        self.model_config = model_cfg
        self.head = nn.Linear(model_cfg.embed_dim, 3)
        self.ema_head = nn.Linear(model_cfg.embed_dim, 3).requires_grad_(False)
        self.ema_head.load_state_dict(self.head.state_dict())
        self.register_buffer("next_step", torch.zeros((), dtype=torch.int64))
        self.nan_at = nan_at

    def forward(self, images, seeds):
        x = images.float() / 255.0
        noise = hash_uniform(seeds, x[0].numel()).to(x.device).view_as(x) - 0.5
        target = x.mean(dim=(2, 3))
        pred = self.head(self.encoder(x + 0.1 * noise))
        loss = (pred.float() - target).pow(2).mean()
        if self.nan_at is not None and int(self.next_step) == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "loss_aux": pred.detach().abs().mean()}

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        for ema, p in zip(self.ema_head.parameters(), self.head.parameters()):
            ema.lerp_(p, 0.1)
        self.next_step.fill_(step + 1)


class ToyDataset:
    """In-memory uint8 images with labels."""

    def __init__(self, n: int = 64, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.arange(n) % 4

    def __len__(self):
        return len(self.images)


def toy_batch(dataset: ToyDataset, indices: torch.Tensor):
    return dataset.images[indices], dataset.labels[indices]


def toy_cfg(**over) -> TrainConfig:
    base = dict(steps=8, batch_size=8, lr=2e-3, min_lr=1e-5, warmup_steps=2, weight_decay=0.05,
                grad_clip=1.0, checkpoint_every=3, log_every=1, seed=3)
    return TrainConfig(**{**base, **over})


def make_toy(seed: int = 0, **kw) -> ToyObjective:
    torch.manual_seed(seed)
    return ToyObjective(**kw)


def run_toy(out_dir, cfg, objective=None, dataset=None, **kw) -> tuple[ToyObjective, dict]:
    objective = objective or make_toy()
    summary = train(objective, dataset or ToyDataset(), cfg, out_dir, progress=False, batch_fn=toy_batch, **kw)
    return objective, summary


def read_log(out_dir) -> list[dict]:
    with open(Path(out_dir) / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_state(a: nn.Module, b: nn.Module, atol: float = 0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if atol == 0.0:
            assert torch.equal(sa[k], sb[k]), k
        else:
            torch.testing.assert_close(sa[k].float(), sb[k].float(), atol=atol, rtol=0, msg=k)


# --------------------------------------------------------------------------- optimisation

def test_loss_decreases(tmp_path):
    cfg = toy_cfg(steps=40, batch_size=16, lr=3e-3, warmup_steps=4, log_every=5, checkpoint_every=100)
    _, summary = run_toy(tmp_path, cfg, dataset=ToyDataset(n=128))
    rows = read_log(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first, (first, last)
    assert summary["complete"] and summary["final_loss"] == pytest.approx(last, rel=1e-4)
    assert {"step", "loss", "lr", "images_per_s", "loss_aux", "grad_norm"} <= set(rows[0])
    meta = (tmp_path / "meta.json").read_text()
    assert '"objective": "toy"' in meta and '"wall_time_s"' in meta


def test_weight_decay_groups():
    objective = make_toy(model_cfg=ModelConfig(**{**TOY_MODEL.__dict__, "sincos_pos_embed": False}))
    decay, no_decay = param_groups(objective, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in objective.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert {"encoder.pos_embed", "encoder.cls_token", "encoder.norm.weight", "encoder.norm.bias",
            "encoder.blocks.0.norm1.weight", "encoder.blocks.0.attn.qkv.bias", "head.bias"} <= plain
    assert {"encoder.blocks.0.attn.qkv.weight", "encoder.blocks.1.mlp.fc1.weight", "head.weight",
            "encoder.patch_embed.proj.weight"} <= decayed
    assert not any(n.startswith("ema_head") for n in decayed | plain)  # requires_grad False
    frozen_pos = make_toy()  # sin-cos position embedding is frozen -> not optimised at all
    optimizer = build_optimizer(frozen_pos, toy_cfg())
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(frozen_pos.encoder.pos_embed) not in optimised


def test_lr_scales_give_matching_parameters_their_own_learning_rate():
    """A fragment of ``lr_scales`` puts the parameters it names into their own group at
    lr · scale, keeping the weight-decay split; the schedule scales every group alike, and
    AdamW's first step moves a parameter by exactly its group's learning rate (|m̂/√v̂| = 1)."""
    objective = make_toy(model_cfg=ModelConfig(**{**TOY_MODEL.__dict__, "sincos_pos_embed": False}))
    cfg = toy_cfg(weight_decay=0.0, warmup_steps=1, lr_scales={"pos_embed": 10, "qkv.weight": 0.5})
    assert cfg.lr_scales == (("pos_embed", 10.0), ("qkv.weight", 0.5))
    optimizer = build_optimizer(objective, cfg)
    names = {id(p): n for n, p in objective.named_parameters()}
    by_lr = {round(g["lr"] / cfg.lr, 6): {names[id(p)] for p in g["params"]} for g in optimizer.param_groups[2:]}
    assert by_lr == {0.5: {"encoder.blocks.0.attn.qkv.weight", "encoder.blocks.1.attn.qkv.weight"},
                     10.0: {"encoder.pos_embed"}}
    base = {names[id(p)] for g in optimizer.param_groups[:2] for p in g["params"]}
    assert not base & (by_lr[0.5] | by_lr[10.0])
    scheduler = build_scheduler(optimizer, cfg)
    before = {n: p.detach().clone() for n, p in objective.named_parameters()}
    images = ToyDataset(8).images
    objective(images, torch.arange(8))["loss"].backward()
    optimizer.step()
    for name, scale in (("encoder.pos_embed", 10.0), ("encoder.blocks.0.attn.qkv.weight", 0.5),
                        ("encoder.blocks.0.mlp.fc1.weight", 1.0)):
        param = dict(objective.named_parameters())[name]
        moved = (param.detach() - before[name]).abs()[param.grad.abs() > 1e-5]  # AdamW eps 1e-8 aside
        torch.testing.assert_close(moved, torch.full_like(moved, cfg.lr * scale), rtol=1e-3, atol=0)
    for _ in range(3):
        scheduler.step()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[0] == lrs[1] and sorted(lr / lrs[0] for lr in lrs[2:]) == pytest.approx([0.5, 10.0])


def test_lr_scales_are_checked_and_leave_default_keys_alone():
    from clvsmim.config import config_key, load_profile, train_config_for
    with pytest.raises(ValueError, match="positive number"):
        toy_cfg(lr_scales={"pos_embed": 0})
    with pytest.raises(ValueError, match="mapping of parameter-name fragment"):
        toy_cfg(lr_scales=5)
    with pytest.raises(ValueError, match="matches several fragments"):
        build_optimizer(make_toy(), toy_cfg(lr_scales={"qkv": 2, "attn": 3}))
    mini = load_profile("mini")
    assert config_key(dataclasses.replace(mini.train, lr_scales={})) == config_key(mini.train)
    assert config_key(dataclasses.replace(mini.train, lr_scales={"gamma_": 2})) != config_key(mini.train)
    mini3 = load_profile("mini3")  # only SimMIM's table gets a multiplier: MoCo keeps mini's budget
    assert train_config_for(mini3, "simmim").lr_scales == (("relative_position_bias_table", 10.0),)
    assert train_config_for(mini3, "moco") == mini.train


def test_lr_schedule_closed_form():
    lr, min_lr, warmup, total = 1e-3, 1e-5, 10, 50
    cfg = toy_cfg(lr=lr, min_lr=min_lr, warmup_steps=warmup, steps=total)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(2, 2))], lr=lr)
    scheduler = build_scheduler(optimizer, cfg)
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert used[0] == pytest.approx(lr / warmup)
    assert used[warmup - 1] == pytest.approx(lr)  # end of warm-up
    assert used[warmup] == pytest.approx(lr)  # start of the cosine
    mid = warmup + (total - warmup - 1) / 2
    assert CosineSchedule(lr, min_lr, warmup, total).lr_at(mid) == pytest.approx((lr + min_lr) / 2)
    assert used[-1] == pytest.approx(min_lr)  # end
    assert all(a >= b for a, b in zip(used[warmup:], used[warmup + 1:]))


def test_epoch_permutation_is_deterministic():
    a, b = epoch_permutation(100, 3, 1), epoch_permutation(100, 3, 1)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(100))
    assert not torch.equal(a, epoch_permutation(100, 3, 2))


def test_bf16_falls_back_without_native_support_and_is_stable_when_forced(tmp_path, monkeypatch):
    from clvsmim.train.trainer import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.delenv("CLVSMIM_FORCE_BF16", raising=False)
    if not native_bf16(cpu):
        with pytest.warns(UserWarning, match="no native bf16"):
            assert resolve_precision("bf16", cpu) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp16", cpu)
    monkeypatch.setenv("CLVSMIM_FORCE_BF16", "1")
    cfg = toy_cfg(steps=6, checkpoint_every=100)
    run_toy(tmp_path / "fp32", cfg)
    run_toy(tmp_path / "bf16", dataclasses.replace(cfg, precision="bf16"))
    fp32, bf16 = ([float(r["loss"]) for r in read_log(tmp_path / d)] for d in ("fp32", "bf16"))
    assert all(math.isfinite(v) for v in bf16)
    assert bf16 == pytest.approx(fp32, rel=0.1)
    assert '"precision_used": "bf16"' in (tmp_path / "bf16" / "meta.json").read_text()


# --------------------------------------------------------------------------- resume

def test_resume_after_crash_is_exact(tmp_path):
    cfg = toy_cfg()
    reference, _ = run_toy(tmp_path / "ref", cfg)

    class Crash(Exception):
        pass

    def crash_at_5(step, _scalars):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        run_toy(tmp_path / "run", cfg, callback=crash_at_5)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3
    assert [int(r["step"]) for r in read_log(tmp_path / "run")] == [1, 2, 3, 4, 5]
    resumed, summary = run_toy(tmp_path / "run", cfg, objective=make_toy(seed=99), resume=True)
    assert summary["complete"] and summary["step"] == 8
    assert_same_state(resumed, reference)  # incl. momentum copy and buffers
    ref_rows, rows = read_log(tmp_path / "ref"), read_log(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]


def test_stop_after_then_resume_is_exact_and_finished_run_returns(tmp_path):
    cfg = toy_cfg(log_every=2)
    reference, _ = run_toy(tmp_path / "ref", cfg)
    _, paused = run_toy(tmp_path / "run", cfg, stop_after=5)
    assert not paused["complete"] and load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 5
    resumed, _ = run_toy(tmp_path / "run", cfg, objective=make_toy(seed=7), resume=True)
    assert_same_state(resumed, reference)
    assert [r["loss"] for r in read_log(tmp_path / "run")] == [r["loss"] for r in read_log(tmp_path / "ref")]
    with pytest.raises(ValueError, match="cannot resume"):
        run_toy(tmp_path / "run", dataclasses.replace(cfg, lr=1e-3), resume=True)
    before = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    again, summary = run_toy(tmp_path / "run", cfg, objective=make_toy(seed=11))
    assert summary["complete"] and (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == before
    assert_same_state(again, reference)  # the finished weights are loaded into the given objective
    # load_encoder rebuilds the backbone alone and computes what the trained encoder computes
    encoder = load_encoder(tmp_path / "run" / "checkpoint.pt")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(encoder(x), reference.encoder.eval()(x))
    fresh = make_toy(seed=5)
    assert load_objective_state(fresh, tmp_path / "run" / "checkpoint.pt") == 8
    assert_same_state(fresh, reference)


def test_sigterm_checkpoints_the_current_step_and_resume_is_exact(tmp_path, monkeypatch):
    import signal

    from clvsmim.train import runtime
    from clvsmim.train import trainer as trainer_mod

    monkeypatch.setattr(runtime, "_STOP", type(runtime._STOP)())  # a fresh flag for this test
    cfg = toy_cfg(checkpoint_every=5, log_every=2)
    reference, _ = run_toy(tmp_path / "ref", cfg)
    handler = signal.getsignal(signal.SIGTERM)

    def terminate_at_3(step, _scalars):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    _, stopped = run_toy(tmp_path / "run", cfg, callback=terminate_at_3)
    # the step after the signal finishes and is checkpointed although checkpoint_every is 5
    assert not stopped["complete"] and stopped["step"] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is handler and trainer_mod.stop_requested()  # handler restored
    # the flag is sticky: a later run in this process stops at its start, writing nothing new
    before = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    _, again = run_toy(tmp_path / "run", cfg, objective=make_toy(seed=3), resume=True)
    assert again["step"] == 4 and (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == before
    runtime._STOP.clear()
    resumed, summary = run_toy(tmp_path / "run", cfg, objective=make_toy(seed=7), resume=True)
    assert summary["complete"] and summary["step"] == 8
    assert_same_state(resumed, reference)
    assert [r["loss"] for r in read_log(tmp_path / "run")] == [r["loss"] for r in read_log(tmp_path / "ref")]


# --------------------------------------------------------------------------- failures

def test_a_second_process_cannot_train_into_a_busy_run_folder(tmp_path):
    """Two writers would interleave log.csv and overwrite each other's checkpoints: while another
    process holds the folder's run lock, ``train`` refuses at once, naming the holder, and writes
    nothing; the lock goes with its holder, however it ends."""
    from clvsmim.train.run_lock import LOCK_NAME, RunBusyError, run_lock

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom clvsmim.train.run_lock import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=rf"another process is training.*pid {holder.pid}"):
            run_toy(out, toy_cfg())
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no checkpoint, log or meta
    finally:
        holder.kill()  # SIGKILL: no chance to clean up, the kernel still drops the lock
        holder.wait()
    _, summary = run_toy(out, toy_cfg())
    assert summary["complete"] and [int(r["step"]) for r in read_log(out)] == list(range(1, 9))
    with run_lock(out):  # released after the run: the folder is free again
        pass


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = toy_cfg(checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"at step 5\b") as info:
        run_toy(tmp_path, cfg, objective=make_toy(nan_at=4))
    assert info.value.step == 5 and math.isnan(info.value.value)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 4 < info.value.step
    good, _ = run_toy(tmp_path / "good", toy_cfg(steps=8, checkpoint_every=2), stop_after=4)
    fresh = make_toy(seed=1)
    load_objective_state(fresh, tmp_path / "checkpoint.pt")
    assert_same_state(fresh, good)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_atomic_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    kept = load_checkpoint(path)
    assert kept["step"] == 1 and torch.equal(kept["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_crash_during_training_save_keeps_previous(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save_then_fail(obj, f, *a, **k):
        calls.append(obj["step"])
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            raise OSError("killed while saving")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", save_then_fail)
    with pytest.raises(OSError, match="killed while saving"):
        run_toy(tmp_path, toy_cfg(checkpoint_every=3))
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert calls == [3, 6] and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    assert not list(tmp_path.glob(".checkpoint.pt.*"))


# --------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    """2 CPU processes x (global batch 8, grad_accum 2) == 1 process x (batch 8)."""
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(worker), str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLVSMIM_THREADS": "1", "PYTHONPATH":
           os.pathsep.join(filter(None, [str(worker.parent), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"DDP run timed out:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / "ddp" / f"state_rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for k in ranks[0]["state"]:
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]), k
    single, _ = run_toy(tmp_path / "single", ddp_cfg(grad_accum=1))
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][k].float(), v.float(), atol=1e-5, rtol=0, msg=k)
    losses = [[float(r["loss"]) for r in read_log(tmp_path / d)] for d in ("ddp", "single")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def ddp_cfg(**over) -> TrainConfig:
    """The run of the DDP test (shared with tests/ddp_worker.py)."""
    return toy_cfg(**{"steps": 4, "batch_size": 8, "grad_accum": 2, "checkpoint_every": 2, **over})


# --------------------------------------------------------------------------- CLI with the real objectives

def _real_modules_present() -> bool:
    try:
        data, objectives = importlib.import_module("clvsmim.data"), importlib.import_module("clvsmim.objectives")
    except ImportError:
        return False
    return hasattr(data, "open_dataset") and hasattr(objectives, "build_objective")


@pytest.mark.skipif(not _real_modules_present(), reason="clvsmim.data / clvsmim.objectives not written yet")
def test_cli_smoke_simmim(tmp_path):
    from clvsmim.cli import main

    out = tmp_path / "simmim"
    assert main(["train", "--objective", "simmim", "--profile", "smoke", "--out", str(out), "--steps", "3",
                 "--no-progress", "--threads", "1"]) == 0
    rows = read_log(out)
    assert rows and int(rows[-1]["step"]) == 3 and math.isfinite(float(rows[-1]["loss"]))
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    encoder = load_encoder(out / "checkpoint.pt")
    feats = encoder.forward_features(torch.rand(2, 3, 32, 32))
    assert feats.shape[0] == 2 and torch.isfinite(feats).all()
