"""Plots and chapter helpers of the representation, hybrid and summary chapters, on hand-made data."""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from clvsmim import claims  # noqa: E402
from clvsmim.book.chapters import hybrid as hy  # noqa: E402
from clvsmim.book.chapters import representation as rep  # noqa: E402
from clvsmim.book.chapters import summary as sm  # noqa: E402
from clvsmim.config import profile_from_dict  # noqa: E402
from clvsmim.book.figures import save_figure, use_style  # noqa: E402
from clvsmim.book.plots import hybrid as hplots  # noqa: E402
from clvsmim.book.plots import representation as plots  # noqa: E402
from clvsmim.book.plots import summary as splots  # noqa: E402

L = 4


@pytest.fixture(autouse=True)
def _style(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_BOOK_OUT", str(tmp_path / "book"))
    use_style()
    yield
    plt.close("all")


def _analysis(distance, nmi, cosine, fourier, spectrum_decay):
    spectrum = [[float(np.exp(-spectrum_decay * i)) for i in range(8)] for _ in range(L + 1)]
    spectrum[-1][-1] = 0.0  # centring leaves a zero
    return {"depth": L, "num_heads": 2, "patch_size": 4, "grid": [4, 4], "num_images": 8,
            "attention_distance": {"mean": [distance + 0.1 * i for i in range(L)]},
            "nmi": {"mean": [nmi] * L}, "token_cosine": [0.5] + [cosine] * L,
            "fourier": {"delta_log_amplitude": [fourier - 0.05 * i for i in range(L + 1)]},
            "svd_spectrum": spectrum}


ANALYSES = {"moco": _analysis(10, 0.01, 0.8, -3.0, 1.0), "simmim": _analysis(6, 0.3, 0.3, -1.5, 0.2),
            "mae": _analysis(7, 0.2, 0.4, -1.8, 0.3), "random": _analysis(10.2, 0.0, 0.5, -2.0, 0.5)}


def _tsne(silhouette):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 6 * 4)
    return {"coords": rng.normal(size=(len(labels), 2)).tolist(), "label": labels.tolist(),
            "image": np.repeat(np.arange(18), 4).tolist(), "classes": [0, 1, 2],
            "class_names": ["circle", "square", "triangle"], "silhouette_image": silhouette,
            "silhouette_class": 0.1, "perplexity": 20.0, "num_images": 18, "tokens_per_image": 4}


def test_representation_figures_save_with_their_data(tmp_path):
    tsne = {"moco": _tsne(0.4), "simmim": _tsne(-0.05)}
    fig = plots.plot_token_tsne(tsne, titles={"moco": "CL", "simmim": "MIM"})
    assert len(fig.axes) == 2 and "0.40" in fig.axes[0].get_title()
    entry = save_figure(fig, "F5", {n: {"silhouette_image": r["silhouette_image"]} for n, r in tsne.items()},
                        models=list(tsne))
    assert all(v for v in entry["paths"].values())

    fourier = rep.token_depth_curves(ANALYSES, "fourier.delta_log_amplitude")
    assert fourier["depth"] == list(range(L + 1)) and len(fourier["moco"]) == L + 1
    fig = plots.plot_fourier(fourier)
    assert len(fig.axes[0].get_lines()) == 4
    assert fig.axes[0].get_lines()[-1].get_linestyle() == "--"  # the control is dashed
    save_figure(fig, "F6", fourier, models=list(ANALYSES))

    cosine = rep.token_depth_curves(ANALYSES, "token_cosine")
    save_figure(plots.plot_token_similarity(cosine), "A-token-similarity", cosine)

    spectra = rep.svd_spectra(ANALYSES)
    assert spectra["depth"] == L and spectra["moco"][0] == 1.0
    fig = plots.plot_svd_spectra(spectra)
    assert fig.axes[0].get_yscale() == "log"
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 7  # the numerical zero is not drawn
    save_figure(fig, "A-svd", spectra)

    rows = {"moco": {"shape_bias": 0.7, "clean": 0.5, "low_freq": 0.3, "high_freq": 0.48},
            "simmim": {"shape_bias": 0.3, "clean": 0.5, "low_freq": 0.45, "high_freq": 0.3},
            "random": {"shape_bias": None, "clean": 0.2, "low_freq": 0.2, "high_freq": 0.2}}
    save_figure(plots.plot_shape_bias({n: r["shape_bias"] for n, r in rows.items()}), "A-shape-texture",
                {n: r["shape_bias"] for n, r in rows.items()})
    # with the cue probes: a second panel of the two hit rates against chance and C6's floor
    levels = rep.cue_probe_levels()
    assert levels["chance"] == pytest.approx(1 / 8) and levels["floor"] == pytest.approx(claims.C6_MIN_CUE_OVER_CHANCE / 8)
    cues = rep.cue_hits({"moco": {"shape_acc": 0.18, "texture_acc": 0.3}, "simmim": {"shape_acc": 0.2, "texture_acc": None}})
    assert cues == {"moco": (0.18, 0.3), "simmim": (0.2, None)}
    fig = plots.plot_shape_bias({"moco": 0.4, "simmim": 0.5}, cues, **levels)
    assert len(fig.axes) == 2
    heights = [round(b.get_height(), 3) for b in fig.axes[1].patches]
    assert heights == [0.18, 0.2, 0.3, 0.0]  # shape hits of both models, then texture hits (n/a drawn at 0)
    lines = sorted(line.get_ydata()[0] for line in fig.axes[1].get_lines())
    assert lines == pytest.approx([levels["chance"], levels["floor"]])
    save_figure(plots.plot_noise_robustness(rows), "A-noise", rows)
    manifest = json.loads((tmp_path / "book" / "figures" / "manifest.json").read_text())
    assert {"F5", "F6", "A-token-similarity", "A-svd", "A-shape-texture", "A-noise"} <= set(manifest)


def test_representation_sentences_follow_the_numbers():
    assert rep.effective_rank([1.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert rep.effective_rank([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)
    assert math.isnan(rep.effective_rank([0.0, 0.0]))
    agree = rep.tsne_paragraph({"moco": _tsne(0.4), "simmim": _tsne(-0.05)})
    assert "as in the paper" in agree
    differ = rep.tsne_paragraph({"moco": _tsne(-0.05), "simmim": _tsne(0.4)})
    assert "opposite of the paper" in differ
    assert "no visible difference" in rep.tsne_paragraph({"moco": _tsne(0.1), "simmim": _tsne(0.105)})
    fourier = rep.token_depth_curves(ANALYSES, "fourier.delta_log_amplitude")
    assert "as in the paper" in rep.fourier_paragraph(fourier)  # simmim decreases towards the end
    flat = {"depth": [0, 1, 2, 3], "simmim": [-1.0, -1.0, -0.9, -0.8]}
    assert "unlike the paper" in rep.fourier_paragraph(flat)
    # depth by depth: the embeddings carry the opposite order, the late blocks the paper's
    order = rep.depths_by_order([-2.4, -2.5, -2.6, -2.7], [-2.9, -2.5, -2.5, -2.5])
    assert order == {"below": [2, 3], "above": [0], "tied": [1]}
    text = rep.fourier_order_sentence([-2.4, -2.5, -2.6, -2.7], [-2.9, -2.5, -2.5, -2.5])
    assert "at depths 2, 3, above it at depth 0 (ties within 0.01: depth 1)" in text and "0.25 over depths 0–1" in text and "-0.15 over depths 2–3" in text
    frozen = rep.fourier_paragraph({"depth": [0, 1, 2], "moco": [-2.4, -2.5, -2.6], "simmim": [-2.9, -2.5, -2.6],
                                    "random": [-2.4, -2.4, -2.4]})
    assert "equals the untrained control (-2.40 vs -2.40)" in frozen and "learns its own (-2.90)" in frozen
    assert "equals the untrained control" not in rep.fourier_paragraph(
        {"depth": [0, 1, 2], "moco": [-2.6, -2.5, -2.6], "simmim": [-2.9, -2.5, -2.6], "random": [-2.4] * 3})
    with pytest.raises(ValueError, match="different depths"):
        rep.depths_by_order([0.0], [0.0, 1.0])
    shape = rep.shape_paragraph({"moco": {"shape_bias": 0.5, "num_decided": 400},
                                 "simmim": {"shape_bias": 0.9, "num_decided": 100}})
    assert "n = 400, ± 0.025" in shape and "n = 100, ± 0.030" in shape  # sqrt(.25/400), sqrt(.09/100)
    assert "standard error" not in rep.shape_paragraph({"moco": {"shape_bias": 0.5}})  # older evaluations
    svd = rep.svd_paragraph(rep.svd_spectra(ANALYSES))
    assert "steeper" in svd and "as in the paper" in svd
    noise = rep.noise_paragraph({"moco": {"clean": 0.5, "low_freq": 0.3, "high_freq": 0.48},
                                 "simmim": {"clean": 0.5, "low_freq": 0.45, "high_freq": 0.3}}, num_images=1000)
    assert "consistent with the paper" in noise and "+-" not in noise and "−-" not in noise
    m = claims.Measurements(analyses={"cl": ANALYSES["moco"], "mim": ANALYSES["simmim"], "control": ANALYSES["random"]})
    c3 = claims.evaluate_claim("C3", m)
    text = rep.cosine_paragraph(rep.token_depth_curves(ANALYSES, "token_cosine"), c3)
    assert "C3 — holds" in text


def _points():
    return [{"lam": lam, "name": name, "linear_probe": lp, "finetune": ft,
             "evaluation": {"linear_probe": {"final": lp}, "finetune": ft}}
            for lam, name, lp, ft in [(0.0, "simmim", 0.3, 0.70), (0.5, "hybrid-0.5", 0.62, 0.72),
                                      (0.8, "hybrid-0.8", 0.62, 0.72), (1.0, "moco", 0.60, 0.65)]]


def test_hybrid_sweep():
    points = _points()
    c8 = claims.evaluate_claim("C8", hy.measurements(points, {"linear_probe": {"final": 0.1}, "finetune": 0.2}))
    assert c8.verdict == "holds"
    fig = hplots.plot_sweep(points)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("(MIM)" in t for t in texts) and any("(CL)" in t for t in texts)
    assert any("0.5, 0.8" in t for t in texts)  # coincident points share one label
    save_figure(fig, "F9", {"points": [{k: p[k] for k in ("lam", "linear_probe", "finetune")} for p in points]})
    text = hy.sweep_paragraph(points, c8)
    assert "C8 — holds" in text and "λ = 0.5" in text

def test_hybrid_sweep_labels_stay_apart_and_inside_the_axes():
    """Close neighbours (the mini zoo's seed-0 sweep, in percent) get labels that do not overlap,
    and the leftmost point's label stays inside the axes."""
    sweep = [(0, 18.9, 17.2), (0.2, 26.8, 22.7), (0.4, 26.0, 18.4), (0.6, 24.5, 19.3), (0.8, 26.7, 18.6),
             (1, 27.5, 19.9)]
    fig = hplots.plot_sweep([{"lam": lam, "linear_probe": lp, "finetune": ft} for lam, lp, ft in sweep], scale=1.0)
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) == 6
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert all(ax.get_window_extent().contains(b.x0, b.y0) and ax.get_window_extent().contains(b.x1, b.y1)
               for b in boxes)


def test_hybrid_curves():
    analyses = {lam: _analysis(6 + 4 * lam, 0.3 * (1 - lam), 0.5, -1.5 - 1.5 * lam, 0.5) for lam in (0, 0.5, 1)}
    curves = hy.hybrid_curves(analyses, ANALYSES["random"])
    assert curves["blocks"] == [1, 2, 3, 4] and set(curves["nmi"]) == {"0", "0.5", "1", "control"}
    fig = hplots.plot_hybrid_curves(curves)
    assert len(fig.axes) == 3
    save_figure(fig, "A-hybrid-curves", curves)
    text = hy.curves_paragraph(curves)
    assert text.count("as the inference from the paper's account predicts") == 3
    assert hy.spearman([0, 1, 2], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(hy.spearman([0, 1, 2], [1, 1, 1]))
    branches = hy.branches_markdown(profile_from_dict({"name": "x"}))
    assert "CL branch" in branches and "MIM branch" in branches and "60%" in branches


def test_summary_grid_markdown_and_figure():
    try:  # pytest puts tests/ on sys.path (rootdir-less "prepend" import mode)
        from test_claims import failing_set, holding_set
    except ImportError:  # pragma: no cover
        from tests.test_claims import failing_set, holding_set

    profile = profile_from_dict({"name": "hand"})
    table = claims.claims_table(profile, seeds=(0, 1), measurements={0: holding_set(), 1: holding_set()})
    grid = sm.summary_grid(table)
    assert [r["row"] for r in grid] == list(claims.ROWS)
    ids = [e["id"] for r in grid for e in r["claims"]]
    assert sorted(ids) == sorted(claims.CLAIMS)
    c1 = next(e for r in grid for e in r["claims"] if e["id"] == "C1")
    assert "10.0 ± 0.0 px" in c1["cl"] and c1["verdict"] == "holds"
    md = sm.grid_markdown(grid)
    assert md.count("\n") == len(claims.ROWS) + 1 and "C7 ✓ holds" in md
    html = sm.grid_html(grid)
    assert html.count("<tr>") == len(claims.ROWS) + 1 and "C7 ✓ holds" in html
    assert sm.table_html(table).count("<tr>") == len(claims.CLAIMS) + 1
    fig = splots.plot_summary_table(grid, title="hand-made")
    save_figure(fig, "F10", {"grid": grid, "claims": sm.claims_json(table)})
    assert "11 of 11 claims hold" in sm.verdict_paragraph(table)
    mixed = claims.claims_table(profile, seeds=(0, 1), measurements={0: holding_set(), 1: failing_set()})
    assert "inconclusive" in sm.verdict_paragraph(mixed)
    paragraphs = sm.claims_paragraphs(mixed)
    assert "C1 — inconclusive" in paragraphs and "holds, reversed → inconclusive" in paragraphs
    html = sm.seeds_table_html(mixed)
    assert html.count("<tr>") == len(claims.CLAIMS) + 1 and "CL (seeds 0/1)" in html and "✓ ✗" in html
    # every claim's seeds disagree: one item each, holding on seed 0, reversed on seed 1 with its reason
    items = sm.seed_disagreements(mixed).splitlines()
    assert len(items) == len(claims.CLAIMS)
    c1 = mixed["C1"].per_seed[1]
    assert items[0].startswith("- **C1**") and "holds on seed 0; reversed on seed 1" in items[0]
    assert f"seed 1: {c1.reason}" in items[0]
    assert sm.seed_disagreements(table) == ""  # seeds that agree give no item


def test_the_recorded_three_seed_table_is_found_and_checked(tmp_path):
    try:
        from test_claims import failing_set, holding_set
    except ImportError:  # pragma: no cover
        from tests.test_claims import failing_set, holding_set

    assert sm.recorded_table("hand", root=tmp_path) is None
    table = claims.claims_table(profile_from_dict({"name": "hand"}), seeds=(0, 1, 2),
                                measurements={0: holding_set(), 1: holding_set(), 2: holding_set()})
    table.save(tmp_path / sm.RECORDED_TABLE.format(profile="hand"))
    loaded = sm.recorded_table("hand", root=tmp_path)
    assert loaded.seeds == [0, 1, 2] and loaded.counts()["holds"] == len(claims.CLAIMS)
    table.save(tmp_path / sm.RECORDED_TABLE.format(profile="other"))  # a file under the wrong name
    with pytest.raises(ValueError, match="recorded for profile 'hand', not 'other'"):
        sm.recorded_table("other", root=tmp_path)
    # the project's own recorded mini table loads and its verdicts agree with its seeds
    mini = sm.recorded_table("mini")
    assert mini is not None and mini.profile == "mini" and len(mini.seeds) == 3
    for seed, names in mini.missing_models.items():
        assert f"seed {seed}: {', '.join(names)}" in sm.verdict_paragraph(mini)


def _check_differences(table, rows):
    """A-seed-differences' data against the table: the same values (accuracies ×100, in points),
    the verdict's threshold max(margin, 2 SE), and each seed's verdict on the right side of it."""
    assert [r["id"] for r in rows] == [s.id for s in table.summaries]
    n_measured = 0
    for row, summary in zip(rows, table.summaries):
        scale = 100.0 if row["unit"] == "points" else 1.0
        assert row["verdict"] == summary.verdict
        for s, claim in zip(row["seeds"], summary.per_seed):
            assert s["verdict"] == claim.verdict and s["reason"] == claim.reason
            if s["value"] is None:
                assert claim.value is None or not math.isfinite(claim.value)
                continue
            n_measured += 1
            assert s["value"] == pytest.approx(scale * claim.value)
            margin = claim.details.get("margin", claims.MARGINS[claim.id]) * scale
            se = None if claim.se is None else scale * claim.se
            assert s["threshold"] == pytest.approx(max(margin, 2 * se) if se is not None else margin)
            if claim.verdict == "holds":
                assert s["value"] > s["threshold"]
            elif claim.verdict == "reversed":
                assert s["value"] < -s["threshold"]
    return n_measured


def test_seed_differences_agree_with_the_verdicts():
    try:
        from test_claims import failing_set, holding_set
    except ImportError:  # pragma: no cover
        from tests.test_claims import failing_set, holding_set

    mixed = claims.claims_table(profile_from_dict({"name": "hand"}), seeds=(0, 1),
                                measurements={0: holding_set(), 1: failing_set()})
    rows = sm.seed_differences(mixed)
    n_measured = _check_differences(mixed, rows)
    assert {s["verdict"] for r in rows for s in r["seeds"]} >= {"holds", "reversed"}
    fig = splots.plot_seed_differences(rows, title="hand-made")
    bars = [c for ax in fig.axes for c in ax.containers]
    assert len(bars) == n_measured + 3  # one error bar per measured seed, three in the key panel
    save_figure(fig, "A-seed-differences", {"claims": rows})
    # the recorded mini table: C10 reversed by more than its threshold on every seed, C6 not measurable
    mini = sm.recorded_table("mini")
    rows = sm.seed_differences(mini)
    _check_differences(mini, rows)
    c10 = next(r for r in rows if r["id"] == "C10")
    assert c10["unit"] == "points" and all(s["value"] < -s["threshold"] for s in c10["seeds"])
    c6 = next(r for r in rows if r["id"] == "C6")
    assert all(s["value"] is None and s["verdict"] == "not measurable" for s in c6["seeds"])
    fig = splots.plot_seed_differences(rows)
    assert any("cue probes" in t.get_text() for ax in fig.axes for t in ax.texts)  # C6 shows its reason
