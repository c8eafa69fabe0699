"""What the book says about the paper (issue 17): per sentence generator, on small hand-made
inputs, which claim a sentence makes, in which direction, which comparison it declines to score,
and that accuracies come in one unit (percent / points). Facts are asserted, not whole sentences."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from clvsmim import claims  # noqa: E402
from clvsmim.book import units
from clvsmim.book.chapters import architecture as arch  # noqa: E402
from clvsmim.book.chapters import behaviour as beh  # noqa: E402
from clvsmim.book.chapters import hybrid as hy  # noqa: E402
from clvsmim.book.chapters import representation as rep  # noqa: E402
from clvsmim.book.chapters import summary as sm  # noqa: E402
from clvsmim.config import profile_from_dict  # noqa: E402
from clvsmim.book.plots import architecture as parch  # noqa: E402
from clvsmim.book.plots import behaviour as pbeh  # noqa: E402
from clvsmim.book.plots import hybrid as phy  # noqa: E402

try:  # pytest puts tests/ on sys.path (rootdir-less "prepend" import mode)
    from test_claims import failing_set, holding_set
except ImportError:  # pragma: no cover
    from tests.test_claims import failing_set, holding_set

REPO = Path(__file__).resolve().parents[1]
LITERATURE = REPO / "book" / "data" / "literature.csv"
VERDICT_WORDS = ("agrees", "differs")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def scored(text: str) -> bool:
    return any(w in text for w in VERDICT_WORDS)


# --------------------------------------------------------------------------- units

def test_accuracies_have_one_unit():
    assert units.percent(0.2271) == "22.7 %"
    assert units.points(-0.0234) == "−2.3 points" and units.points(0.01) == "+1.0 points"
    assert units.points(0.5, signed=False) == "50.0 points"
    assert units.percent(None) == "n/a" and units.percent(float("nan")) == "n/a"
    assert units.to_percent(0.5) == pytest.approx(50.0)
    assert units.claim_value_kind("C9", "cl") == "percent" and units.claim_value_kind("C11", "cl") == "points"
    assert units.claim_value_kind("C1", "cl") is None  # attention distance is not an accuracy


# --------------------------------------------------------------------------- behaviour

def _measured(dense_simmim=78.5, dense_moco=80.6, sizes=(("Ti", 40.0, 35.0), ("S", 45.0, 44.0))):
    return {"linear_vs_finetune": [{"model": "moco", "linear_probe": 60.0, "finetune": 70.0},
                                   {"model": "simmim", "linear_probe": 40.0, "finetune": 80.0}],
            "size": [{"model": m, "size": s, "finetune": ft} for s, mo, si in sizes
                     for m, ft in (("moco", mo), ("simmim", si))],
            "detection": [{"model": "moco", "dense_miou": dense_moco, "finetune": 70.0},
                          {"model": "simmim", "dense_miou": dense_simmim, "finetune": 80.0}]}


@pytest.mark.parametrize("simmim, moco", [(78.5, 80.6), (85.0, 60.0)])
def test_dense_probe_is_described_not_scored(simmim, moco):
    text = beh.dense_probe_sentence(simmim, moco)
    assert f"{simmim:.1f} %" in text and f"{moco:.1f} %" in text
    assert not scored(text) and "The paper finds" not in text  # neither direction is scored
    assert "different test" in text and "not scored" in text
    assert "Mask R-CNN" in text and "box AP" in text and "SimMIM is not in it" in text
    dense = [s for s in beh.behaviour_sentences(_measured(simmim, moco)) if s.startswith("dense probe")]
    assert dense == [text]


def test_the_papers_own_runs_are_read_and_kept_apart():
    df = beh.read_literature(LITERATURE)
    runs = beh.paper_own_runs(df)
    assert set(runs) == {"moco", "simmim"} and set(runs["moco"]) == set(runs["simmim"]) == {"Ti", "S", "B"}
    assert runs["moco"]["S"] > runs["simmim"]["S"] and runs["simmim"]["B"] > runs["moco"]["B"]  # crossover at B
    sizes = {(r["method"], r["size"]) for r in beh.literature_panels(df)["size"]}
    assert ("MoCo v3", "Ti") not in sizes and ("SimMIM", "S") not in sizes  # † points are not official ones
    assert {("MoCo v3†", "Ti"), ("SimMIM†", "S")} <= sizes


def test_size_sentences_say_where_the_papers_crossover_is():
    runs = {"moco": {"Ti": 69.0, "S": 78.7, "B": 81.2}, "simmim": {"Ti": 64.5, "S": 77.7, "B": 81.8}}
    text = "\n".join(beh.behaviour_sentences(_measured(), runs))
    gain = next(s for s in text.splitlines() if s.startswith("fine-tuning gain from Ti to S"))
    # the gain is scored (SimMIM gains 9 points, MoCo v3 5): the direction the paper reports
    assert "The paper finds SimMIM > MoCo v3" in gain and "**agrees**" in gain
    assert "CL is still ahead at S" in gain and "78.7 %" in gain and "77.7 %" in gain
    assert "overtakes only at B" in gain and "only the direction of the gain is comparable" in gain
    # measured up to B: the paper's runs already have MIM ahead there, no caveat about the crossover
    up_to_b = beh.behaviour_sentences(_measured(sizes=(("Ti", 40.0, 35.0), ("B", 50.0, 52.0))), runs)
    gain_b = next(s for s in up_to_b if s.startswith("fine-tuning gain"))
    assert "MIM is already ahead at B" in gain_b and "only the direction" not in gain_b
    assert beh.size_crossover_sentence("L", runs) is None  # no own run at L


def test_f1_draws_the_papers_runs_as_their_own_dashed_series_and_names_the_probe_blocks():
    lit = beh.literature_panels(beh.read_literature(LITERATURE))
    fig = pbeh.plot_behaviour(lit, {})
    ax_a, ax_b = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in ax_b.get_legend().get_texts()]
    assert "MoCo v3† (paper's own runs)" in labels and "SimMIM† (paper's own runs)" in labels
    dashed = [line for line in ax_b.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert len(dashed) == 2 and all(len(line.get_xdata()) == 3 for line in dashed)  # Ti, S, B each
    notes = " ".join(t.get_text() for t in ax_a.texts)
    assert "block 9" in notes and "block 8" in notes and "last block" in notes


# --------------------------------------------------------------------------- architecture (F8)

def test_f8_sentences_score_encoder_vs_decoder_only():
    summary = {"encoder_mean": -1.0, "decoder_mean": -3.0, "simmim_late_mean": -2.61, "mae_late_mean": -2.81}
    first, second = arch.fourier_sentences(summary)
    assert "**agrees**" in first and "The paper finds the MAE encoder > the MAE decoder" in first
    assert "full images" in first and "mask tokens" in first and "input embedding" in first
    assert not scored(second) and "The paper finds" not in second  # SimMIM vs MAE: described, not scored
    assert "-2.61" in second and "-2.81" in second and "does not order" in second
    flipped = arch.fourier_sentences({**summary, "simmim_late_mean": -3.0})[1]
    assert not scored(flipped)  # whichever is higher
    assert "**differs**" in arch.fourier_sentences({**summary, "encoder_mean": -4.0})[0]


def test_f8_labels_its_inputs():
    fourier = {"encoder": [0.0, -1.0, -1.5], "decoder": [-1.5, -2.0, -2.5], "mask_ratio": 0.75}
    fig = parch.plot_mae_fourier(fourier, [0.0, -0.8, -1.2])
    ax_e, ax_d = fig.axes[-2], fig.axes[-1]
    enc_labels = [t.get_text() for t in ax_e.get_legend().get_texts()]
    assert all("full images" in s for s in enc_labels) and "full images" in ax_e.get_title()
    assert "input" in ax_d.get_xticklabels()[0].get_text()
    assert "mask tokens" in ax_d.get_title() and "75%" in ax_d.get_title()


# --------------------------------------------------------------------------- representation

def test_token_homogeneity_is_not_called_identical():
    text = rep.cosine_paragraph({"depth": [0, 1], "moco": [0.5, 0.9], "simmim": [0.5, 0.3]})
    assert "identical" not in text and "homogeneous" in text and "less diverse" in text
    assert "attention collapses" in text


def _tsne(sil):
    return {"silhouette_image": sil, "silhouette_class": 0.0, "num_images": 18, "tokens_per_image": 4,
            "class_names": ["a", "b", "c"], "perplexity": 20.0}


def test_c5_holding_with_a_weak_cl_silhouette_says_it_is_relative():
    m = holding_set()
    m.cluster["cl"]["score"][-1], m.cluster["mim"]["score"][-1], m.cluster["control"]["score"][-1] = 0.005, -0.29, -0.17
    c5 = claims.evaluate_claim("C5", m)
    assert c5.verdict == "holds" and c5.cl == pytest.approx(0.005)
    text = rep.tsne_paragraph({"moco": _tsne(0.005), "simmim": _tsne(-0.3)}, c5)
    assert "as in the paper" in text and "relative to MIM only" in text and "weak" in text and "0.005" in text
    strong = rep.tsne_paragraph({"moco": _tsne(0.6), "simmim": _tsne(-0.3)})
    assert "weak" not in strong
    assert rep.cluster_strength_note(0.6) == "" and rep.cluster_strength_note(None) == ""


def test_noise_comparison_is_scored_only_beyond_its_uncertainty():
    rows = {"moco": {"clean": 0.5, "low_freq": 0.40, "high_freq": 0.48},
            "simmim": {"clean": 0.5, "low_freq": 0.45, "high_freq": 0.46}}
    # changes −2.0 and −4.0 points: a 2-point difference
    unscored = rep.noise_paragraph(rows)
    assert "−2.0 points" in unscored and "−4.0 points" in unscored and "+2.0 points" in unscored
    assert "consistent" not in unscored and "opposite" not in unscored and "not scored" in unscored
    small = rep.noise_paragraph(rows, num_images=100)
    se = math.sqrt(2 * 0.25 / 100 + 0.48 * 0.52 / 100 + 0.46 * 0.54 / 100)  # four binomial SEs, in quadrature
    assert f"± {100 * se:.1f} points" in small and "100 evaluation images" in small
    assert "consistent" not in small and "neither supports nor contradicts" in small
    large = rep.noise_paragraph(rows, num_images=100_000)
    assert "consistent with the paper" in large
    swapped = rep.noise_paragraph({"moco": rows["simmim"], "simmim": rows["moco"]}, num_images=100_000)
    assert "opposite of the paper's prediction" in swapped


# --------------------------------------------------------------------------- hybrid

def test_hybrid_expectations_are_an_inference_and_accuracies_are_percent():
    points = [{"lam": lam, "name": n, "linear_probe": lp, "finetune": ft}
              for lam, n, lp, ft in [(0.0, "simmim", 0.227, 0.30), (1.0, "moco", 0.25, 0.28)]]
    text = hy.sweep_paragraph(points)
    assert "22.7 %" in text and "30.0 %" in text and "0.227" not in text
    fig = phy.plot_sweep(points)
    assert "(%)" in fig.axes[0].get_xlabel() and fig.axes[0].get_xlim()[1] > 20  # drawn in percent
    curves = {"lams": [0.0, 0.5, 1.0], "blocks": [1, 2, 3],
              "attention_distance": {"0": [5, 5, 5], "0.5": [6, 7, 8], "1": [7, 9, 11]},
              "nmi": {"0": [0.3] * 3, "0.5": [0.2] * 3, "1": [0.1] * 3},
              "fourier": {"0": [-1.0] * 4, "0.5": [-1.5] * 4, "1": [-2.0] * 4}}
    text = hy.curves_paragraph(curves)
    assert not text.startswith("Expected from the paper") and "does not measure" in text
    assert "inferred from its account" in text


# --------------------------------------------------------------------------- summary and claims

def _table(sets, name="hand"):
    return claims.claims_table(profile_from_dict({"name": name}), seeds=tuple(range(len(sets))),
                               measurements=dict(enumerate(sets)))


def test_the_summary_takes_every_verdict_from_the_record(tmp_path):
    computed = _table([holding_set()])  # this build's one seed: everything holds
    # no record: the computed table is the record
    assert sm.table_of_record("hand", computed, root=tmp_path) is computed
    recorded = _table([holding_set(), failing_set(), failing_set()])  # seeds disagree: inconclusive
    recorded.save(tmp_path / sm.RECORDED_TABLE.format(profile="hand"))
    record = sm.table_of_record("hand", computed, root=tmp_path)
    assert record is not computed and record.seeds == [0, 1, 2]
    grid = sm.summary_grid(record)
    verdicts = {e["id"]: e["verdict"] for row in grid for e in row["claims"]}
    assert verdicts == {s.id: s.verdict for s in recorded.summaries}
    assert set(verdicts.values()) == {"inconclusive"} != {s.verdict for s in computed.summaries}
    sentences = sm.verdict_paragraph(record)
    assert "0 of 11 claims hold" in sentences and "3 training seeds" in sentences
    with pytest.raises(ValueError, match="profile 'other'"):
        sm.table_of_record("hand", _table([holding_set()], name="other"), root=tmp_path)
    with pytest.raises(ValueError, match="none computed"):
        sm.table_of_record("nothing", None, root=tmp_path)


def test_summary_wording_units_and_scaling_caveat():
    m = holding_set()
    m.names.update({"cl-small": "moco-Ti", "cl-large": "moco-S", "mim-small": "simmim-Ti", "mim-large": "simmim-S"})
    table = _table([m])
    grid = {e["id"]: e for row in sm.summary_grid(table) for e in row["claims"]}
    assert "60.0 %" in grid["C9"]["cl"] and "70.0 %" in grid["C10"]["mim"]  # 0.60 / 0.70 as fractions
    assert "0.600" not in grid["C9"]["cl"]
    assert "points" in grid["C11"]["cl"] and "large models" not in grid["C11"]["mim"]
    assert "S" in grid["C11"]["note"] and "overtakes at B" in grid["C11"]["note"]
    assert "points" in grid["C8"]["note"]
    paragraphs = sm.claims_paragraphs(table)
    assert "for every query and head" in paragraphs  # C2
    c11 = next(p for p in paragraphs.split("\n\n") if p.startswith("**C11"))
    assert "overtakes at B" in c11 and "%" in c11 and "points" in c11
    c9 = next(p for p in paragraphs.split("\n\n") if p.startswith("**C9"))
    assert "60.0 %" in c9 and "points" in c9  # the numbers and the reason
    m.names.update({"mim-large": "simmim-B", "cl-large": "moco-B"})
    assert sm.summary_grid(_table([m]))[0]["claims"][2]["note"] == ""  # up to B: no caveat


def test_recorded_claims_show_the_current_wording():
    d = _table([holding_set()]).to_dict()
    for c in d["claims"]:
        for obj in [c] + c["per_seed"]:
            obj["statement"], obj["mim_label"] = "old wording", "large models"
    loaded = claims.ClaimsTable.from_dict(d)
    assert loaded["C2"].statement == claims.INFO["C2"].statement and "and head" in loaded["C2"].statement
    assert loaded["C11"].mim_label != "large models"


def test_the_projects_record_reads_in_percent():
    mini = sm.recorded_table("mini")
    assert mini is not None
    rows = {r["id"]: r for r in mini.rows()}
    assert rows["C9"]["CL"].endswith("%") and rows["C11"]["CL"].endswith("points")
    assert not rows["C1"]["CL"].endswith("%")  # attention distance stays in px
    for c in mini.summaries:
        if c.id in ("C8", "C9", "C10", "C11"):
            measured = [s for s in c.per_seed if not s.reason.startswith("not measured")]
            assert all("points" in s.reason or "control" in s.reason for s in measured), c.id
    assert all(not s.reason.startswith("not measured")  # the filter above leaves the accuracy claims whole
               for c in mini.summaries if c.id in ("C9", "C10") for s in c.per_seed)


# --------------------------------------------------------------------------- literature

def test_literature_sources_name_how_each_number_was_verified():
    df = beh.read_literature(LITERATURE)
    for _, r in df.iterrows():
        if r["status"] == "approximate":
            assert "read off Figure" in r["source"], r["method"]  # read off the paper's figure
        if r["method"].endswith(beh.PAPER_RUN_MARK):
            assert r["status"] == "approximate" and "own run" in r["source"]
    supervised = df[df["method"] == "Supervised"].iloc[0]
    assert "DeiT-style" not in supervised["source"] and "MAE paper" in supervised["source"]
    assert "81.8" in supervised["source"]
    beit = df[df["method"] == "BEiT"].iloc[0]
    assert "MAE paper's Table 4" in beit["source"] and "no COCO" in beit["source"]
    mae = df[(df["method"] == "MAE") & (df["size"] == "B")].iloc[0]
    assert "Table 4" in mae["source"]
    dino_s = df[(df["method"] == "DINO") & (df["size"] == "S")].iloc[0]
    assert dino_s["status"] != "verified" and "Figure 1b" in dino_s["source"]
    simmim_b = df[(df["method"] == "SimMIM") & (df["size"] == "B")].iloc[0]
    assert simmim_b["status"] != "verified" and "Figure 1a" in simmim_b["source"]
