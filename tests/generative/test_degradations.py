"""Degradations for restoration tasks: determinism per seed, per-image reproducibility, and each kind's physics."""

import math
from pathlib import Path

import pytest
import torch

from generative.degradations import (
    DEGRADATIONS,
    Degradation,
    add_gaussian_noise,
    degrade,
    downsample,
    gaussian_blur,
    gaussian_kernel,
    get_degradation,
    image_seeds,
    inpaint,
    inpaint_mask,
    jpeg_compress,
    low_light,
    motion_blur,
    motion_blur_kernel,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RANDOM_KINDS = ("noise", "motion-blur", "inpaint", "low-light")
MNIST = Path("/work/shared/datasets/mnist.npz")


def _images(n: int = 6, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Smooth blobs plus a sharp bar: MNIST-like structure with values in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    out = torch.empty(n, c, size, size)
    for i in range(n):
        for ch in range(c):
            cy, cx = (torch.rand(2, generator=g) * size * 0.6 + size * 0.2).tolist()
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
            bar = ((xx - cx).abs() < size / 14) & (yy > size / 4) & (yy < 3 * size / 4)
            out[i, ch] = (blob + bar.float()).clamp(0, 1) * 2 - 1
    return out


def _checkerboard(size: int = 28, c: int = 1) -> torch.Tensor:
    i = torch.arange(size)
    return (((i[:, None] + i[None, :]) % 2) * 2.0 - 1.0).expand(1, c, size, size).clone()


# ------------------------------------------------------------------------------------------ shared contract
@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_deterministic_shape_dtype_and_input_untouched(kind):
    x = _images(4, 1)
    before = x.clone()
    a, b = degrade(x, kind, seed=7), degrade(x, kind, seed=7)
    assert torch.equal(x, before)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, x)
    if kind != "noise":  # noise alone is not clamped (IR-SDE)
        assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_random_kinds_differ_between_seeds_and_between_images(kind):
    x = _images(1).expand(3, 1, 28, 28).clone()  # three identical images
    a, b = degrade(x, kind, seed=0), degrade(x, kind, seed=1)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_rows_do_not_depend_on_batch_composition(kind):
    x = _images(6, 3, 32)
    whole = degrade(x, kind, seed=3)
    part = degrade(x[[3, 4]], kind, seed=3, indices=[3, 4])
    assert torch.equal(part, whole[3:5])
    single = degrade(x[5:6], kind, seed=3, indices=torch.tensor([5]))
    assert torch.equal(single, whole[5:6])
    if kind in RANDOM_KINDS:  # the index, not the position in the batch, picks the randomness
        assert not torch.equal(degrade(x[[3, 4]], kind, seed=3), part)


def test_image_seeds_distinct_and_validated():
    seeds = image_seeds(0, None, 4) + image_seeds(1, None, 4)
    assert len(set(seeds)) == 8
    assert image_seeds(5, [2, 7], 2) == [image_seeds(5, None, 8)[2], image_seeds(5, None, 8)[7]]
    for bad in (dict(seed=-1, indices=None, n=2), dict(seed=0, indices=[0], n=2), dict(seed=0, indices=[-1], n=1)):
        with pytest.raises(ValueError):
            image_seeds(**bad)


# ------------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [25, 50])
def test_noise_std_is_two_sigma_over_255_and_unclamped(sigma):
    z = torch.zeros(64, 1, 28, 28)
    d = add_gaussian_noise(z, seed=0, sigma=sigma) - z
    assert abs(float(d.mean())) < 0.02 * (2 * sigma / 255)  # ~4.5 standard errors
    assert float(d.std()) == pytest.approx(2 * sigma / 255, rel=0.02)
    ones = torch.ones(8, 1, 28, 28)
    assert float(add_gaussian_noise(ones, seed=0, sigma=sigma).max()) > 1.0  # not clamped


# -------------------------------------------------------------------------------------------------- blur
def test_blur_kernels_sum_to_one_and_are_symmetric():
    for k, s in ((3, 0.5), (7, 1.5), (9, 3.0)):
        g = gaussian_kernel(k, s)
        assert g.shape == (k, k) and float(g.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(g, g.flip(0)) and torch.equal(g, g.T) and g.argmax() == (k * k) // 2
    for length in (1, 4, 7, 9):
        for angle in (0.0, 0.3, math.pi / 4, 2.0):
            m = motion_blur_kernel(length, angle)
            assert m.shape == (length | 1, length | 1) and float(m.sum()) == pytest.approx(1.0, abs=1e-12)
            assert torch.allclose(m, m.flip(0, 1))  # point-symmetric: correlation == convolution
    assert torch.equal(motion_blur_kernel(1, 1.0), torch.ones(1, 1, dtype=torch.float64))
    horizontal = motion_blur_kernel(7, 0.0)
    assert torch.allclose(horizontal[3], torch.full((7,), 1 / 7, dtype=torch.float64))
    vertical = motion_blur_kernel(7, math.pi / 2)
    assert torch.allclose(vertical[:, 3], torch.full((7,), 1 / 7, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("kind", ["blur", "motion-blur"])
def test_blur_keeps_constants_and_kills_high_frequencies(kind):
    const = torch.full((3, 3, 32, 32), 0.37)
    assert torch.allclose(degrade(const, kind, seed=0), const, atol=1e-6)
    cb = _checkerboard(28)
    out = degrade(cb, kind, seed=0)
    assert out.shape == cb.shape
    assert float(out.var()) < 0.05 * float(cb.var())
    assert torch.allclose(out.mean(), cb.mean(), atol=0.02)  # mass preserved (reflect padding)


def test_blur_default_kernel_size_scales_with_the_image():
    # explicit kernel_size equal to the documented default gives the same result
    for size, k in ((28, 7), (32, 9), (8, 3)):
        x = _images(2, 1, size)
        assert torch.equal(gaussian_blur(x), gaussian_blur(x, kernel_size=k))
    with pytest.raises(ValueError, match="too large"):
        gaussian_blur(_images(1, 1, 8), kernel_size=17)


def test_motion_blur_smears_along_one_direction():
    x = torch.full((1, 1, 29, 29), -1.0)
    x[0, 0, 14, 14] = 1.0  # a point: its blurred image is the (shifted) kernel itself
    out = motion_blur(x, seed=4, length=9)
    support = (out[0, 0] > -1 + 1e-6).nonzero().float()
    spread = torch.linalg.svdvals(support - support.mean(0))
    assert spread[0] > 3 * spread[1]  # a line, not a blob


# ----------------------------------------------------------------------------------------------- inpaint
@pytest.mark.parametrize("size", [28, 32])
def test_inpaint_mask_fraction_and_pixels(size):
    x = _images(200, 3, size)
    mask = inpaint_mask(x.shape, seed=0)
    assert mask.shape == (200, 1, size, size) and mask.dtype == torch.bool
    frac = mask.float().mean((1, 2, 3))
    assert float(frac.min()) >= 0.23 and float(frac.max()) <= 0.27
    out = inpaint(x, seed=0)
    full = mask.expand_as(x)
    assert torch.equal(out[~full], x[~full])
    assert bool((out[full] == -1.0).all())
    # one box: the masked pixels of each image fill their bounding box exactly
    rows, cols = mask[0, 0].any(1).nonzero(), mask[0, 0].any(0).nonzero()
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert int(mask[0].sum()) == int(box)


def test_inpaint_strokes_and_fill():
    x = _images(20, 1)
    box = inpaint_mask(x.shape, seed=2)
    both = inpaint_mask(x.shape, seed=2, strokes=3)
    assert bool((both | ~box).all())  # the box does not move when strokes are added
    assert int(both.sum()) > int(box.sum())
    out = inpaint(x, seed=2, strokes=3, fill=0.5)
    assert bool((out[both.expand_as(x)] == 0.5).all())


# --------------------------------------------------------------------------------------------- low light
def test_low_light_darkens_and_clamps():
    x = -_images(8, 3, 32)  # mostly bright
    out = low_light(x, seed=0)
    assert float((out + 1).mean()) < 0.5 * float((x + 1).mean())  # brightness on [0, 1] more than halved
    assert out.min() >= -1 and out.max() <= 1
    clean = low_light(x, seed=0, sigma=0)  # no noise: exactly the tone curve
    expected = ((x + 1) / 2) ** 2 * 0.3 * 2 - 1
    assert torch.allclose(clean, expected, atol=1e-6)
    assert float((out - clean).std()) == pytest.approx(2 * 5 / 255, rel=0.15)  # clamping at 0 trims a bit


# -------------------------------------------------------------------------------------------------- jpeg
def _jpeg_errors(x: torch.Tensor, qualities) -> list[float]:
    return [float(((jpeg_compress(x, quality=q) - x) ** 2).mean()) for q in qualities]


def test_jpeg_quality_orders_the_error():
    x = _images(8, 1)
    q10 = jpeg_compress(x, quality=10)
    assert not torch.equal(q10, x)
    q100 = jpeg_compress(x, quality=100)
    assert float((q100 - x).abs().max()) < 0.06  # a few grey levels
    errors = _jpeg_errors(x, (10, 30, 75, 100))
    assert errors == sorted(errors, reverse=True) and errors[0] > 10 * errors[-1]
    rgb = _images(2, 3, 32)
    assert float((jpeg_compress(rgb, quality=95) - rgb).abs().mean()) < float(
        (jpeg_compress(rgb, quality=10) - rgb).abs().mean())
    on_grid = (q10 + 1) * 127.5  # decoded bytes
    assert torch.allclose(on_grid, on_grid.round(), atol=1e-4)


@pytest.mark.skipif(not MNIST.is_file(), reason="shared MNIST not present")
def test_jpeg_on_real_mnist(monkeypatch):
    from generative.datasets import load_image_dataset

    monkeypatch.setenv("SUITE_DATA_DIR", str(MNIST.parent))
    x = load_image_dataset("mnist", "test").x[:16]
    errors = _jpeg_errors(x, (10, 50, 95))
    assert errors[0] > errors[1] > errors[2]


def test_jpeg_needs_one_or_three_channels():
    with pytest.raises(ValueError, match="channels"):
        jpeg_compress(torch.zeros(1, 2, 8, 8))


# -------------------------------------------------------------------------------------------- downsample
def test_downsample_shape_constants_blocks_and_checkerboard():
    x = _images(3, 3, 32)
    assert downsample(x).shape == x.shape
    assert downsample(_images(2, 1, 8)).shape == (2, 1, 8, 8)  # 8x8 digits through 2x2: allowed
    const = torch.full((2, 3, 28, 28), -0.4)
    assert torch.allclose(downsample(const), const, atol=1e-6)
    r = torch.arange(8, dtype=torch.float32)
    cells = (torch.sin(r[None] / 8 * math.pi) * torch.cos(r[:, None] / 8 * math.pi))  # smooth 8x8 cell values
    blocks = cells.repeat_interleave(4, 0).repeat_interleave(4, 1).expand(1, 1, 32, 32)
    assert float((downsample(blocks) - blocks).abs().mean()) < 0.1
    cb = _checkerboard(32)
    lost = downsample(cb)
    assert float((lost - cb).abs().mean()) > 0.9 and float(lost.abs().max()) < 0.1
    assert float((downsample(x, factor=2) - x).abs().mean()) < float((downsample(x, factor=4) - x).abs().mean())
    with pytest.raises(ValueError, match="too large"):
        downsample(_images(1, 1, 8), factor=16)


# ------------------------------------------------------------------------------------------ spec, errors
def test_names_params_and_spec():
    assert get_degradation("noise", sigma=50).name == "denoise50"
    assert get_degradation("noise").name == "denoise25"
    assert get_degradation("jpeg").name == "jpeg10"
    assert get_degradation("downsample").name == "sr4"
    assert [get_degradation(k).name for k in ("blur", "motion-blur", "inpaint", "low-light")] == [
        "blur", "motion-blur", "inpaint", "low-light"]
    assert get_degradation("blur", sigma=2).name == "blur-sigma2"
    spec = get_degradation("noise", sigma=50)
    assert spec == Degradation("noise", (("sigma", 50.0),)) and spec.params == (("sigma", 50.0),)
    assert get_degradation("inpaint").params_dict == {"area": 0.25, "fill": -1.0, "strokes": 0}
    x = _images(3)
    assert torch.equal(spec.apply(x, 1), add_gaussian_noise(x, 1, sigma=50))
    assert torch.equal(degrade(x, "jpeg", 0, quality=30), jpeg_compress(x, quality=30))


@pytest.mark.parametrize(("kind", "close"), [("jpg", "jpeg"), ("motion_blur", "motion-blur"),
                                             ("denoise", "noise"), ("lowlight", "low-light")])
def test_unknown_kind_names_a_close_match(kind, close):
    with pytest.raises(ValueError, match=f"did you mean {close}") as info:
        get_degradation(kind)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kind", "params"), [
    ("noise", dict(sigma=-1)), ("noise", dict(sigma=float("nan"))), ("noise", dict(sgima=25)),
    ("blur", dict(kernel_size=4)), ("blur", dict(sigma=0)), ("blur", dict(kernel_size=2.5)),
    ("motion-blur", dict(length=0)), ("inpaint", dict(area=1.5)), ("inpaint", dict(fill=2.0)),
    ("inpaint", dict(strokes=-1)), ("low-light", dict(gamma=0)), ("low-light", dict(scale=2.0)),
    ("jpeg", dict(quality=0)), ("jpeg", dict(quality=101)), ("jpeg", dict(quality=50.5)),
    ("jpeg", dict(quality=True)), ("downsample", dict(factor=0)), ("downsample", dict(factor=2.0)),
])
def test_invalid_params_are_rejected(kind, params):
    with pytest.raises(ValueError, match=kind):
        get_degradation(kind, **params)
    if "sgima" not in params:  # the functions validate their own (known) parameters too
        with pytest.raises(ValueError):
            DEGRADATIONS[kind](_images(1), 0, **params)


def test_unknown_param_suggests_the_valid_one():
    with pytest.raises(ValueError, match="did you mean 'sigma'"):
        get_degradation("noise", sgima=25)
