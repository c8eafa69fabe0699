"""Plots and chapter helpers of the background, behaviour and architecture chapters, on small
synthetic inputs (fake analyze / evaluation dicts, a tiny smoke-size MAE, a temporary cache)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clvsmim.book.chapters import architecture as arch  # noqa: E402
from clvsmim.book.chapters import background as bg  # noqa: E402
from clvsmim.book.chapters import behaviour as beh  # noqa: E402
from clvsmim.config import load_profile  # noqa: E402
from clvsmim.book.plots import architecture as parch  # noqa: E402
from clvsmim.book.plots import background as pbg  # noqa: E402
from clvsmim.book.plots import behaviour as pbeh  # noqa: E402
from clvsmim.book.units import accuracy_se_points  # noqa: E402
from clvsmim.uncertainty import pack_correct  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LITERATURE = REPO / "book" / "data" / "literature.csv"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def small_profile(tmp_path, monkeypatch):
    """The smoke profile with a tiny data set, cached in a temporary folder."""
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    p = load_profile("smoke")
    return dataclasses.replace(p, data=dataclasses.replace(p.data, num_train=16, num_eval=16),
                               eval=dataclasses.replace(p.eval, num_analysis_images=4))


def strict_json(data) -> str:
    """What save_figure writes: NaN / inf are errors."""
    return json.dumps(data, allow_nan=False, default=lambda o: o.tolist())


def n_lines(ax) -> int:
    return sum(1 for line in ax.get_lines() if len(line.get_xdata()))


# --------------------------------------------------------------------------- literature

def test_literature_rows_have_source_and_status():
    df = beh.read_literature(LITERATURE)
    assert len(df) >= 10
    assert df["source"].str.strip().str.len().gt(0).all()
    assert df["status"].isin(beh.STATUSES).all()
    assert {"MoCo v3", "DINO", "SimMIM", "MAE", "BEiT"} <= set(df["method"])


def test_literature_reader_rejects_missing_source_and_bad_status(tmp_path):
    head = ",".join(beh.LITERATURE_COLUMNS)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{head}\nMAE,MIM,B,86,68.0,83.6,,verified,\n")
    with pytest.raises(ValueError, match="source"):
        beh.read_literature(bad)
    bad.write_text(f"{head}\nMAE,MIM,B,86,68.0,83.6,,guessed,somewhere\n")
    with pytest.raises(ValueError, match="status"):
        beh.read_literature(bad)


def test_literature_panels_merge_detection_and_sort_sizes():
    df = beh.read_literature(LITERATURE)
    panels = beh.literature_panels(df)
    strict_json(panels)
    moco = [r for r in panels["detection"] if r["method"] == "MoCo v3"]
    assert moco and moco[0]["finetune"] == 83.2 and moco[0]["coco_ap_box"] == 47.9
    assert moco[0]["status"] == "approximate"  # the worse of verified (fine-tune) and approximate (AP)
    assert all(r["size"] == "B" for r in panels["linear_vs_finetune"])
    mae_sizes = [r["size"] for r in panels["size"] if r["method"] == "MAE"]
    assert mae_sizes == ["B", "L", "H"]
    assert "facebookresearch/mae" in beh.literature_citations(df)


# --------------------------------------------------------------------------- measured + sentences

def fake_eval(lp, ft, miou, depth=3):
    per = [lp * (d + 1) / (depth + 1) for d in range(depth + 1)]
    return {"linear_probe": {"per_layer": per, "final": per[-1]}, "finetune": ft, "dense_probe": {"miou": miou}}


@pytest.fixture
def evals():
    out = {"moco": fake_eval(0.6, 0.70, 0.50), "simmim": fake_eval(0.4, 0.80, 0.60),
           "mae": fake_eval(0.5, 0.78, 0.58), "random": fake_eval(0.15, 0.3, 0.4)}
    for size, (m, s) in {"Ti": (0.5, 0.4), "S": (0.7, 0.8), "B": (0.75, 0.9)}.items():
        out[f"moco-{size}"] = fake_eval(0.6, m, 0.5)
        out[f"simmim-{size}"] = fake_eval(0.4, s, 0.6)
    out["simmim-S"]["finetune"] = None  # a missing number leaves its record out
    return out


def test_measured_behaviour_records(evals):
    m = beh.measured_behaviour(evals, ["B", "Ti", "S"])
    strict_json(m)
    assert [r["model"] for r in m["linear_vs_finetune"]] == ["moco", "simmim", "mae"]
    assert m["linear_vs_finetune"][0]["finetune"] == pytest.approx(70.0)
    assert [(r["model"], r["size"]) for r in m["size"]] == [("moco", "Ti"), ("moco", "S"), ("moco", "B"),
                                                            ("simmim", "Ti"), ("simmim", "B")]
    assert m["detection"][1]["dense_miou"] == pytest.approx(60.0)
    text = "\n".join(beh.behaviour_sentences(m))
    assert "linear probing (last block): MoCo v3 60.0 % vs SimMIM 40.0 %" in text
    # five scored comparisons; the dense probe is described, not scored
    assert text.count("**agrees**") == 5 and "**differs**" not in text


def test_compare_sentence_verdicts():
    assert beh.verdict(2.0, 1.0, ">") == "agrees"
    assert beh.verdict(2.0, 1.0, "<") == "differs"
    assert beh.verdict(None, 1.0, ">") == "n/a"
    s = beh.compare_sentence("late-layer attention distance", "MoCo v3", 9.81, "SimMIM", 6.1, ">", "px", 1)
    assert s.startswith("late-layer attention distance: MoCo v3 9.8 px vs SimMIM 6.1 px.") and "**agrees**" in s
    tie = beh.compare_sentence("NMI", "MoCo v3", 1e-6, "SimMIM", 2e-6, "<", "", 3)
    assert "equal at this precision" in tie and "**differs**" in tie
    assert "cannot be checked" in beh.compare_sentence("x", "a", float("nan"), "b", 1.0, ">")
    with pytest.raises(ValueError):
        beh.verdict(1, 2, "=")


def fake_analysis(depth=4, heads=3, scale=1.0):
    per_head = [[scale * (l + 1) + 0.1 * h for h in range(heads)] for l in range(depth)]
    return {"attention_distance": {"per_head": per_head, "mean": [float(np.mean(r)) for r in per_head]},
            "nmi": {"per_head": [[v / 100 for v in r] for r in per_head],
                    "mean": [float(np.mean(r)) / 100 for r in per_head]}}


def test_depth_curves_late_values_and_attention_sentences():
    analyses = {"moco": fake_analysis(scale=2.0), "simmim": fake_analysis(scale=1.0)}
    dist = beh.depth_curves(analyses, "attention_distance")
    nmi = beh.depth_curves(analyses, "nmi")
    assert dist["moco"]["depth"] == [1, 2, 3, 4] and len(dist["moco"]["per_head"][0]) == 3
    assert beh.late_blocks(12) == [9, 10, 11, 12] and beh.late_blocks(3) == [3]
    assert beh.late_value([1.0, 2.0, 3.0, 4.0]) == pytest.approx(3.5)
    lines = beh.attention_sentences(None, dist, nmi)
    assert len(lines) == 2
    assert "**agrees**" in lines[0]  # MoCo attends farther
    assert "**differs**" in lines[1]  # and (here) has the larger NMI
    with pytest.raises(ValueError):
        beh.depth_curves(analyses, "fourier")


# --------------------------------------------------------------------------- F2 helpers

def test_pick_queries_inside_and_outside_the_object():
    f = np.zeros((6, 6))
    f[1:3, 1:3] = 1.0
    f[3, 1] = 0.4
    q = beh.pick_queries(f)
    assert f[q["object"]] == 1.0
    assert f[q["background"]] == 0.0
    assert q["background"] == (5, 5)  # farthest from the object
    assert beh.pick_queries(None, (4, 4)) == {"object": (2, 2), "background": (0, 0)}
    assert beh.pick_queries(np.zeros((4, 4)))["object"] == (2, 2)  # no object: the fallback


def test_pick_image_prefers_a_visible_object_with_background():
    full = np.ones((4, 4))
    none = np.zeros((4, 4))
    some = np.zeros((4, 4))
    some[1:3, 1:3] = 1.0
    assert beh.pick_image(np.stack([full, none, some])) == 2


def test_query_attention_maps_and_stats():
    from clvsmim.data.augment import normalize
    from clvsmim.models import build_vit

    p = load_profile("smoke")
    torch.manual_seed(0)
    model = build_vit(p.model).eval()
    x = normalize(torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8))
    maps = beh.query_attention_maps(model, x, {"object": (1, 1), "background": (0, 3)})
    for m in maps.values():
        assert m.shape == (4, 4) and m.sum() == pytest.approx(1.0, abs=1e-5)
    assert beh.map_cosine(maps["object"], maps["object"]) == pytest.approx(1.0)
    assert beh.local_mass(np.ones((4, 4)), (0, 0)) == pytest.approx(4 / 16)


# --------------------------------------------------------------------------- behaviour plots

def test_plot_behaviour_axes_and_points(evals):
    lit = beh.literature_panels(beh.read_literature(LITERATURE))
    measured = beh.measured_behaviour(evals, ["Ti", "S", "B"])
    fig = pbeh.plot_behaviour(lit, measured)
    axes = fig.axes
    assert len(axes) == 6
    assert len(axes[0].collections) == len(lit["linear_vs_finetune"])
    assert len(axes[2].collections) == len(lit["detection"])
    assert len(axes[3].collections) == 3
    assert n_lines(axes[4]) == 2  # moco and simmim across sizes
    assert len(axes[5].collections) == 3
    hollow = [c for c in axes[0].collections if len(c.get_facecolors()) == 0 or c.get_facecolors()[0][3] == 0]
    assert len(hollow) == sum(r["status"] != "verified" for r in lit["linear_vs_finetune"])


def test_fine_tuning_over_each_models_own_untrained_architecture():
    """The faithful mini3 profile pairs SimMIM with its untrained BEiT encoder and MoCo with the
    shared control; the records, the split of the difference and the bars follow the numbers."""
    pairs = beh.own_architecture_pairs(load_profile("mini3"), ["Ti", "S", "B"])
    assert pairs == {"moco-Ti": "random-Ti", "moco-S": "random-S",
                     "simmim-Ti": "random-simmim-Ti", "simmim-S": "random-simmim-S"}
    assert set(beh.own_architecture_pairs(load_profile("mini2"), ["S"]).values()) == {"random-S"}
    evals = {"moco-S": {"finetune": 0.20}, "random-S": {"finetune": 0.15}, "simmim-S": {"finetune": 0.17},
             "random-simmim-S": {"finetune": 0.13}, "moco-Ti": {"finetune": 0.18}}  # no Ti controls
    rows = beh.finetune_over_own_architecture(evals, pairs)
    strict_json(rows)
    assert [r["model"] for r in rows] == ["moco-S", "simmim-S"]
    assert rows[0]["gain"] == pytest.approx(5.0) and rows[1]["gain"] == pytest.approx(4.0)
    (line,) = beh.own_architecture_sentences(rows)
    # -3.0 points in all = -2.0 between the untrained encoders + -1.0 from pretraining
    assert "= -3.0 points, of which -2.0 lie between" in line and "and -1.0 come from pretraining" in line
    fig = pbeh.plot_own_architecture(rows)
    heights = sorted(round(b.get_height(), 6) for b in fig.axes[0].patches)
    assert heights == [13.0, 15.0, 17.0, 20.0]
    assert [t.get_text() for t in fig.axes[0].texts] == ["+5.0", "+4.0"]
    assert pbeh.plot_own_architecture([]).axes[0].texts[0].get_text().startswith("no fine-tuning")
    # with the evaluation size: ± 2 binomial SE on every bar (MoCo-S fine-tuned: 20 % of 400 images)
    ax = pbeh.plot_own_architecture(rows, num_images=400).axes[0]
    tops = sorted(max(seg[:, 1]) for c in ax.collections for seg in c.get_segments())
    assert tops[-1] == pytest.approx(20.0 + 2 * 100 * math.sqrt(0.2 * 0.8 / 400))
    assert len(tops) == 4


def test_own_architecture_errors_are_paired_over_images_and_add_the_runs_variance():
    """With per-image records the gain's SE is paired (two models right on the same images: no
    noise in the gain); with repeated fine-tunes each bar adds its runs' variance / runs; the bars
    and the gain drawn carry those SEs."""
    same = pack_correct(np.array([1, 0] * 50, dtype=bool))  # 50 of 100 right
    other = pack_correct(np.array([1, 1, 0, 0] * 25, dtype=bool))  # 50 of 100 right, other images
    pairs = {"moco-S": "random-S"}
    rows = beh.finetune_over_own_architecture(
        {"moco-S": {"finetune": 0.5, "finetune_correct": same}, "random-S": {"finetune": 0.5, "finetune_correct": same}},
        pairs, num_images=100)
    (row,) = rows
    assert row["se_kind"] == "paired" and row["gain_se"] == pytest.approx(0.0)
    assert row["finetune_se"] == pytest.approx(100 * math.sqrt(0.25 / 100)) == row["untrained_se"]
    (row,) = beh.finetune_over_own_architecture(
        {"moco-S": {"finetune": 0.5, "finetune_correct": same}, "random-S": {"finetune": 0.5, "finetune_correct": other}},
        pairs)
    # per image: d = same − other ∈ {0, 1, 0, −1}, variance 0.5 over 100 images
    assert row["gain_se"] == pytest.approx(100 * math.sqrt(0.5 / 100))
    # two runs of MoCo-S: 50 % and 100 % (mean 75 %); per image mean (1, 0.5), variance 1/16; runs var 0.125 / 2
    runs = [{"correct": same}, {"correct": pack_correct(np.ones(100, dtype=bool))}]
    (row,) = beh.finetune_over_own_architecture(
        {"moco-S": {"finetune": 0.75, "finetune_runs": runs}, "random-S": {"finetune": 0.5, "finetune_correct": same}},
        pairs, num_images=100)
    assert row["se_kind"] == "paired+runs" and row["runs"] == [2, 1]
    assert row["finetune_se"] == pytest.approx(100 * math.sqrt(1 / 16 / 100 + 0.125 / 2))
    assert row["gain_se"] == pytest.approx(100 * math.sqrt(1 / 16 / 100 + 0.125 / 2))  # the control adds 0: d = 0 or 0.5
    ax = pbeh.plot_own_architecture([row], num_images=100).axes[0]
    tops = sorted(max(seg[:, 1]) for c in ax.collections for seg in c.get_segments())
    assert tops[-1] == pytest.approx(75.0 + 2 * row["finetune_se"])
    assert ax.texts[0].get_text() == f"+25.0 ± {2 * row['gain_se']:.1f}"
    assert "2 fine-tuning runs" in ax.get_legend().get_title().get_text()


def test_plot_behaviour_handles_empty_panels():
    fig = pbeh.plot_behaviour({}, {})
    assert len(fig.axes) == 6


def f2_data(names=("moco", "simmim")):
    rng = np.random.default_rng(0)
    maps = {}
    for n in names:
        maps[n] = {q: (rng.random((4, 4)) / 8).tolist() for q in ("object", "background")}
    return {"image": rng.random((32, 32, 3)), "image_index": 2, "label": 1, "block": 3, "patch_size": 8,
            "grid": [4, 4], "queries": {"object": [1, 2], "background": [3, 0]}, "maps": maps,
            "stats": {n: {"cosine_between_queries": 0.5, "local_mass": {"object": 0.3, "background": 0.2}}
                      for n in names},
            "models": list(names), "source": "zoo", "query_foreground": {"object": 1.0, "background": 0.0}}


def test_plot_query_attention_panels():
    data = f2_data()
    fig = pbeh.plot_query_attention(data)
    assert len(fig.axes) == 1 + 2 * 2 + 1  # image, 2 models × 2 queries, colour bar
    strict_json({k: v for k, v in data.items() if k != "image"})
    lines = beh.attention_sentences(data, None, None)
    assert len(lines) == 2


def test_plot_depth_metric_and_nmi_lines():
    analyses = {"moco": fake_analysis(), "simmim": fake_analysis(scale=0.5), "mae": fake_analysis(scale=0.7)}
    dist = beh.depth_curves(analyses, "attention_distance")
    control = beh.depth_curves({"random": fake_analysis(scale=0.1)}, "attention_distance")["random"]
    fig = pbeh.plot_depth_metric(dist, "px", control)
    assert n_lines(fig.axes[0]) == 4
    assert fig.axes[0].get_lines()[-1].get_linestyle() == "--"
    nmi = beh.depth_curves(analyses, "nmi")
    fig = pbeh.plot_nmi(nmi, None)
    ax = fig.axes[0]
    assert n_lines(ax) == 3
    assert len(ax.collections) == 3 * 4  # one scatter of the heads per model and depth
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3 * 4 * 3
    strict_json({"curves": nmi, "control": control})


# --------------------------------------------------------------------------- architecture

def test_linear_probe_summary_best_depth_and_drop():
    evals = {"moco": {"linear_probe": {"per_layer": [0.1, 0.2, 0.3, 0.4]}},
             "simmim": {"linear_probe": {"per_layer": [0.2, 0.5, 0.4, 0.3]}},
             "broken": {"linear_probe": None}}
    s = arch.linear_probe_summary(evals)
    assert set(s) == {"moco", "simmim"}
    assert s["moco"]["best_depth"] == 3 and s["moco"]["drop"] == pytest.approx(0.0)
    assert s["simmim"]["best_depth"] == 1 and s["simmim"]["drop"] == pytest.approx(20.0)
    assert s["simmim"]["accuracy"][1] == pytest.approx(50.0)
    text = "\n".join(arch.probe_sentences(s))
    assert "SimMIM: best depth 1 of 3" in text and text.count("**agrees**") == 2
    fig = parch.plot_linear_probe_depths(s, control=s["moco"], chance=12.5)
    assert n_lines(fig.axes[0]) == 2 + 1 + 1  # models, control, chance
    strict_json(s)


def test_f7_draws_the_normed_cls_probe_beside_the_mean_pooled_one():
    evals = {"moco": {"linear_probe": {"per_layer": [0.1, 0.2, 0.3, 0.4]},
                      "linear_probe_cls": {"per_layer": [0.1, 0.3, 0.35, 0.5]}},
             "simmim": {"linear_probe": {"per_layer": [0.2, 0.5, 0.4, 0.3]}},  # an old evaluation: mean only
             "random": {"linear_probe": {"per_layer": [0.1] * 4}, "linear_probe_cls": {"per_layer": [0.12] * 4}}}
    mean, cls = arch.linear_probe_summary(evals), arch.linear_probe_summary(evals, key="linear_probe_cls")
    assert set(cls) == {"moco", "random"} and cls["moco"]["best_depth"] == 3 and cls["moco"]["final"] == 50.0
    control, control_cls = mean.pop("random"), cls.pop("random")
    fig = parch.plot_linear_probe_depths(mean, control, chance=12.5, cls_summary=cls, cls_control=control_cls)
    ax = fig.axes[0]
    dotted = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_linestyle() == ":"]
    assert n_lines(ax) == 2 + 1 + 1 + 1 + 1  # models, MoCo's CLS, control, control's CLS, chance
    moco = next(ln for ln in ax.get_lines() if ln.get_label() == "MoCo v3")
    assert any(ln.get_color() == moco.get_color() and list(ln.get_ydata()) == [10.0, 30.0, 35.0, 50.0]
               for ln in dotted)
    assert "dotted: normed CLS token" in [t.get_text() for t in ax.get_legend().get_texts()]
    record = arch.cls_probe_record(cls, control_cls)
    assert record["curves_cls"]["moco"]["accuracy"] == [10.0, 30.0, 35.0, 50.0]
    assert record["claims_pool"] == {"cl": "cls_norm", "mim": "mean"} and record["control_cls"]["final"] == 12.0
    strict_json(record)
    table = arch.probe_table(mean, cls)
    assert list(table.columns) == ["MoCo v3", "MoCo v3 (normed CLS)", "SimMIM"] and table.loc[3, "SimMIM"] == 30.0
    text = "\n".join(arch.probe_sentences(mean, cls_summary=cls))
    assert "MoCo v3 on its normed CLS token: best depth 3 of 3 (50.0 %)" in text
    # with the number of evaluation images: a ± 2 SE band around each model's curves
    banded = parch.plot_linear_probe_depths(mean, control, chance=12.5, cls_summary=cls, num_images=400,
                                            band_pool={"moco": "mean"}).axes[0]
    bands = [c for c in banded.collections if isinstance(c, matplotlib.collections.PolyCollection)
             and len(c.get_paths()) and len(c.get_paths()[0].vertices)]
    assert len(bands) == 2  # one per model, none for the control
    top = max(v[1] for v in bands[0].get_paths()[0].vertices)
    assert top == pytest.approx(40.0 + 2 * 100 * math.sqrt(0.4 * 0.6 / 400))  # MoCo mean-pooled, depth 3
    # the chapter bands the representation the claims read: MoCo v3's normed CLS token
    assert arch.claim_pools() == {"moco": "cls_norm", "simmim": "mean"}
    on_cls = parch.plot_linear_probe_depths(mean, control, cls_summary=cls, num_images=400,
                                            band_pool=arch.claim_pools()).axes[0]
    moco_band = next(c for c in on_cls.collections if isinstance(c, matplotlib.collections.PolyCollection))
    assert max(v[1] for v in moco_band.get_paths()[0].vertices) == pytest.approx(50.0 + 2 * 100 * math.sqrt(0.25 / 400))
    assert accuracy_se_points(np.array([50.0, 0.0, 120.0]), 100).tolist() == pytest.approx([5.0, 0.0, 0.0])
    assert "SimMIM on its normed CLS token" not in text


def test_mae_fourier_and_strip_on_a_tiny_mae():
    from clvsmim.objectives import build_objective

    p = load_profile("smoke")
    torch.manual_seed(0)
    mae = build_objective("mae", p).eval()
    images = torch.randint(0, 255, (5, 3, 32, 32), dtype=torch.uint8)
    seeds = torch.arange(5)
    f = arch.mae_fourier(mae, images, seeds, 0.75, batch_size=2)
    assert len(f["encoder"]) == p.model.depth + 1
    assert len(f["decoder"]) == p.mae.decoder_depth + 1
    assert f["num_images"] == 5 and f["encoder_curves"][0][0] == 0.0
    strict_json(f)
    whole = arch.mae_fourier(mae, images, seeds, 0.75, batch_size=5)
    np.testing.assert_allclose(f["decoder"], whole["decoder"], rtol=1e-6)  # batching does not matter
    strip = arch.reconstruction_strip(mae, images[:2], seeds[:2], 0.75)
    assert set(strip) == {"masked", "reconstruction", "original"}
    assert strip["original"].shape == (2, 32, 32, 3)
    summary = arch.fourier_summary(f, [0.0, -0.1, -0.2, -0.3])
    assert set(summary) >= {"encoder_mean", "decoder_mean", "simmim_late_mean", "mae_late_mean"}
    assert len(arch.fourier_sentences(summary)) == 2
    fig = parch.plot_mae_fourier(f, [0.0, -0.1, -0.2, -0.3], strip, max_images=2)
    assert len(fig.axes) == 2 + 3 * 2
    assert n_lines(fig.axes[-2]) == 2  # MAE encoder + SimMIM encoder
    assert n_lines(fig.axes[-1]) == 1
    assert len(parch.plot_mae_fourier(f).axes) == 2


def test_mae_objective_rebuilds_the_whole_zoo_checkpoint(small_profile):
    from clvsmim.train import zoo
    from clvsmim.train.checkpoint import save_atomic
    from clvsmim.objectives import build_objective

    with pytest.raises(FileNotFoundError, match="not built"):
        arch.mae_objective(small_profile)
    spec = zoo.resolve(small_profile, "mae")
    folder = zoo.model_dir(small_profile, "mae")
    torch.manual_seed(1)
    trained = build_objective("mae", small_profile, model_cfg=spec.model_cfg)
    save_atomic({"model": trained.state_dict(), "step": 3}, folder / zoo.CHECKPOINT_NAME)
    (folder / zoo.DONE_NAME).write_text("{}")
    mae = arch.mae_objective(small_profile)
    assert not mae.training
    for (k, a), b in zip(trained.state_dict().items(), mae.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError):
        arch.mae_objective(small_profile, source="elsewhere")


# --------------------------------------------------------------------------- background

def test_overview_data_realised_masks_and_figure(small_profile):
    d = bg.overview_data(small_profile, n=2, seed=0)
    rec = d["record"]
    strict_json(rec)
    assert rec["image_ids"] == [0, 1] and len(rec["seeds"]) == 2
    assert rec["simmim"]["realised_ratio"] == [0.5, 0.5]  # 2 of 4 mask patches at 32 px / 16 px
    assert rec["mae"]["realised_ratio"] == [0.75, 0.75]
    assert set(rec["labels"][0]) == {"shape", "texture"}
    assert d["view1"].shape == (2, 32, 32, 3) and 0 <= d["view1"].min() and d["view1"].max() <= 1
    grey = d["mae"][0][np.repeat(np.repeat(d["mae_mask"][0], 8, 0), 8, 1)]
    assert np.allclose(grey, 0.5)
    assert "realises 0.50" in bg.describe_overview(rec)
    fig = pbg.plot_overview(d)
    assert len(fig.axes) == 5 * 2 + 2


def test_dataset_samples_and_figure(small_profile):
    s = bg.dataset_samples(small_profile, classes=[0, 1, 2], n_scan=64)
    rec = s["record"]
    strict_json(rec)
    assert [r["shape"] for r in rec["aligned"]] == ["circle", "square", "triangle"]
    assert all(a["shape"] == c["shape"] for a, c in zip(rec["aligned"], rec["conflict"]))
    assert all(a["texture"] != c["texture"] for a, c in zip(rec["aligned"], rec["conflict"]))
    assert s["mask"].shape == (3, 32, 32) and all(0 < f < 1 for f in rec["foreground_fraction"])
    fig = pbg.plot_dataset(s)
    assert len(fig.axes) == 3 * 3
    flat_profile = dataclasses.replace(small_profile, data=dataclasses.replace(small_profile.data,
                                                                               background_contrast=0.0))
    flat = bg.dataset_samples(flat_profile, classes=[0, 1, 2], n_scan=64)
    assert rec["background_contrast"] == 0.4 and flat["record"]["background_contrast"] == 0.0
    for image, mask in zip(flat["aligned"], flat["mask"]):  # the profile's flat background: one colour per image
        assert np.ptp(image[~mask], axis=0).max() < 1e-6


def test_flow_draws_boxes_and_arrows():
    fig, ax = plt.subplots()
    texts = pbg.flow(ax, 0.5, ["a", "b", "c"], "red")
    assert [t.get_text() for t in texts] == ["a", "b", "c"]
    assert sum(1 for c in ax.get_children() if type(c).__name__ == "Annotation") == 2
    assert not any(math.isnan(t.get_position()[0]) for t in texts)
