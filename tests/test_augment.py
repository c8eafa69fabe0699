"""Batched augmentation and masking: determinism, batch-split independence, geometry."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from clvsmim.data import augment as A
from clvsmim.rng import hash_uniform

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def seeds() -> torch.Tensor:
    return torch.arange(12, dtype=torch.int64) * 7919 + 3


# ------------------------------------------------------------------ determinism / batch split
def _views(images, seeds):
    v1, v2 = A.moco_views(images, seeds, 32)
    return {
        "moco1": v1, "moco2": v2,
        "simmim": A.simmim_view(images, seeds, 32),
        "mae": A.mae_view(images, seeds, 32),
        "crop24": A.random_resized_crop(images, seeds, 24, stream=5),
    }


def test_views_are_deterministic_and_seed_dependent(images, seeds):
    a, b = _views(images, seeds), _views(images, seeds)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = _views(images, seeds + 1)
    for k in a:
        assert not torch.allclose(a[k], c[k]), k
    assert not torch.allclose(a["moco1"], a["moco2"])  # the two views are independent


def test_views_do_not_depend_on_batch_split(images, seeds):
    full = _views(images, seeds)
    for i in (0, 5, 11):
        single = _views(images[i:i + 1], seeds[i:i + 1])
        for k in full:
            torch.testing.assert_close(full[k][i:i + 1], single[k], atol=1e-5, rtol=0, msg=k)
    half = _views(images[6:], seeds[6:])
    for k in full:
        torch.testing.assert_close(full[k][6:], half[k], atol=1e-5, rtol=0, msg=k)


def test_masks_do_not_depend_on_batch_split(seeds):
    full = A.simmim_mask(seeds, 8, 4, 8, 0.6)
    keep, mask, restore = A.mae_masking(seeds, len(seeds), 64, 0.75)
    for i in (0, 7):
        assert torch.equal(full[i:i + 1], A.simmim_mask(seeds[i:i + 1], 8, 4, 8, 0.6))
        k1, m1, r1 = A.mae_masking(seeds[i:i + 1], 1, 64, 0.75)
        assert torch.equal(keep[i:i + 1], k1) and torch.equal(mask[i:i + 1], m1)
        assert torch.equal(restore[i:i + 1], r1)


def test_view_shapes_and_normalisation(images, seeds):
    v1, v2 = A.moco_views(images, seeds, 24)
    assert v1.shape == v2.shape == (12, 3, 24, 24) and v1.dtype == torch.float32
    lo = (0 - torch.tensor(A.IMAGENET_MEAN)) / torch.tensor(A.IMAGENET_STD)
    hi = (1 - torch.tensor(A.IMAGENET_MEAN)) / torch.tensor(A.IMAGENET_STD)
    for v in (v1, v2):
        assert (v >= lo.view(1, 3, 1, 1) - 1e-5).all() and (v <= hi.view(1, 3, 1, 1) + 1e-5).all()
    torch.testing.assert_close(A.eval_view(images), A.normalize(images.float() / 255))
    torch.testing.assert_close(A.denormalize(A.normalize(images)), images.float() / 255, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ crop geometry
def test_full_crop_without_flip_is_identity(images, seeds):
    out = A.random_resized_crop(images, seeds, 32, scale=(1.0, 1.0), flip=False)
    torch.testing.assert_close(out, images.float() / 255, atol=1e-5, rtol=0)


def test_flip_flag_reverses_columns(images, seeds):
    many = torch.arange(200, dtype=torch.int64)
    flips = A.crop_params(many, 32, 32, scale=(1.0, 1.0), flip=True, stream=9).flip
    assert 60 < int(flips.sum()) < 140  # p = 0.5
    out = A.random_resized_crop(images, seeds, 32, scale=(1.0, 1.0), flip=True, stream=9)
    flags = A.crop_params(seeds, 32, 32, scale=(1.0, 1.0), flip=True, stream=9).flip
    assert flags.any() and not flags.all()
    x = images.float() / 255
    for i in range(len(seeds)):
        expected = x[i].flip(-1) if flags[i] else x[i]
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)
    assert not A.crop_params(many, 32, 32, flip=False).flip.any()


def test_crop_samples_the_box_bilinearly(seeds):
    """On a horizontal / vertical ramp, bilinear sampling is exact: output pixel k of the
    crop must read input position ``left + (k + 0.5)·w/out − 0.5`` (pixel-centre convention)."""
    h = w = 32
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(len(seeds), 1, h, w)
    rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(len(seeds), 1, h, w)
    ramp = torch.cat([cols, rows, cols * 0], dim=1) / (w - 1)
    out_size = 20
    out = A.random_resized_crop(ramp, seeds, out_size, scale=(0.2, 0.9), flip=True, stream=3)
    box = A.crop_params(seeds, h, w, scale=(0.2, 0.9), flip=True, stream=3)
    k = torch.arange(out_size, dtype=torch.float32) + 0.5
    for i in range(len(seeds)):
        xs = box.left[i] + k * box.width[i] / out_size - 0.5
        if box.flip[i]:
            xs = xs.flip(0)
        ys = box.top[i] + k * box.height[i] / out_size - 0.5
        torch.testing.assert_close(out[i, 0, 0], xs.clamp(0, w - 1) / (w - 1), atol=1e-4, rtol=0)
        torch.testing.assert_close(out[i, 1, :, 0], ys.clamp(0, h - 1) / (h - 1), atol=1e-4, rtol=0)


def test_crop_params_respect_scale_and_ratio():
    many = torch.arange(2000, dtype=torch.int64)
    box = A.crop_params(many, 40, 30, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    area = box.height * box.width / (40 * 30)
    aspect = box.width / box.height
    assert (area <= 1 + 1e-5).all() and (area >= 0.08 - 1e-5).all()
    assert (aspect >= 3 / 4 - 1e-4).all() and (aspect <= 4 / 3 + 1e-4).all()
    assert (box.top >= 0).all() and (box.left >= 0).all()
    assert (box.top + box.height <= 40 + 1e-4).all() and (box.left + box.width <= 30 + 1e-4).all()
    assert area.min() < 0.15 and area.max() > 0.9  # spans the range


# ------------------------------------------------------------------ colour ops
def test_colour_ops_match_torchvision():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 16, 16, generator=g)
    x[0] = 0.4  # grey image: hue undefined
    x[1, :, :4] = x[1, 0:1, :4]  # grey rows
    f = 0.6 + 0.8 * torch.rand(6, generator=g)
    hue = 0.2 * torch.rand(6, generator=g) - 0.1
    for mine, ref, fac in [(A.adjust_brightness, TF.adjust_brightness, f), (A.adjust_contrast, TF.adjust_contrast, f),
                           (A.adjust_saturation, TF.adjust_saturation, f), (A.adjust_hue, TF.adjust_hue, hue)]:
        expected = torch.stack([ref(x[i], float(fac[i])) for i in range(6)])
        torch.testing.assert_close(mine(x, fac), expected, atol=2e-5, rtol=0, msg=mine.__name__)


def test_colour_augmentations_probabilities(seeds):
    x = A.to_float(torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8))
    assert torch.equal(A.color_jitter(x, seeds, p=0.0), x)
    assert not torch.allclose(A.color_jitter(x, seeds, p=1.0), x)
    gray = A.random_grayscale(x, seeds, p=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert torch.equal(A.random_grayscale(x, seeds, p=0.0), x)
    sol = A.random_solarize(x, seeds, p=1.0)
    torch.testing.assert_close(sol, torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(A.gaussian_blur(x, seeds, p=0.0), x)
    blurred = A.gaussian_blur(x, seeds, p=1.0, sigma=(1.0, 2.0))
    assert (blurred.std(dim=(2, 3)) < x.std(dim=(2, 3))).all()
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.03, rtol=0)
    flat = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(A.gaussian_blur(flat, seeds[:2], p=1.0), flat)
    # MoCo's asymmetric blur: view 1 always blurred, view 2 rarely (p = 0.1)
    many = torch.arange(500)
    assert (hash_uniform(many, 2, A.MOCO_VIEW_STREAMS[1] + 3)[:, 0] < 0.1).float().mean() < 0.2


def test_gaussian_blur_kernel_is_a_gaussian():
    x = torch.zeros(1, 3, 15, 15)
    x[..., 7, 7] = 1.0
    out = A.gaussian_blur(x, torch.tensor([4]), p=1.0, sigma=(1.5, 1.5))
    taps = torch.arange(-5, 6, dtype=torch.float32)  # radius ceil(3·sigma) = 5
    k = torch.exp(-0.5 * (taps / 1.5) ** 2)
    k = k / k.sum()
    torch.testing.assert_close(out[0, 0, 2:13, 2:13], torch.outer(k, k), atol=1e-6, rtol=0)
    assert out[0, 0].sum().sub(1).abs() < 1e-5 and torch.equal(out[0, 0], out[0, 2])


# ------------------------------------------------------------------ masking
@pytest.mark.parametrize("grid,patch,mask_patch,ratio", [(8, 4, 8, 0.6), (4, 8, 16, 0.6), (14, 16, 32, 0.6),
                                                         (8, 4, 4, 0.3)])
def test_simmim_mask_counts_and_blocks(seeds, grid, patch, mask_patch, ratio):
    mask = A.simmim_mask(seeds, grid, patch, mask_patch, ratio)
    assert mask.shape == (len(seeds), grid, grid) and mask.dtype == torch.bool
    scale = mask_patch // patch
    side = grid // scale
    blocks = mask.view(len(seeds), side, scale, side, scale)
    assert (blocks.all(dim=(2, 4)) == blocks.any(dim=(2, 4))).all()  # constant within a mask patch
    per_block = blocks.all(dim=(2, 4)).flatten(1).sum(1)
    assert (per_block == round(ratio * side * side)).all()
    assert not (mask == mask[:1]).all()  # differs across samples


def test_simmim_mask_bad_sizes_raise():
    with pytest.raises(ValueError, match=r"mask_patch_size \(6 px\).*patch size \(4 px\)"):
        A.simmim_mask(torch.arange(2), 8, 4, 6, 0.6)
    with pytest.raises(ValueError, match=r"image size 40 px.*mask_patch_size \(16 px\)"):
        A.simmim_mask(torch.arange(2), 10, 4, 16, 0.6)
    with pytest.raises(ValueError, match="mask_ratio"):
        A.simmim_mask(torch.arange(2), 8, 4, 8, 1.5)


@pytest.mark.parametrize("n,ratio", [(64, 0.75), (16, 0.6), (49, 0.75), (10, 0.0)])
def test_mae_masking(seeds, n, ratio):
    b = len(seeds)
    keep, mask, restore = A.mae_masking(seeds, b, n, ratio)
    k = n - round(n * ratio)
    assert keep.shape == (b, k) and mask.shape == (b, n) and restore.shape == (b, n)
    assert (mask.sum(1) == n - k).all() and mask.dtype == torch.float32
    assert (mask.gather(1, keep) == 0).all()
    shuffle = restore.argsort(dim=1)
    assert torch.equal(shuffle[:, :k], keep)
    x = torch.randn(b, n)
    assert torch.equal(x.gather(1, shuffle).gather(1, restore), x)  # ids_restore undoes the shuffle
    assert torch.equal(restore.sort(dim=1).values, torch.arange(n).expand(b, n))


def test_mae_masking_bad_arguments():
    with pytest.raises(ValueError, match="no visible token"):
        A.mae_masking(torch.arange(3), 3, 16, 1.0)
    with pytest.raises(ValueError, match="3 seeds for a batch of 4"):
        A.mae_masking(torch.arange(3), 4, 16, 0.5)
    with pytest.raises(ValueError, match="seeds for a batch"):
        A.moco_views(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(3), 8)


def test_patchify_roundtrip():
    x = torch.randn(2, 3, 16, 24)
    p = A.patchify(x, 8)
    assert p.shape == (2, 6, 192)
    torch.testing.assert_close(p[0, 1], x[0, :, 0:8, 8:16].permute(1, 2, 0).reshape(-1))
    assert torch.equal(A.unpatchify(p, 8, (2, 3)), x)
    with pytest.raises(ValueError, match="not divisible by patch size"):
        A.patchify(x, 5)


def test_batched_moco_views_equal_one_pass_per_view(images, seeds):
    v1, v2 = A.moco_views(images, seeds, 24, 0.2)
    s = A.blur_sigma_for(24)
    for view, (stream, blur_p, sol_p) in zip((v1, v2), zip(A.MOCO_VIEW_STREAMS, A.MOCO_BLUR_P, A.MOCO_SOLARIZE_P)):
        torch.testing.assert_close(view, A.moco_view(images, seeds, 24, 0.2, blur_p, sol_p, stream, s),
                                   atol=1e-5, rtol=0)
    streams = torch.tensor([3, 9, 3])
    rows = hash_uniform(seeds[:3], 4, streams)
    for i in range(3):
        assert torch.equal(rows[i:i + 1], hash_uniform(seeds[i:i + 1], 4, int(streams[i])))
