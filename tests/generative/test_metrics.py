import math

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch
from PIL import Image

from generative.metrics import (
    _poly_mmd2_unbiased,
    frechet_distance,
    gaussian_stats,
    kid,
    psnr,
    save_image_grid,
    ssim,
)


def test_frechet_distance_identical_is_zero():
    f = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_scipy_on_random_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8)) + rng.normal(size=8)
    b = rng.normal(size=(1500, 8)) @ rng.normal(size=(8, 8))
    m1, s1 = gaussian_stats(a)
    m2, s2 = gaussian_stats(b)
    direct = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(a, b) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(direct, rel=1e-8)
    # singular covariances (dead ReLU units) stay finite and consistent
    a0, b0 = a.copy(), b.copy()
    a0[:, 0], b0[:, 0] = 0.0, 0.0
    fd = frechet_distance(a0, b0)
    assert np.isfinite(fd) and fd == pytest.approx(frechet_distance(a[:, 1:], b[:, 1:]), rel=1e-6)


def test_frechet_distance_of_shifted_gaussians_is_squared_shift():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4000, 4))
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-8)


def test_mmd_estimator_is_the_unbiased_formula():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert _poly_mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_mmd_unbiased_centred_on_zero_for_same_distribution():
    rng = np.random.default_rng(4)
    vals = np.array([_poly_mmd2_unbiased(rng.normal(size=(60, 5)), rng.normal(size=(60, 5))) for _ in range(200)])
    se = vals.std() / math.sqrt(len(vals))
    assert abs(vals.mean()) < 3.5 * se
    # a biased (V-statistic) estimate, which keeps the diagonal, would sit well above 0
    assert vals.mean() + 5 * se < 2 * np.mean([(x @ x / 5 + 1) ** 3 for x in rng.normal(size=(200, 5))]) / 60


def test_kid_near_zero_for_same_distribution_and_larger_when_shifted():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(1000, 10)), rng.normal(size=(1000, 10))
    same, same_std = kid(a, b, n_subsets=50, subset_size=200)
    shifted, _ = kid(a, b + 0.5, n_subsets=50, subset_size=200)
    assert abs(same) < 2 * same_std
    assert shifted > 20 * abs(same) and shifted > 5 * same_std


def test_psnr_known_values():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert torch.isinf(psnr(x, x)).all()
    delta = torch.tensor([0.1, 0.2, 0.5]).reshape(3, 1, 1, 1)
    expected = 10 * torch.log10(4.0 / delta.reshape(-1).double() ** 2)
    torch.testing.assert_close(psnr(x, x + delta), expected)
    torch.testing.assert_close(psnr(x, x + delta, data_range=1.0), expected - 10 * math.log10(4.0))


def test_ssim_identical_and_constant_images():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    a, b = 0.3, -0.2
    c1 = (0.01 * 2) ** 2
    lum = (2 * a * b + c1) / (a * a + b * b + c1)  # zero variances: the contrast-structure term is 1
    got = ssim(torch.full((1, 1, 12, 12), a), torch.full((1, 1, 12, 12), b))
    assert float(got) == pytest.approx(lum, rel=1e-6)


def _ssim_like_skimage(x, y, data_range):
    """skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    written out: scipy Gaussian filter (reflect), crop the (win-1)/2 border, average."""
    def filt(im):
        return scipy.ndimage.gaussian_filter(im, sigma=1.5, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = filt(x), filt(y)
    vx, vy, vxy = filt(x * x) - ux**2, filt(y * y) - uy**2, filt(x * y) - ux * uy
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s[5:-5, 5:-5].mean()


def test_ssim_matches_skimage_algorithm_on_noisy_images():
    rng = np.random.default_rng(5)
    clean = scipy.ndimage.gaussian_filter(rng.uniform(-1, 1, size=(24, 20)), 2.0) * 3
    noisy = clean + 0.2 * rng.normal(size=clean.shape)
    got = ssim(torch.from_numpy(noisy)[None, None], torch.from_numpy(clean)[None, None], data_range=2.0)
    assert float(got) == pytest.approx(_ssim_like_skimage(noisy, clean, 2.0), rel=1e-10)
    assert 0.0 < float(got) < 1.0
    # more noise, lower SSIM
    noisier = clean + 0.5 * rng.normal(size=clean.shape)
    assert float(ssim(torch.from_numpy(noisier)[None, None], torch.from_numpy(clean)[None, None])) < float(got)


def test_ssim_rejects_images_smaller_than_window():
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_save_image_grid(tmp_path):
    x = torch.linspace(-1, 1, 10 * 3 * 4 * 5).reshape(10, 3, 4, 5)
    path = save_image_grid(x, tmp_path / "grid.png", nrow=4, padding=1)
    img = Image.open(path)
    assert img.mode == "RGB" and img.size == (4 * 6 + 1, 3 * 5 + 1)
    arr = np.asarray(img)
    assert arr[1, 1, 0] == 0 and arr[1 + 2 * 5 + 3, 1 + 1 * 6 + 4, 2] == round((x[9, 2, 3, 4].item() + 1) * 127.5)
    grey = save_image_grid(torch.zeros(3, 1, 8, 8), tmp_path / "grey.png", nrow=3, scale=2)
    g = Image.open(grey)
    assert g.mode == "L" and g.size == (2 * (3 * 9 + 1), 2 * 10)
