"""Exact mixtures: densities, scores, sampling and the exact distances."""

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from generative.analytic import (
    GaussianMixture,
    gaussian,
    gaussian_kl,
    gaussian_w2,
    gmm_64d,
    mmd2_to_mixture,
    ring_gmm_2d,
)
from generative.sdes import VESDE, VPSDE, SubVPSDE

T64 = torch.float64
SDES = [VPSDE(), SubVPSDE(), VESDE()]
IDS = ["vp", "subvp", "ve"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _small_full_mixture():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(3, 4, 4, generator=g, dtype=T64)
    covs = A @ A.transpose(-1, -2) / 4 + 0.1 * torch.eye(4, dtype=T64)
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3]), torch.randn(3, 4, generator=g, dtype=T64), covs)


def _torch_mixture(mix: GaussianMixture, a: float, s: float):
    eye = torch.eye(mix.dim, dtype=T64)
    return MixtureSameFamily(Categorical(probs=mix.weights),
                             MultivariateNormal(a * mix.means, a**2 * mix.covs + s**2 * eye))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_log_prob_matches_torch_distributions(sde):
    mix = _small_full_mixture()
    g = torch.Generator().manual_seed(0)
    for tv in (0.0, 0.1, 0.7):
        x = mix.sample_marginal(sde, tv, 50, g)
        tt = torch.tensor([tv], dtype=T64)
        ref = _torch_mixture(mix, sde.mean_coef(tt).item(), sde.std(tt).item()).log_prob(x)
        torch.testing.assert_close(mix.log_prob(x, sde, tv), ref)
        torch.testing.assert_close(mix.marginal(sde, tv).log_prob(x), ref)
    torch.testing.assert_close(mix.log_prob(x), _torch_mixture(mix, 1.0, 0.0).log_prob(x))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_score_is_gradient_of_log_prob(sde):
    for mix in (_small_full_mixture(), ring_gmm_2d()):
        g = torch.Generator().manual_seed(1)
        t = torch.rand(40, generator=g, dtype=T64) * 0.9 + 0.01  # per-sample times
        x = torch.cat([mix.sample_marginal(sde, t[i:i + 1], 1, g) for i in range(40)])
        xr = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(mix.log_prob(xr, sde, t).sum(), xr)
        torch.testing.assert_close(mix.score(x, sde, t), auto, rtol=1e-9, atol=1e-9)
        # central differences, independent of autograd
        h = 1e-6
        e = torch.zeros_like(x)
        e[:, 0] = h
        fd = (mix.log_prob(x + e, sde, t) - mix.log_prob(x - e, sde, t)) / (2 * h)
        torch.testing.assert_close(mix.score(x, sde, t)[:, 0], fd, rtol=1e-5, atol=1e-5)


def test_score_64d_and_image_shapes():
    mix = gmm_64d()
    sde = VPSDE()
    g = torch.Generator().manual_seed(0)
    x = mix.sample_marginal(sde, 0.05, 8, g)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(mix.log_prob(xr, sde, 0.05).sum(), xr)
    torch.testing.assert_close(mix.score(x, sde, 0.05), auto)
    img = x.reshape(8, 1, 8, 8)
    assert mix.score(img, sde, torch.full((8,), 0.05, dtype=T64)).shape == img.shape


def test_sampling_moments_and_per_sample_generators():
    mix = ring_gmm_2d()
    x = mix.sample(200_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), mix.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(x.T.cov(), mix.cov(), atol=0.03, rtol=0)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    big = mix.sample(10, gens(range(10)))
    torch.testing.assert_close(mix.sample(1, gens([7])), big[7:8], rtol=0, atol=0)


def test_gaussian_kl_and_w2():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(2, 3, 3, generator=g, dtype=T64)
    S0, S1 = A @ A.T + 0.5 * torch.eye(3, dtype=T64), B @ B.T + 0.5 * torch.eye(3, dtype=T64)
    m0, m1 = torch.randn(2, 3, generator=g, dtype=T64)
    ref = torch.distributions.kl_divergence(MultivariateNormal(m0, S0), MultivariateNormal(m1, S1))
    torch.testing.assert_close(gaussian_kl(m0, S0, m1, S1), ref)
    assert abs(gaussian_kl(m0, S0, m0, S0).item()) < 1e-12
    # commuting (diagonal) covariances: W2² = |Δm|² + Σ (sqrt a_i - sqrt b_i)²
    a, b = torch.tensor([1.0, 4.0], dtype=T64), torch.tensor([9.0, 0.25], dtype=T64)
    w2 = gaussian_w2(torch.zeros(2), torch.diag(a), torch.tensor([3.0, 4.0]), torch.diag(b))
    assert abs(w2.item() - math.sqrt(25 + 4 + 2.25)) < 1e-10
    assert gaussian_w2(m0, S0, m0, S0).item() < 1e-6
    w01, w10 = gaussian_w2(m0, S0, m1, S1), gaussian_w2(m1, S1, m0, S0)
    torch.testing.assert_close(w01, w10)


def test_mmd2_unbiased_and_matches_closed_form():
    p = gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]])
    ell = 0.7
    # exact samples: unbiased estimate of 0, within a few standard errors
    vals = torch.stack([mmd2_to_mixture(p.sample(2000, torch.Generator().manual_seed(s)), p, ell)
                        for s in range(5)])
    assert vals.mean().abs() < 3e-4
    # q = p shifted by δ: MMD² = 2 c (1 - exp(-½ δᵀ(2Σ + ℓ²I)⁻¹ δ)), c = ℓ^D / sqrt(det(2Σ + ℓ²I))
    delta = torch.tensor([0.3, -0.2], dtype=T64)
    S = 2 * p.covs[0] + ell**2 * torch.eye(2, dtype=T64)
    c = ell**2 / torch.linalg.det(S).sqrt()
    exact = 2 * c * (1 - torch.exp(-0.5 * delta @ torch.linalg.solve(S, delta)))
    x = p.sample(4000, torch.Generator().manual_seed(9)) + delta
    est = mmd2_to_mixture(x, p, ell)
    assert abs(est.item() - exact.item()) < 0.1 * exact.item(), (est.item(), exact.item())
