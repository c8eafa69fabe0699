"""Build an explorer from models: for the book's behaviour chapter and for ``clvsmim analyze --explorer``."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from clvsmim.analysis.model_report import _normalise, analysis_order, dataset_labels
from clvsmim.book import report
from clvsmim.book.figures import book_out_dir, figures_dir, style_for
from clvsmim.methods import ModelRef, display_name
from clvsmim.data import IMAGENET_MEAN, IMAGENET_STD, get_batch
from clvsmim.data.augment import normalize
from clvsmim.explorer.page import DataFolder, ModelEntry, embedded_html, standalone_page, write_data_folder
from clvsmim.explorer.payload import BUDGET_BYTES, Measured, images_within_budget, measure_attention
from clvsmim.models import geometry

#: Where the book's explorers live: ``<book out>/explorer/<id>/``; ``clvsmim book`` copies that
#: folder into the HTML's ``_static/explorer/`` (:func:`clvsmim.book.run.assemble_book`).
BOOK_FOLDER = "explorer"
#: URL of ``_static/explorer/`` from a chapter page (``_build/html/book/<chapter>.html``).
BOOK_STATIC_URL = "../_static/explorer/"
CONTROL_COLOR = "#7f7f7f"


def model_entry(name: str, measured: Measured, control: bool = False, label: str | None = None) -> ModelEntry:
    """A :class:`ModelEntry` with the book's display name and method colour (grey for a control
    or an unknown method)."""

    try:
        style = style_for(name.split("-")[0])
        color, family = style["color"], style["family"]
    except KeyError:
        color, family = CONTROL_COLOR, ""
    if control:
        color = CONTROL_COLOR
    text = label or display_name(name)
    if family and not control and label is None:
        text += f" ({family})"
    if control and label is None:
        text += " (untrained control)"
    return ModelEntry(name=name, label=text, color=color, measured=measured, control=control)


def geometry_dict(model: nn.Module, img_size: int) -> dict[str, Any]:

    geo = geometry(model)
    return {"depth": geo.depth, "heads": geo.num_heads, "grid": list(geo.grid), "patch_size": geo.patch_size,
            "img_size": int(img_size)}


def measure_models(models: Mapping[str, nn.Module], images: torch.Tensor, normalise: Callable[[torch.Tensor], torch.Tensor],
                   device: torch.device, batch_size: int = 16, progress: bool = False) -> dict[str, Measured]:
    """:func:`measure_attention` of every model on uint8 ``images`` (``n×3×S×S``)."""
    out = {}
    for name, model in tqdm(models.items(), desc="explorer attention", disable=not progress):
        was_training = model.training
        model.to(device).eval()
        batches = (normalise(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size))
        try:
            out[name] = measure_attention(model, batches)
        finally:
            model.train(was_training)
    return out


def _hwc(images: torch.Tensor) -> np.ndarray:
    if images.dtype != torch.uint8:
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def book_explorer(refs: Sequence[ModelRef], control: bool = True, device: str = "auto",
                  start: Mapping[str, Any] | None = None, data_id: str = "F2", out_dir: str | None = None,
                  budget: int = BUDGET_BYTES) -> dict[str, Any]:
    """Build the book's explorer of the models ``refs`` (one profile and source; + their untrained
    control, :meth:`ModelRef.control`, when it is built and has the same geometry) on as many
    analysis images as :data:`BUDGET_BYTES` allows.

    ``start``: F2's data (:func:`clvsmim.book.chapters.behaviour.query_attention_data`) — its image
    comes first and the page opens on its object query in the last block. Writes
    ``<book out>/explorer/<data_id>/`` and ``<book out>/figures/<data_id>-explorer.npz``.
    Returns ``{"html", "folder", "images", "page_bytes", "npz_bytes", "models"}``.
    """

    dev = report.resolve_device(device)
    profile, source = refs[0].profile, refs[0].source
    models = {ref.name: report.backbone(ref, dev) for ref in refs}
    first = next(iter(models.values()))
    size = profile.model.img_size if source == "zoo" else int(first.patch_embed.img_size[0])
    geo = geometry_dict(first, size)
    controls = set()
    if control:
        control_ref = refs[0].control()
        try:
            ctrl = report.backbone(control_ref, dev)
        except FileNotFoundError:
            ctrl = None
        if ctrl is not None and geometry_dict(ctrl, size) == geo:
            models[control_ref.name] = ctrl
            controls.add(control_ref.name)
    available = profile.eval.num_analysis_images
    images, labels = report.analysis_images(profile, available)
    n = images_within_budget(geo["depth"], geo["heads"], geo["grid"], size, list(models), available, budget, data_id)
    first_image = int(start["image_index"]) if start else 0
    order = [first_image] + [i for i in range(available) if i != first_image][:n - 1]
    measured = measure_models(models, images[order], normalize, dev, profile.eval.batch_size)
    entries = [model_entry(k, measured[k], control=k in controls) for k in models]
    titles = [f"analysis image {i} (label {int(labels[i])})" for i in order]
    opening = {"image": 0, "layer": geo["depth"]}
    if start:
        r, c = start["queries"]["object"]
        opening["query"] = int(r) * geo["grid"][1] + int(c)
    folder = book_out_dir(out_dir) / BOOK_FOLDER / data_id
    written = write_data_folder(folder, data_id, _hwc(images[order]), entries, geo, titles, opening,
                                description=f"profile {profile.name}, source {source}")
    shutil.copyfile(folder / "explorer.npz", figures_dir(out_dir) / f"{data_id}-explorer.npz")
    fallback = "The attention explorer needs JavaScript; the static figure above shows two of its queries."
    return {"html": embedded_html(BOOK_STATIC_URL + data_id + "/", data_id, fallback), "folder": str(folder),
            "images": len(order), "page_bytes": written.page_bytes, "npz_bytes": written.npz_bytes,
            "models": list(models)}


def standalone_explorer(model: nn.Module, images: torch.Tensor, out: str | Path, name: str,
                        normalise: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                        titles: Sequence[str] | None = None, batch_size: int = 16,
                        budget: int = BUDGET_BYTES) -> tuple[Path, DataFolder]:
    """``out/explorer.html`` plus its data folder ``out/explorer/`` for one model on (at most the
    budget's share of) uint8 ``images`` ``n×3×S×S``."""
    out = Path(out)
    size = int(images.shape[-1])
    geo = geometry_dict(model, size)
    if geo["grid"][0] * geo["patch_size"] != size:
        raise ValueError(f"explorer: images are {size} px but the model's grid is {geo['grid']} patches of "
                         f"{geo['patch_size']} px")
    n = images_within_budget(geo["depth"], geo["heads"], geo["grid"], size, ["model"], len(images), budget, "explorer")
    measured = measure_models({"model": model}, images[:n], normalise, device, batch_size)
    entry = model_entry("model", measured["model"], label=name)
    titles = list(titles)[:n] if titles is not None else [f"image {i}" for i in range(n)]
    written = write_data_folder(out / "explorer", "explorer", _hwc(images[:n]), [entry], geo, titles,
                                {"image": 0, "query": (geo["grid"][0] // 2) * geo["grid"][1] + geo["grid"][1] // 2,
                                 "layer": geo["depth"]}, description=name)
    page = standalone_page(out / "explorer.html", out / "explorer", "explorer", f"Attention explorer: {name}",
                           f"{n} images; {geo['depth']} blocks × {geo['heads']} heads; {geo['grid'][0]}×"
                           f"{geo['grid'][1]} patches of {geo['patch_size']} px.")
    return page, written


def analyze_explorer(model: nn.Module, dataset, out: str | Path, name: str, model_info: Mapping[str, Any] | None,
                     device: torch.device, images: int, batch_size: int = 16,
                     classes: Sequence[str] | None = None) -> tuple[Path, DataFolder]:
    """``clvsmim analyze --explorer``: :func:`standalone_explorer` on the images ``analyze`` reads
    (the same class-by-class order), normalised like ``analyze`` does (the model's mean/std)."""

    labels = dataset_labels(dataset)
    order = analysis_order(labels, len(dataset), min(images, len(dataset)))
    batch, _ = get_batch(dataset, order)
    mean = list((model_info or {}).get("mean") or IMAGENET_MEAN)
    std = list((model_info or {}).get("std") or IMAGENET_STD)
    titles = [f"image {int(i)}" + ("" if labels is None else
                                    f" ({classes[int(labels[i])] if classes else f'label {int(labels[i])}'})")
              for i in order]
    return standalone_explorer(model, batch, out, name, lambda x: _normalise(x, mean, std), device, titles,
                               batch_size)
