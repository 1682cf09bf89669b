"""SDE coefficients: marginals against the moment equations and Fokker–Planck, discretisations, reverse."""

import math

import pytest
import torch

from generative.analytic import gaussian, ring_gmm_2d
from generative.sdes import VESDE, VPSDE, SubVPSDE, gaussian_noise, generators_from_seeds

SDES = [VPSDE(), SubVPSDE(), VESDE()]
IDS = ["vp", "subvp", "ve"]
T64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_drift_coef(sde, t):
    """f(x, t) = c(t) x for these SDEs; read c off the drift at x = 1."""
    return sde.drift(torch.ones(len(t), 1, dtype=T64), t)[:, 0]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_moments_solve_the_moment_odes(sde):
    # For dx = c(t) x dt + g dw: d a/dt = c a and d s²/dt = 2 c s² + g², checked by central differences.
    t = torch.linspace(0.05, 0.95, 19, dtype=T64)
    h = 1e-5
    da = (sde.mean_coef(t + h) - sde.mean_coef(t - h)) / (2 * h)
    ds2 = (sde.std(t + h) ** 2 - sde.std(t - h) ** 2) / (2 * h)
    c = _linear_drift_coef(sde, t)
    torch.testing.assert_close(da, c * sde.mean_coef(t), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ds2, 2 * c * sde.std(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-6, atol=1e-8)


def test_coefficients_match_reference_formulas():
    t = torch.tensor([0.0, 0.3, 1.0], dtype=T64)
    vp, svp, ve = VPSDE(), SubVPSDE(), VESDE()
    c = -0.25 * t**2 * 19.9 - 0.5 * t * 0.1
    torch.testing.assert_close(vp.mean_coef(t), c.exp())
    torch.testing.assert_close(vp.std(t), (1 - (2 * c).exp()).sqrt())
    torch.testing.assert_close(svp.std(t), 1 - (2 * c).exp())
    torch.testing.assert_close(svp.diffusion(t) ** 2, (0.1 + t * 19.9) * (1 - (-0.2 * t - 19.9 * t**2).exp()))
    torch.testing.assert_close(ve.std(t), 0.01 * 5000**t)
    torch.testing.assert_close(ve.diffusion(t), 0.01 * 5000**t * math.sqrt(2 * math.log(5000)))
    assert vp.eps == 1e-3 and svp.eps == 1e-3 and ve.eps == 1e-5 and vp.T == 1.0


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_mixture_marginals_solve_fokker_planck(sde):
    # ∂_t log p = -∇·f - f·∇log p + ½ g² (Δ log p + |∇log p|²) for the exact mixture p_t, in float64.
    data = ring_gmm_2d()
    g = torch.Generator().manual_seed(0)
    for tv in (0.02, 0.3, 0.8):
        x = data.sample_marginal(sde, tv, 16, g).requires_grad_(True)
        t = torch.full((16,), tv, dtype=T64)
        h = 1e-6
        dlogp_dt = (data.log_prob(x.detach(), sde, t + h) - data.log_prob(x.detach(), sde, t - h)) / (2 * h)
        score = data.score(x, sde, t)
        lap = sum(torch.autograd.grad(score[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
        f = sde.drift(x.detach(), t)
        div_f = 2 * _linear_drift_coef(sde, t)
        g2 = sde.diffusion(t) ** 2
        rhs = -div_f - (f * score).sum(-1) + 0.5 * g2 * (lap + (score**2).sum(-1))
        torch.testing.assert_close(dlogp_dt, rhs.detach(), rtol=1e-5, atol=1e-5 * g2.max().item())


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_prior(sde):
    g = torch.Generator().manual_seed(0)
    z = sde.prior_sample((20000, 3), g, dtype=T64)
    assert z.shape == (20000, 3) and z.dtype == T64
    assert abs(z.std().item() / sde.prior_std - 1) < 0.02
    ref = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z[:5]).sum(-1)
    torch.testing.assert_close(sde.prior_logp(z[:5]), ref)
    # images: any trailing shape
    assert sde.prior_logp(torch.zeros(2, 1, 4, 4, dtype=T64)).shape == (2,)


def test_discretisations_are_exact_transitions():
    t = torch.tensor([0.5, 0.9], dtype=T64)
    t_next = torch.tensor([0.4, 0.2], dtype=T64)
    x = torch.randn(2, 3, dtype=T64)
    vp, ve, svp = VPSDE(), VESDE(), SubVPSDE()
    # DDPM: x_t = sqrt(1 - β) x_{t_next} + sqrt(β) z reproduces the VP marginal: a_t² = (1-β) a_next².
    f, G = vp.discretize(x, t, t_next=t_next)
    beta = G[:, 0] ** 2
    torch.testing.assert_close((1 - beta) * vp.mean_coef(t_next) ** 2, vp.mean_coef(t) ** 2)
    torch.testing.assert_close(f, (1 - beta).sqrt()[:, None] * x - x)
    # SMLD: σ_t² = σ_next² + G².
    f, G = ve.discretize(x, t, t_next=t_next)
    assert (f == 0).all()
    torch.testing.assert_close(ve.std(t_next) ** 2 + G[:, 0] ** 2, ve.std(t) ** 2)
    # sub-VP: Euler–Maruyama, f dt and g sqrt(dt); default step T / n_steps.
    f, G = svp.discretize(x, t, 10)
    torch.testing.assert_close(f, svp.drift(x, t) * 0.1)
    torch.testing.assert_close(G[:, 0], svp.diffusion(t) * math.sqrt(0.1))
    # with n_steps the VP step is β(t)/N to first order, as the DDPM table of the official code
    _, G = vp.discretize(x, torch.tensor([0.5], dtype=T64).expand(2), 1000)
    assert abs(G[0, 0].item() ** 2 / (vp.beta(torch.tensor(0.5)).item() / 1000) - 1) < 0.01


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_reverse_sde_and_probability_flow(sde):
    data = gaussian([0.3, -1.0], [[1.0, 0.2], [0.2, 0.5]])
    score_fn = data.score_fn(sde)
    x = torch.randn(4, 2, dtype=T64)
    t = torch.full((4,), 0.4, dtype=T64)
    g2 = sde.diffusion(t)[:, None] ** 2
    rev = sde.reverse(score_fn)
    pf = sde.reverse(score_fn, probability_flow=True)
    torch.testing.assert_close(rev.drift(x, t), sde.drift(x, t) - g2 * score_fn(x, t))
    torch.testing.assert_close(pf.drift(x, t), sde.drift(x, t) - 0.5 * g2 * score_fn(x, t))
    torch.testing.assert_close(rev.diffusion(t), sde.diffusion(t))
    assert (pf.diffusion(t) == 0).all()
    f, G = sde.discretize(x, t, 100)
    rf, rG = rev.discretize(x, t, 100)
    torch.testing.assert_close(rf, f - G**2 * score_fn(x, t))
    torch.testing.assert_close(rG, G)


def test_per_sample_noise_depends_only_on_its_generator():
    big = gaussian_noise((64, 3), generators_from_seeds(range(64)), dtype=T64)
    small = gaussian_noise((1, 3), generators_from_seeds([17]), dtype=T64)
    torch.testing.assert_close(big[17:18], small, rtol=0, atol=0)
    with pytest.raises(ValueError):
        gaussian_noise((3, 2), generators_from_seeds([1, 2]))
