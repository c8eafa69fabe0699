"""clvsmim.weights: registry, conversion of every official layout, strict loading errors,
safe reading, and the download machinery against a loopback HTTP server (no network)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import sys
import tarfile
import threading
import types
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from clvsmim import weights as W
from clvsmim.config import ModelConfig, to_dict
from clvsmim.models import build_vit
from official_formats import (DEPTH, DIM, HEADS, IMG, PATCH, SIMMIM_NAMES, _persistent, _randomise, mae_checkpoint,
                              moco_checkpoint, simmim_checkpoint, tiny_beit, tiny_vit)



@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLVSMIM_WEIGHTS_LOCK", str(tmp_path / "lock.json"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    torch.manual_seed(0)


def _same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = _persistent(a), _persistent(b)
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.allclose(a.eval().forward_features(x), b.eval().forward_features(x), atol=1e-6)


# ----------------------------------------------------------------------------- registry
def test_registry_entries_are_complete():
    assert {"moco_v3_vit_b", "simmim_vit_b", "mae_vit_b", "mae_vit_b_visualize", "dino_vit_b"} <= set(W.REGISTRY)
    for e in W.all_entries().values():
        assert e.url or e.source == "timm", e.name
        assert e.converter in W.CONVERTERS or (e.kind == "dataset" and e.converter == "archive"), e.name
        assert e.licence
        if e.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        if e.kind == "checkpoint":
            assert e.architecture is not None and e.architecture.num_heads == 12
    assert W.REGISTRY["simmim_vit_b"].url == "https://drive.google.com/uc?export=download&id=1dJn6GYkwMIcoP3zqOEyW1_iQfpBi8UOw"
    assert "browser" in W.REGISTRY["simmim_vit_b"].manual
    assert W.REGISTRY["dino_vit_b"].architecture.timm_name == "vit_base_patch16_224.dino"
    assert W.IMAGENETTE.url.endswith("imagenette2-320.tgz")
    packaged = json.loads((Path(W.__file__).parent / "weights.lock.json").read_text())
    assert isinstance(packaged["entries"], dict)


def test_registry_architectures_build_and_match_official_shapes():
    """ViT-B and SimMIM's BEiT-B as registered: the parameter names the converters produce."""
    with torch.device("meta"):  # shapes only: skips the (slow) initialisation of 86 M parameters
        simmim = W.build_architecture(W.REGISTRY["simmim_vit_b"].architecture)
        vit = W.build_architecture(W.REGISTRY["moco_v3_vit_b"].architecture)
    keys = set(simmim.state_dict())
    assert {"rel_pos_bias.relative_position_bias_table", "blocks.11.gamma_1", "blocks.0.attn.q_bias",
            "norm.weight"} <= keys and "pos_embed" not in keys and "fc_norm.weight" not in keys
    assert simmim.blocks[0].gamma_1.shape == (768,)
    assert vit.pos_embed.shape == (1, 197, 768) and vit.num_classes == 0


# ----------------------------------------------------------------------------- conversion
def test_moco_v3_round_trip(tmp_path):
    vit = tiny_vit()
    path = tmp_path / "moco.pth.tar"
    torch.save(moco_checkpoint(vit), path)
    obj = W.read_checkpoint(path)
    assert W.detect_format(obj) == "moco_v3"
    _, sd, _ = W.convert(obj)
    assert not any(k.startswith(("head.", "module.")) for k in sd)
    model = W.load_checkpoint(path)
    assert model.clvsmim_source["format"] == "moco_v3"
    assert model.blocks[0].attn.num_heads == HEADS and model.patch_embed.patch_size == (PATCH, PATCH)
    _same(model, vit)


def test_simmim_round_trip_into_beit(tmp_path):
    beit = tiny_beit()
    ckpt = simmim_checkpoint(beit)
    assert set(SIMMIM_NAMES) <= set(ckpt["model"])
    path = tmp_path / "simmim.pth"
    torch.save(ckpt, path)
    assert W.detect_format(W.read_checkpoint(path)) == "simmim"
    model = W.load_checkpoint(path)
    assert isinstance(model, timm.models.beit.Beit) and model.pos_embed is None
    assert model.rel_pos_bias is not None and model.blocks[0].gamma_1 is not None
    assert model.patch_embed.grid_size == (IMG // PATCH,) * 2  # from the relative-position table
    _same(model, beit)


def test_mae_and_plain_timm_and_safetensors_round_trip(tmp_path):
    vit = tiny_vit()
    ckpt, _ = mae_checkpoint(vit)
    torch.save(ckpt, tmp_path / "mae.pth")
    assert W.detect_format(W.read_checkpoint(tmp_path / "mae.pth")) == "mae"
    _same(W.load_checkpoint(tmp_path / "mae.pth"), vit)

    torch.save(vit.state_dict(), tmp_path / "plain.pth")
    assert W.detect_format(W.read_checkpoint(tmp_path / "plain.pth")) == "timm"
    _same(W.load_checkpoint(tmp_path / "plain.pth"), vit)

    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    _same(W.load_checkpoint(tmp_path / "plain.safetensors"), vit)


def test_mae_visualize_decoder_mapping(tmp_path):
    from clvsmim.objectives.mae import MAE, MAEDecoder

    vit = tiny_vit()
    ckpt, dec = mae_checkpoint(vit, decoder=True)
    torch.save(ckpt, tmp_path / "mae_vis.pth")
    assert W.detect_format(W.read_checkpoint(tmp_path / "mae_vis.pth")) == "mae"
    _same(W.load_checkpoint(tmp_path / "mae_vis.pth"), vit)  # the decoder is dropped for the encoder

    dsd = W.mae_decoder_state_dict(W.read_checkpoint(tmp_path / "mae_vis.pth"))
    rename = {"decoder_embed.weight": "decoder_embed.weight", "decoder_pos_embed": "pos_embed",
              "decoder_blocks.1.attn.qkv.weight": "blocks.1.attn.qkv.weight", "decoder_norm.bias": "norm.bias",
              "decoder_pred.weight": "pred.weight", "mask_token": "mask_token"}
    for old, new in rename.items():
        assert torch.equal(dsd[new], dec[old]), old
    assert len(dsd) == len(dec)
    assert W.mae_decoder_config(dsd, num_heads=2) == {
        "embed_dim": DIM, "grid": IMG // PATCH, "patch_size": PATCH, "decoder_dim": 64, "depth": 2,
        "num_heads": 2, "mlp_ratio": 4.0, "in_chans": 3}

    enc, decoder = W.load_mae_with_decoder(tmp_path / "mae_vis.pth", decoder_heads=2)
    _same(enc, vit)
    assert isinstance(decoder, MAEDecoder)
    for k, v in decoder.state_dict().items():
        assert torch.equal(v, dsd[k]), k
    assert torch.equal(decoder.pos_embed, dec["decoder_pos_embed"])

    mae = W.load_mae_objective(tmp_path / "mae_vis.pth", decoder_heads=2)
    assert isinstance(mae, MAE) and mae.decoder is not None and not mae.cfg.norm_pix_loss
    images = torch.randint(0, 256, (2, 3, IMG, IMG), dtype=torch.uint8)
    rec = mae.reconstruct(images, torch.arange(2))
    assert rec.reconstruction.shape == (2, 3, IMG, IMG)
    assert len(mae.decoder_hidden_states(images, torch.arange(2))) == 3
    with pytest.raises(W.CheckpointError, match="no MAE decoder"):
        W.mae_decoder_state_dict(mae_checkpoint(vit)[0])


def test_project_checkpoint(tmp_path):
    cfg = ModelConfig()
    enc = _randomise(build_vit(cfg))
    torch.save({"encoder": enc.state_dict(), "model_config": to_dict(cfg), "step": 5}, tmp_path / "ours.pt")
    model = W.load_checkpoint(tmp_path / "ours.pt")
    assert model.clvsmim_source["format"] == "clvsmim" and model.blocks[0].attn.num_heads == cfg.num_heads
    _same(model, enc)
    torch.save({"encoder": enc.state_dict(), "model_config": None}, tmp_path / "ours_nocfg.pt")
    _same(W.load_checkpoint(tmp_path / "ours_nocfg.pt", num_heads=cfg.num_heads), enc)


# ----------------------------------------------------------------------------- errors
def test_other_architecture_gives_compact_error(tmp_path):
    path = tmp_path / "moco.pth.tar"
    torch.save(moco_checkpoint(tiny_vit()), path)
    narrow = timm.models.vision_transformer.VisionTransformer(img_size=IMG, patch_size=PATCH, embed_dim=96, depth=3,
                                                              num_heads=3, num_classes=0)
    with pytest.raises(W.CheckpointError) as info:
        W.load_checkpoint(path, model=narrow)
    msg = str(info.value)
    assert "missing keys: blocks.*.norm1.weight" in msg and "shape mismatches" in msg and "(1, 17, 192)" in msg
    with pytest.raises(W.CheckpointError) as info:
        W.load_checkpoint(path, architecture=W.Architecture("beit", dict(
            img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, use_abs_pos_emb=False,
            use_shared_rel_pos_bias=True, init_values=0.1, num_classes=0)))
    msg = str(info.value)
    assert "missing keys:" in msg and "blocks.*.attn.q_bias ×2" in msg
    assert "unexpected keys:" in msg and "pos_embed" in msg and "blocks.*.attn.qkv.bias ×2" in msg
    assert len(msg.splitlines()) <= 4 and len(msg) < 1500  # compact, not a key dump


def test_registry_architecture_rejects_wrong_file(tmp_path):
    """load_pretrained(name, path=...) loads into the registered ViT-B: a tiny file must not fit."""
    torch.save(moco_checkpoint(tiny_vit()), tmp_path / "x.pth.tar")
    with torch.device("meta"), pytest.raises(W.CheckpointError, match=r"shape mismatches \(\d+\)"):
        W.load_pretrained("moco_v3_vit_b", path=tmp_path / "x.pth.tar")


def test_truncated_and_garbage_checkpoints(tmp_path):
    path = tmp_path / "moco.pth.tar"
    torch.save(moco_checkpoint(tiny_vit()), path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(W.CheckpointError, match="truncated or corrupt"):
        W.load_checkpoint(tmp_path / "cut.pth")
    torch.save({"something": torch.zeros(2)}, tmp_path / "odd.pth")
    with pytest.raises(W.CheckpointError, match="unrecognised checkpoint layout"):
        W.load_checkpoint(tmp_path / "odd.pth")
    with pytest.raises(FileNotFoundError):
        W.load_checkpoint(tmp_path / "absent.pth")


def test_pickled_config_needs_explicit_opt_in(tmp_path, monkeypatch):
    # A yacs-like config class from a module that will NOT be importable at load time.
    fake = types.ModuleType("fake_yacs_config")

    class CfgNode(dict):
        pass

    CfgNode.__module__ = fake.__name__
    CfgNode.__qualname__ = "CfgNode"
    fake.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    cfg = CfgNode(MODEL=CfgNode(TYPE="vit"), DATA=CfgNode(MASK_RATIO=0.6))
    beit = tiny_beit()
    path = tmp_path / "simmim_with_config.pth"
    torch.save(simmim_checkpoint(beit, config=cfg), path)
    monkeypatch.delitem(sys.modules, fake.__name__)

    with pytest.raises(W.UnsafeCheckpointError, match="allow_pickle=True") as info:
        W.load_checkpoint(path)
    assert "--allow-pickle" in str(info.value)
    model = W.load_checkpoint(path, allow_pickle=True)
    _same(model, beit)
    obj = W.read_checkpoint(path, allow_pickle=True)
    assert obj["config"]["MODEL"]["TYPE"] == "vit"  # placeholder keeps the content


# ----------------------------------------------------------------------------- loopback server
class _Server:
    """Serves ``files`` (path -> bytes or HTML) on 127.0.0.1 with Range support; records requests."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before dropping (once)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                key = self.path.split("?")[0] if self.path.split("?")[0] in outer.files else self.path
                if key not in outer.files:
                    self.send_error(404)
                    return
                body, ctype = outer.files[key]
                start, status = 0, 200
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = outer.drop_after.pop(key, None)
                if cut is not None:
                    self.wfile.write(body[start:start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _entry(server, payload: bytes, name="toy", path="/files/toy.pth", **kw) -> W.WeightEntry:
    server.files[path] = (payload, "application/octet-stream")
    return W.WeightEntry(name=name, url=server.url(path), filename=Path(path).name, licence="test",
                         converter="timm", **kw)


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_fetch_resumes_from_partial_file(server, tmp_path):
    entry = _entry(server, PAYLOAD, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    dest = W.cached_path(entry)
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD[:300_000])
    path = W.fetch(entry, progress=False)
    assert path == dest and path.read_bytes() == PAYLOAD
    assert server.requests == [("/files/toy.pth", "bytes=300000-")]
    assert not dest.with_name(dest.name + ".part").exists()
    assert W.fetch(entry, progress=False) == dest and len(server.requests) == 1  # cached: verified, no download


def test_interrupted_download_is_resumed_automatically(server):
    entry = _entry(server, PAYLOAD, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    server.drop_after["/files/toy.pth"] = 100_000
    path = W.fetch(entry, progress=True)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0][1] is None and server.requests[1][1] == f"bytes={100_000}-"


def test_flipped_byte_fails_checksum_and_is_moved_aside(server):
    bad = bytearray(PAYLOAD)
    bad[12345] ^= 0xFF
    good_sha = hashlib.sha256(PAYLOAD).hexdigest()
    entry = _entry(server, bytes(bad), sha256=good_sha)
    with pytest.raises(W.ChecksumError) as info:
        W.fetch(entry, progress=False)
    err = info.value
    assert err.expected == good_sha and err.found == hashlib.sha256(bytes(bad)).hexdigest()
    assert good_sha in str(err) and err.found in str(err)
    dest = W.cached_path(entry)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    assert err.moved_to.exists() and err.moved_to.name.startswith("toy.pth.corrupt-")


def test_truncated_cached_file_with_known_size(server):
    entry = _entry(server, PAYLOAD, size=len(PAYLOAD))
    dest = W.cached_path(entry)
    dest.write_bytes(PAYLOAD[:1000])
    with pytest.raises(W.ChecksumError, match=r"truncated.*expected 1048576 bytes, found 1000 bytes"):
        W.verify(entry.name if entry.name in W.all_entries() else entry)
    assert not dest.exists() and list(dest.parent.glob("toy.pth.corrupt-*"))
    assert W.fetch(entry, progress=False).read_bytes() == PAYLOAD  # a fresh download then works


def test_lock_file_pins_on_first_download_then_detects_change(server, tmp_path):
    entry = _entry(server, PAYLOAD)  # no sha256, no size: trust on first use
    path = W.fetch(entry, progress=False)
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert lock["entries"]["toy"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert lock["entries"]["toy"]["size"] == len(PAYLOAD)
    assert W.verify(entry) == hashlib.sha256(PAYLOAD).hexdigest()
    path.unlink()
    changed = PAYLOAD[::-1]
    server.files["/files/toy.pth"] = (changed, "application/octet-stream")
    with pytest.raises(W.ChecksumError, match="sha256 mismatch") as info:
        W.fetch(entry, progress=False)
    assert info.value.expected == hashlib.sha256(PAYLOAD).hexdigest() and info.value.moved_to.exists()
    assert json.loads((tmp_path / "lock.json").read_text()) == lock  # the pin is not overwritten


def test_verify_paths_and_http_errors(server, tmp_path):
    f = tmp_path / "other.bin"
    f.write_bytes(b"abc")
    assert W.verify(f) == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(FileNotFoundError, match="not cached"):
        W.verify("moco_v3_vit_b")
    missing = W.WeightEntry(name="gone", url=server.url("/nope.pth"), filename="nope.pth", licence="t", converter="timm")
    with pytest.raises(W.DownloadError, match="HTTP 404"):
        W.fetch(missing, progress=False)
    with pytest.raises(W.DownloadError, match="timm"):
        W.fetch("dino_vit_b")


def test_google_drive_confirmation_and_quota_pages(server):
    real = "/download"
    server.files[real] = (PAYLOAD, "application/octet-stream")
    form = (f'<html><body>Google Drive can\'t scan this file for viruses.<form id="download-form" '
            f'action="{server.url(real)}" method="get"><input type="hidden" name="id" value="XYZ">'
            f'<input type="hidden" name="confirm" value="t"></form></body></html>').encode()
    server.files["/uc"] = (form, "text/html; charset=utf-8")
    entry = W.WeightEntry(name="drive", url=server.url("/uc?export=download&id=XYZ"), filename="drive.pth",
                          licence="t", converter="simmim", source="gdrive", manual="Open it in a browser.")
    assert W.fetch(entry, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1][0] == "/download?id=XYZ&confirm=t"

    server.files["/uc2"] = (b"<html>Sorry, the download quota for this file has been exceeded.</html>", "text/html")
    entry2 = W.WeightEntry(name="drive2", url=server.url("/uc2?id=1"), filename="drive2.pth", licence="t",
                           converter="simmim", source="gdrive", manual="Open it in a browser.")
    with pytest.raises(W.DownloadError) as info:
        W.fetch(entry2, progress=False)
    msg = str(info.value)
    assert "quota" in msg and "browser" in msg and str(W.cached_path(entry2)) in msg
    assert not W.cached_path(entry2).exists()


def _tgz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def test_fetch_imagenette_extracts_safely(server, tmp_path):
    blob = _tgz({"imagenette2-320/train/n01440764/a.JPEG": b"jpeg1", "imagenette2-320/val/n01440764/b.JPEG": b"jpeg2",
                 "imagenette2-320/noisy_imagenette.csv": b"path,label\n"})
    entry = _entry(server, blob, name="imagenette2_320", path="/imagenette2-320.tgz", kind="dataset")
    root = W.fetch_imagenette(tmp_path / "data", progress=False, entry=entry)
    assert root == tmp_path / "data" / "imagenette2-320"
    assert (root / "train" / "n01440764" / "a.JPEG").read_bytes() == b"jpeg1" and (root / "val").is_dir()
    n = len(server.requests)
    assert W.fetch_imagenette(tmp_path / "data", progress=False, entry=entry) == root and len(server.requests) == n

    for evil in (_tgz({"../evil.txt": b"x"}), _tgz({"/tmp/abs_evil.txt": b"x"}),
                 _tgz({"d/train/x": b"x"}, links={"d/val": "../../outside"})):
        archive = tmp_path / "evil.tgz"
        archive.write_bytes(evil)
        with pytest.raises(W.DownloadError, match="refusing"):
            W.safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()


def test_cli_list_fetch_verify(server, tmp_path, capsys, monkeypatch):
    from clvsmim.cli import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("moco_v3_vit_b", "simmim_vit_b", "mae_vit_b", "mae_vit_b_visualize", "dino_vit_b", "imagenette2_320"):
        assert name in out
    assert "unpinned" in out
    assert main(["weights", "verify"]) == 0 and "missing" in capsys.readouterr().out

    entry = _entry(server, PAYLOAD, name="mae_vit_b", path="/mae_pretrain_vit_base.pth")
    monkeypatch.setitem(W.REGISTRY, "mae_vit_b", entry)
    assert main(["weights", "fetch", "mae_vit_b", "--no-progress"]) == 0
    assert main(["weights", "verify", "mae_vit_b"]) == 0
    assert hashlib.sha256(PAYLOAD).hexdigest() in capsys.readouterr().out

    torch.save(tiny_vit().state_dict(), tmp_path / "v.pth")
    assert main(["weights", "inspect", str(tmp_path / "v.pth")]) == 0
    assert "format timm" in capsys.readouterr().out
