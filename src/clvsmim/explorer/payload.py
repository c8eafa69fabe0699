"""The attention explorer's data: measured attention, its compact encoding, and its size.

One *payload* holds everything the page shows for one (image, model): for every block ``l``,
head ``h`` and query patch ``q`` the renormalised patch-to-patch attention row ``Â_q`` (``N``
values summing to 1, prefix tokens dropped — the same rows as
:func:`clvsmim.analysis.query_attention_map`), the query's attention distance, and per head
the mean attention distance and NMI of the image (:func:`clvsmim.analysis.attention_statistics`,
the definitions of the F3 / F4 figures).

Encoding (little-endian, in this order, so every float array is 4-byte aligned)::

    scale          float32  L×H×N     row max / 255
    query_distance float32  L×H×N     Σ_k Â_qk·D_qk·patch_size  (px)
    distance       float32  L×H       mean over queries of query_distance  (px; F3)
    nmi            float32  L×H       (F4)
    rows           uint8    L×H×N×N   round(Â_qk / scale_q)

Decoding is ``rows * scale``; the error of every entry is at most ``scale / 2``, i.e.
``max_k Â_qk / 510`` (:data:`ROW_PRECISION`). The bytes travel base64-encoded in a ``.js``
file that assigns to a global (:func:`js_assignment`): a ``fetch`` of JSON fails from
``file://``, a ``<script src>`` does not.

Sizes (``N = (S/p)²`` patches, ``L`` blocks, ``H`` heads): one payload is
``L·H·N² + 8·L·H·N + 8·L·H`` bytes before base64 (×4/3 after). The embedded default (mini
profile: 8×8 grid, 6 blocks, 2 heads) is 55 kB per image and model, so the 3 MB page budget
holds 13 images of CL, MIM and the control; at paper scale (ViT-B/16 at 224 px: 14×14 grid,
12 blocks, 12 heads) one payload is 5.8 MB (7.7 MB as base64), so the book's explorer keeps
one image there (:func:`images_within_budget` never goes below one) and loads each model's
file only when it is shown.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from clvsmim.analysis import analyze
from clvsmim.analysis._shapes import grid_distances
from clvsmim.analysis.attention import mean_distance, normalized_mutual_information, patch_attention
from clvsmim.analysis.collectors import Collector
from clvsmim.explorer.assets import asset_bytes

#: Data per book page at the embedded default (bytes of every file the page can load).
BUDGET_BYTES = 3_000_000
#: The global the ``.js`` data files assign to: ``window[GLOBAL][data_id + "/" + key]``.
GLOBAL = "CLVSMIM_EXPLORER_DATA"
#: Largest decoding error of an attention entry, as a fraction of its row's maximum.
ROW_PRECISION = 1.0 / 510.0
#: Upper bound of ``index.js`` beyond the image pixels (model list, colour map, geometry, text).
INDEX_OVERHEAD_BYTES = 16_000


@dataclass
class Measured:
    """Attention of one model on ``n`` images (numpy, float32)::

        rows           n×L×H×N×N  renormalised patch attention (rows sum to 1)
        query_distance n×L×H×N    px
        distance       n×L×H      px (mean over queries: the F3 definition)
        nmi            n×L×H      (the F4 definition)
    """

    rows: np.ndarray
    query_distance: np.ndarray
    distance: np.ndarray
    nmi: np.ndarray

    def __post_init__(self) -> None:
        n, depth, heads, num_patches, _ = self.rows.shape
        for key, shape in (("query_distance", (n, depth, heads, num_patches)), ("distance", (n, depth, heads)),
                           ("nmi", (n, depth, heads))):
            if getattr(self, key).shape != shape:
                raise ValueError(f"Measured.{key}: expected shape {shape}, found {getattr(self, key).shape}")


class AttentionRows(Collector):
    """Per image and block: the normalised patch-attention rows ``H×N×N`` (each query's row sums
    to 1 over the patches), each query's attention distance (px), and each head's attention
    distance and NMI (the definitions of :mod:`clvsmim.analysis.attention`). Result: :class:`Measured`."""

    attentions = True
    hidden_states = False

    def start(self, geo) -> None:
        super().start(geo)
        self.out: dict[str, list[np.ndarray]] = {"rows": [], "query_distance": [], "distance": [], "nmi": []}

    def update(self, captured, batch) -> None:
        geo = self.geo
        per_block: dict[str, list[torch.Tensor]] = {k: [] for k in self.out}
        for attn in captured.attentions:
            a, s = patch_attention(attn, geo.num_prefix_tokens)  # B×H×N×N, B×H×N
            dist = grid_distances(*geo.grid, a.device, a.dtype)
            per_block["rows"].append(a / s[..., None])
            per_block["query_distance"].append(torch.linalg.vecdot(a, dist) / s * geo.patch_size)
            per_block["distance"].append(mean_distance(a, s, dist) * geo.patch_size)
            per_block["nmi"].append(normalized_mutual_information(a, s))
        for key, values in per_block.items():  # stack blocks on dim 1: B×L×…
            self.out[key].append(torch.stack(values, 1).float().cpu().numpy())

    def result(self) -> "Measured":
        return Measured(**{k: np.concatenate(v) for k, v in self.out.items()})


def measure_attention(model: nn.Module, batches: Iterable[torch.Tensor]) -> Measured:
    """Attention rows and per-head statistics of ``model`` on normalised image batches
    (``b×3×S×S``, e.g. :func:`clvsmim.book.report.normalised_batches`): one
    :func:`clvsmim.analysis.analyze` pass with an :class:`AttentionRows` collector."""
    device = next(model.parameters()).device
    return analyze(model, batches, {"rows": AttentionRows()}, device=device)["rows"]


# ----------------------------------------------------------------------------- encoding

def encode_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 codes, float32 scale)`` of non-negative rows ``…×N``: ``scale = max / 255`` per
    row, ``codes = round(rows / scale)``; ``decode_rows(codes, scale)`` is within
    ``scale / 2`` of ``rows``."""
    rows = np.asarray(rows, dtype=np.float32)
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise ValueError("encode_rows: attention rows must be finite and non-negative")
    scale = (np.maximum(rows.max(-1), np.finfo(np.float32).tiny) / 255.0).astype(np.float32)
    codes = np.clip(np.rint(rows / scale[..., None]), 0, 255).astype(np.uint8)
    return codes, scale


def decode_rows(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_rows` (float32, the same arithmetic as the page's script)."""
    return codes.astype(np.float32) * np.asarray(scale, np.float32)[..., None]


def payload_size(depth: int, heads: int, num_patches: int) -> int:
    """Bytes of one (image, model) payload before base64."""
    lh = depth * heads
    return lh * num_patches * num_patches + 4 * (2 * lh * num_patches + 2 * lh)


def pack_payload(measured: Measured, i: int) -> bytes:
    """The payload of image ``i`` (layout in the module docstring)."""
    codes, scale = encode_rows(measured.rows[i])
    parts = [scale, measured.query_distance[i], measured.distance[i], measured.nmi[i]]
    blob = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in parts) + codes.tobytes()
    depth, heads, n = measured.rows.shape[1:4]
    assert len(blob) == payload_size(depth, heads, n)
    return blob


def unpack_payload(blob: bytes, depth: int, heads: int, num_patches: int) -> dict[str, np.ndarray]:
    """``{"scale", "query_distance", "distance", "nmi", "codes", "rows"}`` of one payload
    (``rows`` decoded); raises ``ValueError`` when the size does not fit the geometry."""
    lh, n = depth * heads, num_patches
    if len(blob) != payload_size(depth, heads, n):
        raise ValueError(f"payload of {len(blob)} bytes does not fit L={depth}, H={heads}, N={n} "
                         f"(expected {payload_size(depth, heads, n)})")
    f = np.frombuffer(blob, dtype="<f4", count=2 * lh * n + 2 * lh)
    out = {"scale": f[:lh * n].reshape(depth, heads, n),
           "query_distance": f[lh * n:2 * lh * n].reshape(depth, heads, n),
           "distance": f[2 * lh * n:2 * lh * n + lh].reshape(depth, heads),
           "nmi": f[2 * lh * n + lh:].reshape(depth, heads),
           "codes": np.frombuffer(blob, dtype=np.uint8, offset=4 * (2 * lh * n + 2 * lh)).reshape(depth, heads, n, n)}
    out["rows"] = decode_rows(out["codes"], out["scale"])
    return out


def js_assignment(data_id: str, key: str, value: str) -> str:
    """A ``.js`` file's text that stores ``value`` (a JSON literal) as ``window[GLOBAL][id/key]``."""
    return f'(window.{GLOBAL}=window.{GLOBAL}||{{}})[{json.dumps(data_id + "/" + key)}]={value};\n'


def js_payload(data_id: str, key: str, blob: bytes) -> str:
    """:func:`js_assignment` of a base64 string."""
    return js_assignment(data_id, key, '"' + base64.b64encode(blob).decode("ascii") + '"')


def payload_file_name(image: int, model: str) -> str:
    """``img003.moco.js``: the data file of explorer image ``image`` (position) and ``model``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return f"img{image:03d}.{safe}.js"


# ----------------------------------------------------------------------------- budget

def _b64(n: int) -> int:
    return 4 * math.ceil(n / 3)


def payload_file_bytes(data_id: str, model: str, depth: int, heads: int, num_patches: int) -> int:
    """Exact size of one data file as written by :func:`js_payload` (image index < 1000)."""
    return len(js_payload(data_id, "img000." + model, b"").encode()) + _b64(payload_size(depth, heads, num_patches))


def index_file_bytes_bound(num_images: int, img_size: int) -> int:
    """Upper bound of ``index.js``: the images' pixels (RGB, base64) plus :data:`INDEX_OVERHEAD_BYTES`."""
    return num_images * (_b64(3 * img_size * img_size) + 200) + INDEX_OVERHEAD_BYTES


def page_data_bytes(depth: int, heads: int, grid: Sequence[int], img_size: int, models: Sequence[str],
                    num_images: int, data_id: str = "F2", assets: int | None = None) -> int:
    """Bytes of every file the explorer page can load: the data files of ``num_images`` images ×
    ``models``, ``index.js`` (bound) and the script and stylesheet (``assets``; default: the
    package's own files)."""
    if assets is None:
        assets = asset_bytes()
    n = int(grid[0]) * int(grid[1])
    per_image = sum(payload_file_bytes(data_id, m, depth, heads, n) for m in models)
    return num_images * per_image + index_file_bytes_bound(num_images, img_size) + assets


def images_within_budget(depth: int, heads: int, grid: Sequence[int], img_size: int, models: Sequence[str],
                         available: int, budget: int = BUDGET_BYTES, data_id: str = "F2") -> int:
    """Most images (≤ ``available``, ≥ 1) whose :func:`page_data_bytes` stays within ``budget``."""
    if available < 1:
        raise ValueError(f"images_within_budget: no images available ({available})")
    n = available
    while n > 1 and page_data_bytes(depth, heads, grid, img_size, models, n, data_id) > budget:
        n -= 1
    return n


def profile_page_bytes(profile, models: Sequence[str] = ("moco", "simmim", "random"),
                       budget: int = BUDGET_BYTES) -> dict[str, int]:
    """``{"images", "bytes"}`` of the book's explorer for a profile's model and analysis set,
    from the sizes alone (nothing trained)."""
    m = profile.model
    grid = (m.img_size // m.patch_size,) * 2
    n = images_within_budget(m.depth, m.num_heads, grid, m.img_size, models,
                             profile.eval.num_analysis_images, budget)
    return {"images": n, "bytes": page_data_bytes(m.depth, m.num_heads, grid, m.img_size, models, n)}
