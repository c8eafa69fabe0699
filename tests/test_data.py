"""Tests of clvsmim.data: the generated shape/texture dataset, its cache, and image folders."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from clvsmim import data
from clvsmim.data import synthetic
from clvsmim.config import DataConfig
from clvsmim.data import (
    IMAGENET_MEAN, IMAGENET_STD, SHAPES, TEXTURES, ImageFolderDataset, SyntheticSet, get_batch,
    load_synthetic, make_synthetic, open_dataset, synthetic_cache_path,
)

K = len(SHAPES)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test caches under its own temporary folder, never under ~/.cache."""
    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def independent() -> SyntheticSet:
    return make_synthetic(400, 32, seed=3)


def assert_same_set(a: SyntheticSet, b: SyntheticSet) -> None:
    for name in ("images", "shape", "texture", "mask", "background"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ----------------------------------------------------------------------------- generation

def test_vocabulary_allows_a_bijection():
    assert len(SHAPES) == len(TEXTURES) >= 8
    assert len(set(SHAPES)) == len(SHAPES) and len(set(TEXTURES)) == len(TEXTURES)
    assert len(IMAGENET_MEAN) == len(IMAGENET_STD) == 3


@pytest.mark.parametrize("size", [32, 64])
def test_types_and_shapes(size):
    ds = make_synthetic(12, size, seed=0)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 3, size, size)
    assert ds.shape.dtype == ds.texture.dtype == torch.int64 and ds.shape.shape == (12,)
    assert ds.mask.dtype == torch.bool and ds.mask.shape == (12, size, size)
    assert len(ds) == 12 and ds.num_classes == K and ds.classes == list(SHAPES)
    image, label = ds[5]
    assert torch.equal(image, ds.images[5]) and label == int(ds.shape[5]) and isinstance(label, int)
    assert torch.equal(ds.labels, ds.shape)


def test_same_seed_same_data_other_seed_other_data():
    assert_same_set(make_synthetic(50, 32, seed=7), make_synthetic(50, 32, seed=7))
    a, b = make_synthetic(50, 32, seed=7), make_synthetic(50, 32, seed=8)
    assert not torch.equal(a.images, b.images)
    assert not torch.equal(a.shape, b.shape)


def test_prefix_property():
    small, large = make_synthetic(10, 32, seed=5), make_synthetic(100, 32, seed=5)
    assert_same_set(small, large.subset(torch.arange(10)))


def test_chunked_rendering_equals_one_pass(monkeypatch):
    whole = make_synthetic(30, 32, seed=2)
    monkeypatch.setattr(synthetic, "PIXELS_PER_CHUNK", 7 * 32 * 32)  # chunks of 7 images
    assert_same_set(make_synthetic(30, 32, seed=2), whole)


def test_same_scenes_at_every_resolution():
    small, large = make_synthetic(20, 32, seed=1), make_synthetic(20, 64, seed=1)
    assert torch.equal(small.shape, large.shape) and torch.equal(small.texture, large.texture)
    down = torch.nn.functional.avg_pool2d(large.mask[:, None].float(), 2)[:, 0]
    agreement = ((down > 0.5) == small.mask).float().mean()
    assert agreement > 0.95


def test_empty_and_invalid_arguments():
    assert len(make_synthetic(0, 32)) == 0
    with pytest.raises(ValueError, match="mode"):
        make_synthetic(4, 32, mode="shuffled")


def test_independent_labels_cover_every_class(independent):
    ds = independent
    assert ds.shape.min() >= 0 and ds.shape.max() < K
    assert ds.texture.min() >= 0 and ds.texture.max() < K
    assert torch.bincount(ds.shape, minlength=K).min() >= 20  # ~50 expected each
    assert torch.bincount(ds.texture, minlength=K).min() >= 20
    assert (ds.texture == ds.shape).any() and (ds.texture != ds.shape).any()
    # background: another texture than the foreground, and not the class's own texture
    assert (ds.background != ds.texture).all() and (ds.background != ds.shape).all()
    assert torch.bincount(ds.background, minlength=K).min() > 0


def test_aligned_and_conflict_modes():
    aligned = make_synthetic(300, 32, seed=4, mode="aligned")
    conflict = make_synthetic(300, 32, seed=4, mode="conflict")
    assert torch.equal(aligned.texture, aligned.shape)
    assert (conflict.texture != conflict.shape).all()
    assert torch.bincount(conflict.texture, minlength=K).min() > 0
    for ds in (aligned, conflict):
        assert (ds.background != ds.texture).all() and (ds.background != ds.shape).all()
    # within one seed the modes share geometry and shape labels: only textures differ
    assert torch.equal(aligned.shape, conflict.shape) and torch.equal(aligned.mask, conflict.mask)
    assert not torch.equal(aligned.images, conflict.images)


# ----------------------------------------------------------------------------- masks

def test_mask_is_a_proper_foreground(independent):
    area = independent.mask.float().mean(dim=(1, 2))
    assert (area > 0.02).all() and (area < 0.7).all()


def test_foreground_pixels_differ_from_background(independent):
    ds = independent
    pixels = ds.images.float().permute(0, 2, 3, 1)  # N×S×S×3
    mask = ds.mask
    fg_mean = torch.stack([pixels[i][mask[i]].mean(0) for i in range(len(ds))])
    bg_mean = torch.stack([pixels[i][~mask[i]].mean(0) for i in range(len(ds))])
    fg_std = torch.stack([pixels[i][mask[i]].std(0).mean() for i in range(len(ds))])
    bg_std = torch.stack([pixels[i][~mask[i]].std(0).mean() for i in range(len(ds))])
    assert (fg_mean - bg_mean).abs().mean() > 20  # grey levels out of 255
    assert (fg_std > bg_std).float().mean() > 0.8  # the foreground has the stronger texture


def slow_token_targets(mask: torch.Tensor, patch: int) -> torch.Tensor:
    n, size, _ = mask.shape
    out = torch.zeros(n, size // patch, size // patch)
    for i in range(n):
        for r in range(size // patch):
            for c in range(size // patch):
                out[i, r, c] = mask[i, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].float().mean()
    return out


@pytest.mark.parametrize("patch", [4, 8])
def test_token_targets_are_mask_fractions_per_patch(patch):
    ds = make_synthetic(6, 32, seed=9)
    targets = ds.token_targets(patch)
    assert targets.shape == (6, 32 // patch, 32 // patch) and targets.dtype == torch.float32
    assert targets.min() >= 0 and targets.max() <= 1
    assert torch.allclose(targets, slow_token_targets(ds.mask, patch))
    assert torch.equal(ds.token_majority(patch), targets > 0.5)


def test_token_targets_reject_non_dividing_patch():
    with pytest.raises(ValueError, match="patch"):
        make_synthetic(2, 32).token_targets(5)


def test_subset_keeps_every_field(independent):
    idx = torch.tensor([3, 1, 4, 1])
    sub = independent.subset(idx)
    assert len(sub) == 4 and sub.mode == independent.mode
    for name in ("images", "shape", "texture", "mask", "background"):
        assert torch.equal(getattr(sub, name), getattr(independent, name)[idx])
    assert len(independent.subset(slice(0, 5))) == 5


# ----------------------------------------------------------------------------- cache

def test_cache_round_trip(monkeypatch):
    first = load_synthetic(24, 32, seed=11, mode="conflict")
    path = synthetic_cache_path(24, 32, 11, "conflict")
    assert path.is_file() and path.parent.parent == Path(synthetic.cache_dir())
    assert not list(path.parent.glob("*.tmp"))

    def no_generation(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(synthetic, "make_synthetic", no_generation)
    again = load_synthetic(24, 32, seed=11, mode="conflict")
    assert_same_set(again, first)
    assert again.mode == "conflict"


def test_cache_key_covers_every_argument():
    base = synthetic_cache_path(24, 32, 0, "independent")
    others = [synthetic_cache_path(25, 32, 0, "independent"), synthetic_cache_path(24, 64, 0, "independent"),
              synthetic_cache_path(24, 32, 1, "independent"), synthetic_cache_path(24, 32, 0, "aligned")]
    assert len({base, *others}) == 5


def test_corrupt_cache_is_regenerated():
    path = synthetic_cache_path(16, 32, 2, "independent")
    path.write_bytes(b"not a tensor file")
    ds = load_synthetic(16, 32, seed=2)
    assert_same_set(ds, make_synthetic(16, 32, seed=2))
    assert_same_set(load_synthetic(16, 32, seed=2), ds)  # the rewritten file is readable


def test_cache_disabled_writes_nothing():
    load_synthetic(8, 32, seed=0, cache=False)
    assert not synthetic_cache_path(8, 32, 0, "independent").exists()


# ----------------------------------------------------------------------------- image folders

def write_image(path: Path, size: tuple[int, int], colour, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two classes, created out of alphabetical order, with PNG and JPEG files of mixed sizes/modes."""
    root = tmp_path / "images"
    write_image(root / "zebra" / "a.png", (50, 40), (250, 10, 10))
    write_image(root / "zebra" / "b.JPG", (40, 64), (10, 250, 10))
    write_image(root / "apple" / "c.jpeg", (64, 64), (10, 10, 250))
    write_image(root / "apple" / "nested" / "d.png", (30, 90), 128, mode="L")
    write_image(root / "apple" / "e.png", (70, 35), (1, 2, 3, 200), mode="RGBA")
    (root / "apple" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_sizes_labels_and_classes(folder):
    ds = ImageFolderDataset(folder, img_size=32)
    assert ds.classes == ["apple", "zebra"] and ds.num_classes == 2 and len(ds) == 5
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
        assert label == ds.labels[i]
    assert ds.num_unreadable == 0
    red, _ = ds[3]  # zebra/a.png
    assert red[0].float().mean() > 240 and red[1].float().mean() < 20


def test_eval_transform_resizes_shorter_side_then_centre_crops(tmp_path):
    image = Image.new("RGB", (128, 64), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 64, 64))  # left half red, right half blue
    image.save(tmp_path / "half.png")
    out = data.eval_transform(32)(Image.open(tmp_path / "half.png").convert("RGB"))
    assert out.shape == (3, 32, 32)  # 64×128 -> 37×74 -> centre 32×32 straddles the seam
    assert out[0, :, 0].float().mean() > 200 and out[2, :, -1].float().mean() > 200


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        ImageFolderDataset(tmp_path / "does-not-exist", 32)


def test_folder_without_classes_or_images(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders") as info:
        ImageFolderDataset(tmp_path, 32)
    assert str(tmp_path) in str(info.value) and ".png" in str(info.value)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="no images") as info:
        ImageFolderDataset(tmp_path, 32, extensions=(".png",))
    assert str(tmp_path) in str(info.value) and ".png" in str(info.value)


def add_corrupt_files(folder: Path) -> None:
    (folder / "zebra" / "garbage.png").write_bytes(b"\x89PNG but not really")
    good = folder / "apple" / "c.jpeg"
    (folder / "apple" / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])


def test_corrupt_files_are_counted_and_skipped(folder):
    add_corrupt_files(folder)
    ds = ImageFolderDataset(folder, 32)
    assert len(ds) == 7
    with pytest.warns(UserWarning, match="unreadable") as record:
        items = [ds[i] for i in range(len(ds))]
    assert len(record) == 1 and ("garbage.png" in str(record[0].message) or "truncated" in str(record[0].message))
    assert ds.num_unreadable == 2
    assert all(image.shape == (3, 32, 32) for image, _ in items)


def test_verify_drops_corrupt_files_with_one_warning(folder):
    add_corrupt_files(folder)
    with pytest.warns(UserWarning, match="2 unreadable") as record:
        ds = ImageFolderDataset(folder, 32, verify=True)
    assert len(record) == 1
    assert len(ds) == 5 and ds.num_unreadable == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [ds[i] for i in range(len(ds))]


# ----------------------------------------------------------------------------- entry points

def test_get_batch_equals_stacking_items(independent, folder):
    idx = torch.tensor([5, 0, 17, 5])
    for ds in (independent, ImageFolderDataset(folder, 32)):
        idx = idx % len(ds)
        images, labels = get_batch(ds, idx)
        items = [ds[int(i)] for i in idx]
        assert torch.equal(images, torch.stack([im for im, _ in items]))
        assert labels.dtype == torch.int64 and labels.tolist() == [lab for _, lab in items]


def test_open_dataset_synthetic_splits():
    cfg = DataConfig(img_size=32, num_train=40, num_eval=12, seed=1)
    train, evaluation = open_dataset(cfg, "train"), open_dataset(cfg, "eval")
    assert isinstance(train, SyntheticSet) and len(train) == 40 and len(evaluation) == 12
    assert train.mode == "independent"
    assert not torch.equal(train.images[:12], evaluation.images)
    with pytest.raises(ValueError, match="split"):
        open_dataset(cfg, "test")


def test_open_dataset_folders(tmp_path, folder):
    flat = open_dataset(DataConfig(img_size=32, root=str(folder)), "eval")
    assert isinstance(flat, ImageFolderDataset) and flat.root == folder
    write_image(tmp_path / "split" / "train" / "a" / "x.png", (40, 40), (0, 0, 0))
    write_image(tmp_path / "split" / "val" / "a" / "y.png", (40, 40), (0, 0, 0))
    split = tmp_path / "split"
    split_cfg = DataConfig(img_size=32, root=str(split))
    assert open_dataset(split_cfg, "train").root == split / "train"
    assert open_dataset(split_cfg, "eval").root == split / "val"


def test_texture_scale_coarsens_the_textures_of_the_same_scenes(tmp_path, monkeypatch):
    from clvsmim.data import synthetic_cache_path

    monkeypatch.setenv("CLVSMIM_CACHE", str(tmp_path))
    fine = make_synthetic(64, 32, seed=3)
    coarse = make_synthetic(64, 32, seed=3, texture_scale=2.0)
    assert torch.equal(fine.shape, coarse.shape) and torch.equal(fine.texture, coarse.texture)
    assert torch.equal(fine.mask, coarse.mask)  # same scenes: labels and geometry do not depend on the scale

    def step(images):  # mean absolute difference of horizontally adjacent pixels
        x = images.float()
        return (x[..., 1:] - x[..., :-1]).abs().mean()

    assert step(coarse.images) < 0.75 * step(fine.images)
    assert synthetic_cache_path(64, 32, 3, "independent", 2.0) != synthetic_cache_path(64, 32, 3, "independent")
    assert torch.equal(load_synthetic(8, 32, seed=3, texture_scale=2.0).images, coarse.images[:8])
    with pytest.raises(ValueError, match="texture_scale must be a positive number"):
        make_synthetic(4, 32, texture_scale=0)


def test_background_contrast_changes_only_the_background_and_scales_its_spread():
    from clvsmim.data import BACKGROUND_CONTRAST

    assert DataConfig().background_contrast == BACKGROUND_CONTRAST  # the profile's default is the renderer's
    default = make_synthetic(48, 32, seed=5)
    assert_same_set(make_synthetic(48, 32, seed=5, background_contrast=BACKGROUND_CONTRAST), default)
    flat, doubled = (make_synthetic(48, 32, seed=5, background_contrast=c) for c in (0.0, 2 * BACKGROUND_CONTRAST))
    for other in (flat, doubled):  # same scenes, same foreground pixels
        assert torch.equal(other.mask, default.mask) and torch.equal(other.shape, default.shape)
        fg = default.mask.unsqueeze(1).expand_as(default.images)
        assert torch.equal(other.images[fg], default.images[fg])

    def background_spread(ds):  # per image: std of the background pixels about their mean colour, (N,)
        x, bg = ds.images.float(), (~ds.mask).unsqueeze(1).float()
        count = bg.sum((1, 2, 3))  # background pixels
        mean = (x * bg).sum((2, 3), keepdim=True) / count[:, None, None, None]
        return (((x - mean) ** 2 * bg).sum((1, 2, 3)) / (3 * count)).sqrt()

    spread = background_spread(default)
    assert spread.min() > 2  # the default background is textured
    assert background_spread(flat).max() <= 0.5  # contrast 0: one colour per image (up to uint8 rounding)
    ratio = background_spread(doubled) / spread  # the colours are mean ± contrast·(drawn half-difference)
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0), atol=0.05)
    path = synthetic_cache_path(48, 32, 5, "independent")
    assert synthetic_cache_path(48, 32, 5, "independent", background_contrast=BACKGROUND_CONTRAST) == path
    assert synthetic_cache_path(48, 32, 5, "independent", background_contrast=0.0) != path
    assert torch.equal(open_dataset(DataConfig(num_train=48, seed=5, background_contrast=0.0), "train").images,
                       flat.images)
    with pytest.raises(ValueError, match=r"background_contrast must lie in \[0, 1\], got 1.5"):
        make_synthetic(4, 32, background_contrast=1.5)
