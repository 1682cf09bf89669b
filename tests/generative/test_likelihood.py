"""Probability-flow likelihoods against the exact log-density of Gaussian data (exact score)."""

import math

import pytest
import torch

from generative.analytic import gaussian
from generative.likelihood import (
    IMAGE_BPD_OFFSET,
    bits_per_dim,
    dequantize,
    image_bits_per_dim,
    log_likelihood,
)
from generative.sdes import VESDE, VPSDE, SubVPSDE, generators_from_seeds

T64 = torch.float64
D = 8


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    """N(m, Σ) in R^8 with a full covariance (so the Hutchinson estimate is not trivially exact)."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(D, D, generator=g, dtype=T64)
    m = 0.5 * torch.randn(D, generator=g, dtype=T64)
    return gaussian(m, 0.1 * A @ A.T / D + 0.5 * torch.eye(D, dtype=T64))


def _exact_bpd(data, sde, x):
    return -data.log_prob(x, sde, sde.eps) / (D * math.log(2))


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_exact_divergence_recovers_log_density(sde):
    data = _data()
    x = data.sample_marginal(sde, sde.eps, 32, torch.Generator().manual_seed(0))
    res = log_likelihood(data.score_fn(sde), sde, x, exact_divergence=True)
    # change of variables with the exact p_T: only the ODE error remains
    lp = data.log_prob(res.z, sde, sde.T) + res.delta_logp
    torch.testing.assert_close(lp, data.log_prob(x, sde, sde.eps), rtol=0, atol=1e-3)
    # with the model's prior N(0, σ_T² I) (≈ p_T): bits/dim within 0.01 per sample
    bpd = -res.logp / (D * math.log(2))
    assert (bpd - _exact_bpd(data, sde, x)).abs().max() < 0.02
    if not isinstance(sde, VESDE):
        assert (bpd - _exact_bpd(data, sde, x)).abs().max() < 0.01


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_hutchinson_bits_per_dim_within_0_01(sde):
    data = _data()
    x = data.sample_marginal(sde, sde.eps, 2048, torch.Generator().manual_seed(0))
    bpd = bits_per_dim(data.score_fn(sde), sde, x, generator=torch.Generator().manual_seed(1))
    exact = _exact_bpd(data, sde, x)
    err = bpd - exact
    assert err.std() > 1e-3  # the estimator is noisy per sample (the test is not trivially exact) ...
    assert abs(err.mean().item()) < 0.01  # ... and unbiased: its batch mean is within 0.01 bits/dim


def test_more_probes_reduce_variance_and_seeds_are_per_sample():
    data, sde = _data(), VPSDE()
    x = data.sample_marginal(sde, sde.eps, 256, torch.Generator().manual_seed(0))
    exact = _exact_bpd(data, sde, x)
    one = bits_per_dim(data.score_fn(sde), sde, x, generator=torch.Generator().manual_seed(1))
    four = bits_per_dim(data.score_fn(sde), sde, x, generator=torch.Generator().manual_seed(1), n_probes=4)
    assert (four - exact).std() < 0.7 * (one - exact).std()
    seeds = torch.arange(256)
    a = bits_per_dim(data.score_fn(sde), sde, x, generator=seeds)
    b = bits_per_dim(data.score_fn(sde), sde, x[3:4], generator=seeds[3:4])
    torch.testing.assert_close(a[3:4], b, rtol=1e-8, atol=1e-8)


def test_dequantisation_and_image_offset():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (4, 1, 2, 4), generator=g, dtype=torch.uint8)
    y = dequantize(imgs, torch.Generator().manual_seed(1))
    assert y.shape == imgs.shape and y.min() >= -1 and y.max() < 1
    k = imgs.double()
    assert ((y.double() + 1) * 128 - k).min() >= 0 and ((y.double() + 1) * 128 - k).max() < 1
    torch.testing.assert_close(dequantize(imgs.double() / 255, torch.Generator().manual_seed(1)), y.double(),
                               check_dtype=False)
    # image bpd = continuous bpd of the dequantised data + 7, with the same generator stream
    data, sde = _data(), VPSDE()
    imgs = torch.randint(0, 256, (3, 1, 2, 4), generator=g, dtype=torch.uint8)
    ref_x = dequantize(imgs, generators_from_seeds([5, 6, 7])).double()
    got = image_bits_per_dim(data.score_fn(sde), sde, imgs.double() / 255, generator=[5, 6, 7],
                             exact_divergence=True)
    ref = bits_per_dim(data.score_fn(sde), sde, ref_x, exact_divergence=True) + IMAGE_BPD_OFFSET
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
