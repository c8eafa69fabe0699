"""The renderer of the synthetic images: shapes, textures, and every sample's random parameters
from counter-based hashing (a pure function of the seed and the index)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from clvsmim.rng import hash_uniform, pcg_hash, sample_seed



IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring", "crescent", "heart")
TEXTURES: tuple[str, ...] = ("stripes", "checkerboard", "dots", "noise", "waves", "zigzag", "grid", "rings")
MODES: tuple[str, ...] = ("independent", "aligned", "conflict")

#: Bump whenever the rendering changes, so that cached sets are regenerated.
GENERATOR_VERSION = 1
#: ``open_dataset`` draws the synthetic eval split from ``seed + EVAL_SEED_OFFSET``.
EVAL_SEED_OFFSET = 1_000_003

_DOMAIN = 0xDA7A  # separates the data's per-sample seeds from the training pipeline's
_STREAM_LABELS, _STREAM_GEOMETRY, _STREAM_FOREGROUND, _STREAM_BACKGROUND = 0, 1, 2, 3
PIXELS_PER_CHUNK = 1 << 22  # bounds the float32 working memory of the renderer

# Geometry, in image coordinates: the image spans [-1, 1] on both axes.
_SCALE_RANGE = (0.55, 0.85)  # radius of the shape's unit disc
_PERIOD_RANGE = (0.28, 0.5)  # texture period (1/7 .. 1/4 of the image width)
_NOISE_CELLS = 12  # value-noise lattice cells across the image
#: how far the background's dark / light texture colours lie from their mean, relative to the
#: drawn pair (0.4: pulled 60 % of the way to the mean; 0: a flat colour; 1: full contrast)
BACKGROUND_CONTRAST = 0.4

if len(SHAPES) != len(TEXTURES):
    raise AssertionError("cue-conflict design needs a bijection shape class <-> texture family")


# --------------------------------------------------------------------------------------
# Shapes: membership of local coordinates (x, y), each (B, S, S), in a shape of radius ~1.
# --------------------------------------------------------------------------------------

def _regular_polygon(x: torch.Tensor, y: torch.Tensor, sides: int, inradius: float) -> torch.Tensor:
    """Inside a regular polygon with a vertex pointing up (-y): all half-planes hold."""
    inside = torch.ones_like(x, dtype=torch.bool)
    for k in range(sides):
        angle = math.pi / 2 + 2 * math.pi * k / sides  # outward normals; the first points down
        inside &= x * math.cos(angle) + y * math.sin(angle) < inradius
    return inside


def _circle(x, y):
    return x * x + y * y < 0.85 ** 2


def _square(x, y):
    return torch.maximum(x.abs(), y.abs()) < 0.68


def _triangle(x, y):
    return _regular_polygon(x, y, 3, inradius=0.48)


def _cross(x, y):
    ax, ay = x.abs(), y.abs()
    return ((ax < 0.3) & (ay < 0.92)) | ((ay < 0.3) & (ax < 0.92))


def _star(x, y, points: int = 5, outer: float = 0.97, inner: float = 0.42):
    """Five-pointed star: fold the angle into one half-sector, test against its edge."""
    radius = torch.sqrt(x * x + y * y)
    half = math.pi / points
    folded = torch.remainder(torch.atan2(y, x), 2 * half)
    to_vertex = half - (folded - half).abs()  # 0 at an outer vertex, `half` at an inner one
    qx, qy = radius * torch.cos(to_vertex), radius * torch.sin(to_vertex)
    ex, ey = inner * math.cos(half) - outer, inner * math.sin(half)  # edge outer -> inner vertex
    return ex * qy - ey * (qx - outer) > 0


def _ring(x, y):
    r2 = x * x + y * y
    return (r2 > 0.52 ** 2) & (r2 < 0.95 ** 2)


def _crescent(x, y):
    return (x * x + y * y < 0.9 ** 2) & ((x - 0.45) ** 2 + y * y > 0.72 ** 2)


def _heart(x, y):
    """Implicit heart curve (x² + y² − 1)³ − x²y³ < 0, scaled into the unit disc, tip down."""
    hx, hy = x * 1.3, -y * 1.3 + 0.25
    return (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 < 0


_SHAPE_FNS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    _circle, _square, _triangle, _cross, _star, _ring, _crescent, _heart)


# --------------------------------------------------------------------------------------
# Textures: a pattern value in [0, 1] per pixel, from per-layer parameters.
# --------------------------------------------------------------------------------------

@dataclass
class _TextureLayers:
    """Parameters of ``B`` texture layers (one foreground and one background per image).

    angle (B,), freq (B,) in periods per image-coordinate unit, phase (B, 2) in periods,
    centre (B, 2) of the ring texture, dark / light (B, 3) colours, seeds (B,) for noise.
    """

    angle: torch.Tensor
    freq: torch.Tensor
    phase: torch.Tensor
    centre: torch.Tensor
    dark: torch.Tensor
    light: torch.Tensor
    seeds: torch.Tensor

    def take(self, idx: torch.Tensor) -> "_TextureLayers":
        return _TextureLayers(**{k: v[idx] for k, v in vars(self).items()})

    @staticmethod
    def cat(layers: Sequence["_TextureLayers"]) -> "_TextureLayers":
        return _TextureLayers(**{k: torch.cat([vars(part)[k] for part in layers]) for k in vars(layers[0])})

    def pattern_coords(self, grid: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated, scaled, shifted coordinates ``u, v`` (B, S, S), in texture periods."""
        x, y = grid
        cos, sin = _per_layer(torch.cos(self.angle)), _per_layer(torch.sin(self.angle))
        freq = _per_layer(self.freq)
        u = (cos * x + sin * y) * freq + _per_layer(self.phase[:, 0])
        v = (cos * y - sin * x) * freq + _per_layer(self.phase[:, 1])
        return u, v

    def radial_coord(self, grid: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Distance from the ring centre, in periods, (B, S, S)."""
        x, y = grid
        dx, dy = x - _per_layer(self.centre[:, 0]), y - _per_layer(self.centre[:, 1])
        return torch.sqrt(dx * dx + dy * dy) * _per_layer(self.freq) + _per_layer(self.phase[:, 0])

    def value_noise(self, size: int, cells: int = _NOISE_CELLS) -> torch.Tensor:
        """Bilinear value noise on a ``cells``² lattice, (B, S, S) in [0, 1]; resolution independent."""
        lattice = _uniform(self.seeds, cells * cells, stream=0)
        lattice = lattice.reshape(-1, 1, cells, cells)
        return F.interpolate(lattice, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def _per_layer(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1), to broadcast against a (1, S, S) pixel grid."""
    return values.reshape(-1, 1, 1)


def _frac(t: torch.Tensor) -> torch.Tensor:
    return t - torch.floor(t)


def _stripes(layers: _TextureLayers, grid) -> torch.Tensor:
    u, _ = layers.pattern_coords(grid)
    return (_frac(u) < 0.5).float()


def _checkerboard(layers: _TextureLayers, grid) -> torch.Tensor:
    u, v = layers.pattern_coords(grid)
    return torch.remainder(torch.floor(u) + torch.floor(v), 2.0)


def _dots(layers: _TextureLayers, grid) -> torch.Tensor:
    u, v = layers.pattern_coords(grid)
    du, dv = _frac(u) - 0.5, _frac(v) - 0.5
    return (du * du + dv * dv < 0.3 ** 2).float()


def _noise(layers: _TextureLayers, grid, cells: int = _NOISE_CELLS) -> torch.Tensor:
    size = grid[0].shape[-1]
    return ((layers.value_noise(size, cells) - 0.5) * 3.0 + 0.5).clamp(0.0, 1.0)


def _waves(layers: _TextureLayers, grid) -> torch.Tensor:
    u, v = layers.pattern_coords(grid)
    return (_frac(u + 0.45 * torch.sin(2 * math.pi * v / 2.5)) < 0.5).float()


def _zigzag(layers: _TextureLayers, grid) -> torch.Tensor:
    u, v = layers.pattern_coords(grid)
    triangle_wave = (2 * _frac(v / 1.5) - 1).abs()
    return (_frac(u + 0.6 * triangle_wave) < 0.5).float()


def _grid_lines(layers: _TextureLayers, grid) -> torch.Tensor:
    u, v = layers.pattern_coords(grid)
    return (((_frac(u) - 0.5).abs() > 0.34) | ((_frac(v) - 0.5).abs() > 0.34)).float()


def _rings(layers: _TextureLayers, grid) -> torch.Tensor:
    return (_frac(layers.radial_coord(grid)) < 0.5).float()


_TEXTURE_FNS: tuple[Callable[[_TextureLayers, tuple], torch.Tensor], ...] = (
    _stripes, _checkerboard, _dots, _noise, _waves, _zigzag, _grid_lines, _rings)


# --------------------------------------------------------------------------------------
# Random parameters, per sample, from counter-based hashing.
# --------------------------------------------------------------------------------------

def _uniform(seeds: torch.Tensor, n: int, stream: int) -> torch.Tensor:
    """(B, n) uniforms in [0, 1) from per-sample seeds (B,)."""
    return hash_uniform(seeds, n, stream=stream)


def data_seeds(seed: int, start: int, stop: int) -> torch.Tensor:
    """Per-sample seeds (stop - start,) int64 of samples ``start .. stop-1``."""
    return sample_seed(seed, _DOMAIN, torch.arange(start, stop, dtype=torch.int64))


def _draw_index(u: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform integer in ``[0, n)`` from uniforms ``u``."""
    return torch.clamp((u * n).long(), max=n - 1)


def _draw_excluding(u: torch.Tensor, n: int, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Uniform integer in ``[0, n)`` other than ``first`` and ``second`` (which may coincide)."""
    distinct = first != second
    low, high = torch.minimum(first, second), torch.maximum(first, second)
    draw = torch.clamp((u * (n - 1 - distinct.long())).long(), min=0)
    draw = torch.minimum(draw, n - 2 - distinct.long())
    draw = draw + (draw >= low).long()
    return draw + ((draw >= high) & distinct).long()


def _draw_labels(seeds: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shape, foreground texture and background texture labels, each (B,) int64."""
    k = len(SHAPES)
    u = _uniform(seeds, 4, _STREAM_LABELS)
    shape = _draw_index(u[:, 0], k)
    if mode == "independent":
        texture = _draw_index(u[:, 1], k)
    elif mode == "aligned":
        texture = shape.clone()
    else:  # conflict: the texture of another class
        texture = _draw_excluding(u[:, 1], k, shape, shape)
    # the background shows neither the foreground's texture nor the class's own texture
    background = _draw_excluding(u[:, 2], k, texture, shape)
    return shape, texture, background


def _draw_local_coords(seeds: torch.Tensor, grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape-frame coordinates (B, S, S): random centre, scale and rotation per sample."""
    x, y = grid
    u = _uniform(seeds, 4, _STREAM_GEOMETRY)
    scale = _SCALE_RANGE[0] + (_SCALE_RANGE[1] - _SCALE_RANGE[0]) * u[:, 0]
    cx, cy = (2 * u[:, 1] - 1) * (1 - scale), (2 * u[:, 2] - 1) * (1 - scale)
    theta = 2 * math.pi * u[:, 3]
    dx, dy = x - _per_layer(cx), y - _per_layer(cy)
    cos, sin = _per_layer(torch.cos(theta)), _per_layer(torch.sin(theta))
    inv_scale = _per_layer(1.0 / scale)
    return (cos * dx + sin * dy) * inv_scale, (cos * dy - sin * dx) * inv_scale


def _draw_texture_layers(seeds: torch.Tensor, stream: int, contrast: float, scale: float = 1.0) -> _TextureLayers:
    """Texture parameters and a dark/light colour pair per sample, at the given contrast;
    periods are ``scale`` times :data:`_PERIOD_RANGE`."""
    u = _uniform(seeds, 13, stream)
    period = scale * (_PERIOD_RANGE[0] + (_PERIOD_RANGE[1] - _PERIOD_RANGE[0]) * u[:, 1])
    dark, light = 0.45 * u[:, 6:9], 0.55 + 0.45 * u[:, 9:12]
    swap = (u[:, 12:13] < 0.5)
    dark, light = torch.where(swap, light, dark), torch.where(swap, dark, light)
    mean = (dark + light) / 2
    return _TextureLayers(
        angle=math.pi * u[:, 0], freq=1.0 / period, phase=u[:, 2:4], centre=2 * u[:, 4:6] - 1,
        dark=mean + contrast * (dark - mean), light=mean + contrast * (light - mean),
        seeds=pcg_hash(seeds ^ (stream * 0x9E3779B1)),
    )


# --------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------

def _pixel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``x`` (columns) and ``y`` (rows), each (1, S, S) in [-1, 1]."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return x.unsqueeze(0), y.unsqueeze(0)


def _per_family(family: torch.Tensor, render: Callable[[int, torch.Tensor], torch.Tensor],
                out: torch.Tensor) -> torch.Tensor:
    """Fill ``out[i]`` with ``render(family[i], rows)`` batching all rows of one family."""
    for k in family.unique().tolist():
        rows = (family == k).nonzero().squeeze(1)
        out[rows] = render(k, rows)
    return out


def _texture_fns(scale: float) -> list[Callable[[_TextureLayers, tuple], torch.Tensor]]:
    """The texture renderers; value noise gets a lattice ``scale`` times coarser."""
    fns = list(_TEXTURE_FNS)
    fns[TEXTURES.index("noise")] = partial(_noise, cells=max(2, round(_NOISE_CELLS / scale)))
    return fns


def check_texture_scale(scale: float) -> float:
    """``scale`` as a float, which must be positive and finite."""
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"texture_scale must be a positive number, got {scale!r}")
    return scale


def check_background_contrast(contrast: float) -> float:
    """``contrast`` as a float, which must lie in [0, 1]."""
    contrast = float(contrast)
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"background_contrast must lie in [0, 1], got {contrast!r}")
    return contrast


def render_chunk(seeds: torch.Tensor, mode: str, size: int, scale: float = 1.0,
                 background_contrast: float = BACKGROUND_CONTRAST) -> dict[str, torch.Tensor]:
    """Render samples with the given per-sample seeds (B,): images uint8 B×3×S×S and labels;
    texture periods ``scale`` times the default, the background's texture at ``background_contrast``."""
    grid = _pixel_grid(size)
    n = seeds.numel()
    shape, texture, background = _draw_labels(seeds, mode)

    lx, ly = _draw_local_coords(seeds, grid)
    mask = _per_family(shape, lambda k, rows: _SHAPE_FNS[k](lx[rows], ly[rows]),
                       torch.empty(n, size, size, dtype=torch.bool))

    layers = _TextureLayers.cat([_draw_texture_layers(seeds, _STREAM_FOREGROUND, 1.0, scale),
                                 _draw_texture_layers(seeds, _STREAM_BACKGROUND, background_contrast, scale)])
    family = torch.cat([texture, background])
    fns = _texture_fns(scale)
    pattern = _per_family(family, lambda k, rows: fns[k](layers.take(rows), grid),
                          torch.empty(2 * n, size, size))
    dark, light = layers.dark[:, :, None, None], layers.light[:, :, None, None]
    colour = torch.lerp(dark, light, pattern.unsqueeze(1))  # (2B, 3, S, S)
    image = torch.where(mask.unsqueeze(1), colour[:n], colour[n:])
    return {
        "images": (image * 255.0).round_().clamp_(0, 255).to(torch.uint8),
        "shape": shape, "texture": texture, "background": background, "mask": mask,
    }
