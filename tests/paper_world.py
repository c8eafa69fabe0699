"""The paper world without network, for tests: stand-in official checkpoints and real photographs.

* :func:`write_official_standins` — random ViT-B/16 weights saved in each upstream layout
  (:mod:`official_formats`: MoCo v3 ``state_dict`` with ``module.base_encoder.*``, the momentum
  encoder and the predictor; SimMIM ``model`` with a BEiT-style ``encoder.*`` incl.
  ``encoder.norm.*``, ``mask_token`` and the decoder; MAE ``model``; MAE visualize with its
  decoder), placed where ``clvsmim weights fetch`` keeps them and pinned in a lock file.
* :func:`photo_folder` — an ImageFolder of the photographs scikit-image ships in its wheel
  (colour JPEGs, grayscale PNGs, RGBA PNGs and a GIF, plus a corrupt file), a few crops each.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from official_formats import _randomise, mae_checkpoint, moco_checkpoint, simmim_checkpoint

#: (md5 of the file up to the comment, prefix) -> nonce found before, to skip the search.
KNOWN_NONCES: dict[tuple[str, str], int] = {("1534a1816da1c371f499ed7c50d303f6", "8cad7c"): 24149028}
#: Which stand-in goes with which registry entry (names of :mod:`clvsmim.weights`).
STANDINS = ("moco_v3_vit_b", "simmim_vit_b", "mae_vit_b", "mae_vit_b_visualize")


def _vit_b(seed: int) -> torch.nn.Module:
    return _randomise(timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0), seed)


def _beit_b(seed: int) -> torch.nn.Module:
    from clvsmim.weights import get_entry

    return _randomise(timm.models.beit.Beit(**get_entry("simmim_vit_b").architecture.kwargs), seed)


def standin_checkpoint(name: str) -> dict:
    """The checkpoint dict of registry entry ``name`` in its upstream layout (random weights)."""
    if name == "moco_v3_vit_b":
        return moco_checkpoint(_vit_b(11))
    if name == "simmim_vit_b":
        return simmim_checkpoint(_beit_b(12))
    if name in ("mae_vit_b", "mae_vit_b_visualize"):
        return mae_checkpoint(_vit_b(13), decoder=name == "mae_vit_b_visualize")[0]
    raise KeyError(name)


def write_official_standins(names=STANDINS, checkpoint=standin_checkpoint) -> dict[str, Path]:
    """Save each stand-in at :func:`clvsmim.weights.download.cached_path` (under ``$CLVSMIM_CACHE``)
    and pin its sha256 in the lock file (``$CLVSMIM_WEIGHTS_LOCK``). Returns ``{name: path}``."""
    from clvsmim.weights import get_entry
    from clvsmim.weights.download import cached_path
    from clvsmim.weights.pins import file_digests, pin

    paths = {}
    for name in names:
        entry = get_entry(name)
        path = cached_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint(name), path)
        if entry.md5_prefix:  # MAE: the README's md5 column is checked before any pin
            match_md5_prefix(path, entry.md5_prefix)
        digests = file_digests(path)
        pin(entry, digests[0], path.stat().st_size)
        paths[name] = path
    return paths


def _photos() -> dict[str, list[np.ndarray]]:
    import skimage.data as d

    colour = [d.astronaut(), d.coffee(), d.chelsea(), d.rocket(), d.immunohistochemistry(), d.colorwheel()]
    gray = [d.camera(), d.coins(), d.moon(), d.brick(), d.grass(), d.gravel(), d.clock()]
    rgba = [d.logo()] + [np.dstack([c, np.full(c.shape[:2], 200, np.uint8)]) for c in colour[:4]]
    return {"colour": colour, "gray": gray, "rgba": rgba}


def photo_folder(root: str | Path, per_class: int = 8) -> Path:
    """``root/<colour|gray|rgba>/…``: ``per_class`` images per class (each photograph, then
    flipped and cropped variants of it), colour as JPEG, grayscale as PNG (one as GIF), RGBA as
    PNG; plus ``gray/zz-corrupt.jpg`` (not an image). Deterministic."""
    root = Path(root)
    for cls, photos in _photos().items():
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = photos[i % len(photos)]
            k = i // len(photos)
            if k % 2:
                a = a[:, ::-1]
            if k >= 2:
                h, w = a.shape[:2]
                a = a[h // 8: h - h // 8, w // 8: w - w // 8]
            img = Image.fromarray(np.ascontiguousarray(a))
            if cls == "colour":
                img.save(folder / f"{i:02d}.jpg", quality=90)
            elif cls == "gray" and i == 1:
                img.save(folder / f"{i:02d}.gif")
            else:
                img.save(folder / f"{i:02d}.png")
    (root / "gray" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def match_md5_prefix(path: str | Path, prefix: str) -> int:
    """Make the md5 of the torch zip file at ``path`` start with ``prefix`` (the upstream README's
    check, e.g. MAE's ``8cad7c``) by writing an 8-byte nonce as the zip archive comment, which
    every zip reader (``torch.load`` too) ignores. Returns the nonce (search: ~16·4^len tries)."""
    import hashlib

    path = Path(path)
    data = path.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0 or len(data) - eocd != 22:
        raise ValueError(f"{path}: not a zip file without comment (end record at {eocd} of {len(data)})")
    head = data[:eocd + 20] + (8).to_bytes(2, "little")  # comment length 8
    base = hashlib.md5(head, usedforsecurity=False)
    prefix = prefix.lower()
    nonce = KNOWN_NONCES.get((base.hexdigest(), prefix), 0)  # the stand-ins are deterministic
    while True:
        h = base.copy()
        h.update(nonce.to_bytes(8, "little"))
        if h.hexdigest().startswith(prefix):
            break
        nonce += 1
    path.write_bytes(head + nonce.to_bytes(8, "little"))
    return nonce


def imagenette_standin(workdir: str | Path, per_class: int = 4) -> Path:
    """A stand-in for Imagenette's archive: ``imagenette2-320/{train,val}/<class>/*`` holding the
    photographs of :func:`photo_folder` (``per_class`` per class and split; the corrupt file too),
    written as a ``.tgz`` where ``clvsmim weights fetch`` keeps the real one and pinned in the lock
    file, so :func:`clvsmim.weights.fetch_imagenette` verifies and extracts it without network.
    Returns the archive's path."""
    import shutil
    import tarfile

    from clvsmim.weights import IMAGENETTE
    from clvsmim.weights.download import cached_path
    from clvsmim.weights.pins import file_digests, pin

    workdir = Path(workdir)
    tree = workdir / "imagenette-tree" / "imagenette2-320"
    for split in ("train", "val"):
        photo_folder(tree / split, per_class=per_class)
    archive = cached_path(IMAGENETTE)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="imagenette2-320")
    shutil.rmtree(tree.parent)
    pin(IMAGENETTE, file_digests(archive)[0], archive.stat().st_size)
    return archive
