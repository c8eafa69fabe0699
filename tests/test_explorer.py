"""The attention explorer: payload encoding, its agreement with the analyses, the page budget,
offline pages, and (with Chromium) a click and an arrow key in the page opened from file://."""
from __future__ import annotations

import html as _html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clvsmim.analysis import attention_statistics, query_attention_map
from clvsmim.data.augment import normalize
from clvsmim.config import ModelConfig, load_profile
from clvsmim.explorer import (BUDGET_BYTES, decode_rows, encode_rows, measure_attention, page_data_bytes,
                              profile_page_bytes, read_npz, standalone_explorer)
from clvsmim.explorer.page import ASSETS, asset_text, embedded_html
from clvsmim.explorer.payload import (ROW_PRECISION, index_file_bytes_bound, pack_payload, payload_file_bytes,
                                      payload_file_name, unpack_payload)
from clvsmim.models import build_vit, capture, geometry

CFG = ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0)
N_IMAGES = 5


@pytest.fixture(scope="module")
def peaky_vit():
    """A random tiny ViT whose attention is far from uniform (query/key weights scaled up)."""
    torch.manual_seed(0)
    model = build_vit(CFG).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[: 2 * CFG.embed_dim].mul_(6.0)
    return model


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (N_IMAGES, 3, CFG.img_size, CFG.img_size), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def explorer_dir(peaky_vit, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    page, written = standalone_explorer(peaky_vit, images, out, "peaky tiny ViT", normalize, torch.device("cpu"),
                                        batch_size=2)
    return out, page, written


def test_encode_decode_round_trip_within_stated_precision():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.full(49, 0.3), size=(3, 4, 49)).astype(np.float32)  # L×H×N×N, rows sum to 1
    rows[0, 0, 0] = 0.0
    rows[0, 0, 0, 7] = 1.0  # a one-hot row
    codes, scale = encode_rows(rows)
    assert codes.dtype == np.uint8 and scale.shape == rows.shape[:-1]
    assert (codes.max(-1) == 255).all()  # every row uses the full range
    err = np.abs(decode_rows(codes, scale) - rows)
    bound = rows.max(-1, keepdims=True) * ROW_PRECISION * (1 + 1e-5)
    assert (err <= bound).all(), float((err / bound).max())
    assert err.max() > 0.25 * bound.max()  # the bound is tight, not vacuous
    with pytest.raises(ValueError, match="non-negative"):
        encode_rows(-rows)


def test_measured_attention_is_the_analyses_attention(peaky_vit, images):
    m = measure_attention(peaky_vit, (normalize(images[i:i + 2]) for i in range(0, N_IMAGES, 2)))
    geo = geometry(peaky_vit)
    n = geo.grid[0] * geo.grid[1]
    assert m.rows.shape == (N_IMAGES, geo.depth, geo.num_heads, n, n)
    np.testing.assert_allclose(m.rows.sum(-1), 1.0, atol=1e-5)
    cap = capture(peaky_vit, normalize(images), hidden_states=False)
    for block, attn in enumerate(cap.attentions):
        dist, nmi = attention_statistics(attn, geo.patch_size, geo.num_prefix_tokens)  # F3 / F4 definitions
        np.testing.assert_allclose(m.distance[:, block], dist.numpy(), rtol=1e-5)
        np.testing.assert_allclose(m.nmi[:, block], nmi.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(m.query_distance[:, block].mean(-1), dist.numpy(), rtol=1e-5)
        for q in (0, 5, n - 1):
            ref = query_attention_map(attn, q, geo.num_prefix_tokens).reshape(N_IMAGES, geo.num_heads, n)
            np.testing.assert_allclose(m.rows[:, block, :, q], ref.numpy(), rtol=1e-5, atol=1e-7)
    # the queries really attend differently (what the browser test relies on)
    assert np.abs(m.rows[0, -1, 0, 0] - m.rows[0, -1, 0, n - 1]).max() > 0.05


def test_payload_pack_unpack_and_exact_file_size(explorer_dir, peaky_vit, images):
    out, _, written = explorer_dir
    m = measure_attention(peaky_vit, [normalize(images)])
    geo = geometry(peaky_vit)
    n = geo.grid[0] * geo.grid[1]
    blob = pack_payload(m, 2)
    back = unpack_payload(blob, geo.depth, geo.num_heads, n)
    np.testing.assert_array_equal(back["distance"], m.distance[2])
    np.testing.assert_array_equal(back["nmi"], m.nmi[2])
    assert (np.abs(back["rows"] - m.rows[2]) <= m.rows[2].max(-1, keepdims=True) * ROW_PRECISION * (1 + 1e-5)).all()
    with pytest.raises(ValueError, match="does not fit"):
        unpack_payload(blob[:-1], geo.depth, geo.num_heads, n)
    # the written files have exactly the predicted sizes; index.js stays within its bound
    data = out / "explorer"
    for i in range(N_IMAGES):
        f = data / payload_file_name(i, "model")
        assert f.stat().st_size == payload_file_bytes("explorer", "model", geo.depth, geo.num_heads, n)
    assert (data / "index.js").stat().st_size <= index_file_bytes_bound(N_IMAGES, CFG.img_size)
    predicted = page_data_bytes(geo.depth, geo.num_heads, geo.grid, CFG.img_size, ["model"], N_IMAGES,
                                data_id="explorer")
    assert written.page_bytes <= predicted < written.page_bytes + 20_000
    # the download holds the same numbers
    npz = read_npz(data / "explorer.npz")
    np.testing.assert_array_equal(npz["images"], images.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(npz["models"]["model"]["rows"][2], back["rows"])


def test_embedded_default_payload_is_within_budget():
    """The book at the mini profile (the embedded default): CL, MIM and the control on as many
    analysis images as fit; sizes from the profile alone."""
    mini = load_profile("mini")
    sized = profile_page_bytes(mini, ("moco", "simmim", "random"))
    assert sized["bytes"] <= BUDGET_BYTES
    assert 8 <= sized["images"] <= mini.eval.num_analysis_images  # a real choice of images, not one
    m = mini.model
    grid = (m.img_size // m.patch_size,) * 2
    over = page_data_bytes(m.depth, m.num_heads, grid, m.img_size, ("moco", "simmim", "random"), sized["images"] + 1)
    assert over > BUDGET_BYTES  # one more image would not fit: the budget decides
    smoke = profile_page_bytes(load_profile("smoke"))
    assert smoke["images"] == load_profile("smoke").eval.num_analysis_images and smoke["bytes"] <= BUDGET_BYTES


def test_pages_load_nothing_from_the_network(explorer_dir):
    out, page, _ = explorer_dir
    texts = {"page": page.read_text(), "embedded": embedded_html("../_static/explorer/F2/", "F2"),
             **{a: asset_text(a) for a in ASSETS}}
    for name, text in texts.items():
        assert not re.search(r"(?i)https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), f"{name} names a network address"
        assert "fetch(" not in text and "XMLHttpRequest" not in text and "import(" not in text, name
    srcs = re.findall(r'<script src="([^"]+)"', texts["page"]) + re.findall(r'href="([^"]+)"', texts["page"])
    assert srcs and all((page.parent / s).is_file() for s in srcs), srcs


def test_analyze_cli_writes_a_standalone_explorer_with_the_metrics_numbers(tmp_path, monkeypatch, capsys):
    from clvsmim.cli import main
    from official_formats import tiny_vit

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    torch.save(tiny_vit().state_dict(), tmp_path / "vit.pth")
    out = tmp_path / "out"
    rc = main(["analyze", "--model", str(tmp_path / "vit.pth"), "--data", "synthetic", "--images", "4",
               "--batch-size", "3", "--device", "cpu", "--no-figures", "--explorer", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "attention explorer:" in printed.out and (out / "explorer.html").is_file()
    assert len(list((out / "explorer").glob("img*.model.js"))) == 4
    npz = read_npz(out / "explorer" / "explorer.npz")
    metrics = json.loads((out / "metrics.json").read_text())
    # the explorer's per-head numbers, averaged over the same images, are the analysis' (F3 / F4)
    for key in ("attention_distance", "nmi"):
        mine = npz["models"]["model"]["distance" if key == "attention_distance" else "nmi"].mean(0)
        np.testing.assert_allclose(mine, np.array(metrics[key]["per_head"]), rtol=1e-4, atol=1e-6, err_msg=key)
    assert all("(" in t for t in npz["titles"])  # class names of the synthetic data


def test_book_assembly_serves_explorer_data_from_static(tmp_path):
    """``clvsmim book`` copies ``<out>/explorer/`` into ``_static/explorer/`` of the HTML source,
    where the chapter's embedded HTML (``../_static/explorer/<id>/``) finds it."""
    import yaml

    from clvsmim.book import run as bookrun
    from clvsmim.explorer.build import BOOK_STATIC_URL

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "proj"
    (root / "book").mkdir(parents=True)
    shutil.copy(repo / "_config.yml", root / "_config.yml")
    (root / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro"}))
    (root / "book" / "intro.md").write_text("# intro\n")
    out = tmp_path / "out"
    (out / "explorer" / "F2").mkdir(parents=True)
    (out / "explorer" / "F2" / "index.js").write_text("// data\n")
    src = bookrun.assemble_book(root, out, bookrun.read_entries(root))
    static = yaml.safe_load((root / "_config.yml").read_text())["sphinx"]["config"]["html_static_path"][0]
    copied = src / static / "explorer" / "F2" / "index.js"
    assert copied.read_text() == "// data\n"
    # a chapter page lives in html/book/, Sphinx serves html_static_path's content from html/_static/
    assert BOOK_STATIC_URL == "../_static/explorer/"


# ----------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MARK = "clvsmim-explorer-test"
PROBE_JS = """
<script>
(function () {
  var log = [], t0 = performance.now(), t0Ready = null;
  function inst() { return window.ClvsmimExplorer && window.ClvsmimExplorer.instances[0]; }
  function snap(label) {
    var e = inst(), sums = [];
    document.querySelectorAll('.cx-grid, .cx-image').forEach(function (c) {
      var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, s = 0;
      for (var i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) %% 1000000007;
      sums.push(s);
    });
    log.push({label: label, state: JSON.parse(e.root.getAttribute('data-state')), sums: sums, drawn: e.drawn,
              ms: performance.now() - t0});
  }
  function when(cond, then, tries) {
    if (cond()) return then();
    if ((tries || 0) > 400) { log.push({label: 'timeout'}); return finish(); }
    setTimeout(function () { when(cond, then, (tries || 0) + 1); }, 10);
  }
  function stateIs(q) {
    return function () { var s = inst() && inst().root.getAttribute('data-state'); return s && JSON.parse(s).query === q; };
  }
  function finish() {
    var pre = document.createElement('pre');
    pre.id = '%(mark)s';
    pre.textContent = JSON.stringify({log: log, error: (inst() && inst().root.getAttribute('data-error')) || null,
      resources: Array.prototype.map.call(document.querySelectorAll('script[src], link[href], img[src]'),
                                          function (x) { return x.src || x.href; }),
      loadMs: t0Ready});
    document.body.appendChild(pre);
  }
  window.addEventListener('load', function () {
    var e, gw, target = %(target)d, after = %(after)d;
    when(function () { e = inst(); return e && e.root.getAttribute('data-state'); }, function () {
      t0Ready = performance.now();  // ms from navigation start to the first drawn maps
      snap('start');
      gw = e.gw;
      var r = e.canvas.getBoundingClientRect(), row = Math.floor(target / gw), col = target %% gw;
      e.canvas.dispatchEvent(new PointerEvent('pointerdown', {bubbles: true, pointerType: 'mouse',
        clientX: r.left + (col + 0.5) * r.width / gw, clientY: r.top + (row + 0.5) * r.height / e.gh}));
      window.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
      when(stateIs(target), function () {
        snap('click');
        e.root.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
        when(stateIs(after), function () { snap('arrow'); finish(); });
      });
    });
  });
})();
</script>
"""


def run_page(page: Path, hash_: str, target: int, after: int, virtual_time: bool = True) -> dict:
    from browser_check import chromium_flags

    probe = page.with_name(f".{page.stem}.{MARK}.html")
    probe.write_text(page.read_text().replace("</body>", PROBE_JS % {"mark": MARK, "target": target, "after": after}
                                              + "</body>"))
    try:
        with tempfile.TemporaryDirectory(prefix="clvsmim-chromium-") as prof:
            cmd = [CHROMIUM, *chromium_flags(prof), *(["--virtual-time-budget=20000"] if virtual_time else []),
                   "--dump-dom", probe.as_uri() + hash_]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(rf'<pre id="{MARK}"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no report from the page (chromium exit {proc.returncode}): {proc.stderr[-1500:]}"
    return json.loads(_html.unescape(m.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_click_and_arrow_key_draw_the_stored_attention_of_the_query(explorer_dir):
    out, page, _ = explorer_dir
    npz = read_npz(out / "explorer" / "explorer.npz")
    rows = npz["models"]["model"]["rows"]  # n×L×H×N×N, decoded exactly as the page decodes
    gw = npz["geometry"]["grid"][1]
    image, start, target = 1, 5, 2 * gw + 1
    report = run_page(page, f"#image={image}&query={start}", target, target + 1)
    assert report["error"] is None
    log = {e["label"]: e for e in report["log"]}
    assert list(log) == ["start", "click", "arrow"], report["log"][-1]
    for label, query in (("start", start), ("click", target), ("arrow", target + 1)):
        st = log[label]["state"]
        assert (st["image"], st["query"]) == (image, query), (label, st)
        drawn = np.array(log[label]["drawn"]["model"])  # L×H×N: the maps drawn for this query
        np.testing.assert_allclose(drawn, rows[image, :, :, query], rtol=1e-6, atol=1e-9, err_msg=label)
    assert log["start"]["sums"] != log["click"]["sums"] != log["arrow"]["sums"]  # the canvases changed
    assert not np.allclose(log["click"]["drawn"]["model"], log["arrow"]["drawn"]["model"])
    # every script / stylesheet (index.js, explorer.js/.css, the payload files loaded) is a local file
    assert len(report["resources"]) >= 4 and all(r.startswith("file://") for r in report["resources"]), report["resources"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
@pytest.mark.skipif(not os.environ.get("CLVSMIM_SMOKE_BOOK"), reason="needs a built book (CLVSMIM_SMOKE_BOOK)")
def test_book_page_explorer_draws_cl_and_mim_from_static_files():
    out = Path(os.environ["CLVSMIM_SMOKE_BOOK"])
    out = out if out.is_absolute() else Path(__file__).resolve().parents[1] / out
    html_dir = out / "_build" / "html"
    data = html_dir / "_static" / "explorer" / "F2"
    assert (data / "index.js").is_file() and (data / "explorer.npz").is_file(), f"no explorer data in {data}"
    npz = read_npz(data / "explorer.npz")
    assert {"moco", "simmim"} <= set(npz["models"])
    report = run_page(html_dir / "book" / "behaviour.html", "", 0, 1)
    assert report["error"] is None
    log = {e["label"]: e for e in report["log"]}
    assert list(log) == ["start", "click", "arrow"], report["log"][-1]
    for label, query in (("click", 0), ("arrow", 1)):
        st = log[label]["state"]
        assert st["query"] == query and {"moco", "simmim"} <= set(st["models"]), (label, st)
        for name in ("moco", "simmim"):
            np.testing.assert_allclose(np.array(log[label]["drawn"][name]), npz["models"][name]["rows"][0, :, :, query],
                                       rtol=1e-6, atol=1e-9, err_msg=f"{label} {name}")
    assert all(r.startswith("file://") for r in report["resources"]), report["resources"]
