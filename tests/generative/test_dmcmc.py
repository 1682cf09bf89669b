"""The sampler registry, Karras integrators and Denoising MCMC, checked against exact answers."""

import math

import pytest
import torch

from generative.analytic import GaussianMixture, gaussian, mmd2_to_mixture, ring_gmm_2d
from generative.samplers import REGISTRY, ScoreModel, call_sampler, get_sampler
from generative.samplers.dmcmc import integrator_schedule, ve_grid
from generative.samplers.karras import karras_sigmas
from generative.sdes import VESDE, VPSDE

T64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _ring_model(sde):
    mix = ring_gmm_2d()
    grid = ve_grid(sde)
    return mix, ScoreModel(mix.score_fn(sde), sde, lambda x: mix.noise_level_log_probs(x, grid), grid)


def test_exact_classifier_is_bayes_rule_on_a_1d_mixture():
    w, m, s2 = torch.tensor([0.3, 0.7]), torch.tensor([[-1.0], [2.0]]), torch.tensor([0.25, 0.5])
    mix = GaussianMixture(w, m, s2.view(2, 1, 1))
    sigmas = torch.tensor([0.05, 0.3, 1.0, 4.0], dtype=T64)
    x = torch.tensor([[-1.2], [0.4], [2.5], [9.0]], dtype=T64)
    got = mix.noise_level_log_probs(x, sigmas).exp()
    # by hand: p_σ(x) = Σ_k w_k N(x; m_k, s_k² + σ²), p(j | x) = p_σj(x) / Σ_i p_σi(x)
    dens = torch.zeros(4, 4, dtype=T64)
    for j, sg in enumerate(sigmas):
        for k in range(2):
            var = float(s2[k]) + float(sg) ** 2
            dens[:, j] += float(w[k]) * torch.exp(-(x[:, 0] - float(m[k, 0])) ** 2 / (2 * var)) / math.sqrt(
                2 * math.pi * var)
    torch.testing.assert_close(got, dens / dens.sum(1, keepdim=True), rtol=1e-10, atol=1e-12)
    assert got[3].argmax() == 3 and got[0].argmax() <= 1  # far out: the largest σ; at a mode: small ones


def _counting(score_fn):
    calls = {"rows": 0}

    def f(x, t):
        calls["rows"] += x.shape[0]
        return score_fn(x, t)

    return f, calls


UNCONDITIONAL = sorted(n for n, s in REGISTRY.items() if "generation" in s.task_kinds)  # mrs family: test_mrs.py


@pytest.mark.parametrize("name", UNCONDITIONAL)
def test_reported_nfe_matches_counted_score_calls(name):
    spec = get_sampler(name)
    sde = VESDE(sigma_max=10.0) if spec.family in ("dmcmc",) else VPSDE()
    mix, exact = _ring_model(VESDE(sigma_max=10.0)) if spec.family == "dmcmc" else (ring_gmm_2d(), None)
    counted, calls = _counting(mix.score_fn(sde))
    model = ScoreModel(counted, sde, exact.classifier if exact else None, exact.classifier_sigmas if exact else None)
    B = 1 if spec.adaptive else 8  # adaptive: one sample, so every call is that sample's
    g = torch.Generator().manual_seed(0)
    x0 = sde.prior_std * torch.randn(B, 2, generator=g, dtype=T64)
    opts = {"denoise": "tweedie", "corrector_norm": "batch", "rtol": 1e-3, "atol": 1e-3}
    if spec.family == "dmcmc":
        res = call_sampler(spec, model, x0, None, g, integrator="pc", integrator_steps=4, skp=3, n_rounds=2)
        per_chain = calls["rows"] / B
        assert res.nfe == 3 + 4 * 2 + 1  # skp + PC(4 steps × 2) + Tweedie
        assert per_chain == res.info["burn_in_nfe_per_chain"] + 2 * res.nfe  # burn-in reported apart
        assert res.x.shape == (2 * B, 2)
        return
    steps = spec.steps_for_nfe(25, opts)
    res = call_sampler(spec, model, x0, None, g, n_steps=steps, **opts)
    assert calls["rows"] == B * res.nfe, (name, calls, res.nfe)
    if not spec.adaptive:
        assert res.nfe == spec.nfe(steps, opts) <= 25


def _exact_ve_pf_endpoint(data, x, s0, s1):
    """VE PF-ODE for Gaussian data keeps x - m in the eigenbasis scaled by sqrt((λ + σ²)): exact map."""
    lam, U = data.eigvals[0], data.eigvecs[0]
    y = (x - data.means[0]) @ U
    return data.means[0] + (y * torch.sqrt((lam + s1**2) / (lam + s0**2))) @ U.T


def test_karras_heun_is_second_order_against_the_exact_pf_ode_endpoint():
    sde = VESDE(sigma_max=20.0)
    data = gaussian([0.5, -0.3], [[0.3, 0.1], [0.1, 0.2]])
    model = ScoreModel(data.score_fn(sde), sde)
    x0 = 20.0 * torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=T64)
    exact = _exact_ve_pf_endpoint(data, x0, 20.0, 0.05)
    hs, errs = [], []
    for levels in (6, 11, 21, 41, 81):
        sig = karras_sigmas(20.0, 0.05, levels)[:-1]  # ends at σmin > 0: every step is Heun
        res = get_sampler("karras-heun").fn(model, x0, sig, None)
        assert res.nfe == 2 * (len(sig) - 1)
        hs.append(1.0 / (len(sig) - 1))
        errs.append(float((res.x - exact).abs().max()))
    lh, le = torch.tensor(hs).log(), torch.tensor(errs).log()
    slope = float(((lh - lh.mean()) * (le - le.mean())).sum() / ((lh - lh.mean()) ** 2).sum())
    assert 1.8 < slope < 2.4, (slope, errs)


def test_karras_full_schedule_counts_2n_minus_3_and_no_churn_is_heun():
    sde = VPSDE()
    data = gaussian([0.5, -0.3], [[0.3, 0.1], [0.1, 0.2]])
    model = ScoreModel(data.score_fn(sde), sde)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=T64)
    heun = get_sampler("karras-heun").fn(model, x0, None, None, n_steps=12)
    assert heun.nfe == 2 * 12 - 3
    det = get_sampler("karras-stochastic").fn(model, x0, None, torch.Generator().manual_seed(5), n_steps=12,
                                              s_churn=0.0)
    torch.testing.assert_close(det.x, heun.x, rtol=0, atol=0)
    churned = get_sampler("karras-stochastic").fn(model, x0, None, torch.Generator().manual_seed(5), n_steps=12)
    assert not torch.equal(churned.x, heun.x)


@pytest.mark.parametrize("name", [n for n in UNCONDITIONAL if n != "dmcmc"])
def test_sample_i_depends_only_on_seed_i(name):
    from suite.generation import SamplerConfig, sample

    sde = VPSDE()
    mix = ring_gmm_2d()
    cfg = SamplerConfig(nfe=12, rtol=1e-3, atol=1e-3, corrector_norm="sample")
    seeds = torch.arange(5) + 40
    whole = sample(name, cfg, mix.score_fn(sde), sde, (5, 2), seeds).x
    alone = torch.cat([sample(name, cfg, mix.score_fn(sde), sde, (1, 2), seeds[i:i + 1]).x for i in range(5)])
    torch.testing.assert_close(whole, alone, rtol=1e-9, atol=1e-9)
    other = sample(name, cfg, mix.score_fn(sde), sde, (5, 2), seeds + 1).x
    assert not torch.allclose(whole, other)


def test_dmcmc_chain_c_depends_only_on_its_own_seed():
    from suite.generation import SamplerConfig, sample

    sde = VESDE(sigma_max=10.0)
    mix, model = _ring_model(sde)
    cfg = SamplerConfig(sde="ve", integrator="em", n_steps=5, skp=3, n_rounds=2, eta=0.05)
    seeds = torch.arange(4) + 7
    whole = sample("dmcmc", cfg, model.score_fn, sde, (4, 2), seeds, model.classifier, model.classifier_sigmas).x
    two = sample("dmcmc", cfg, model.score_fn, sde, (2, 2), seeds[2:], model.classifier,
                 model.classifier_sigmas).x
    # rows are round-major: (round r, chain c) is row r * C + c
    torch.testing.assert_close(whole.reshape(2, 4, 2)[:, 2:], two.reshape(2, 2, 2), rtol=1e-12, atol=1e-12)


def test_dmcmc_with_exact_score_and_classifier_improves_on_its_chain_state():
    sde = VESDE(sigma_max=10.0)
    mix, model = _ring_model(sde)
    g = torch.Generator().manual_seed(0)
    x0 = 10.0 * torch.randn(1500, 2, generator=g, dtype=T64)
    res = call_sampler(get_sampler("dmcmc"), model, x0, None, g, integrator="karras-heun", integrator_steps=5,
                       skp=5, eta=0.05)
    chain = res.info["chosen_x"]
    assert res.info["chosen_sigma_median"] < 1.0  # Gibbs moved σ far below σmax = 10
    mmd_out, mmd_chain = float(mmd2_to_mixture(res.x, mix)), float(mmd2_to_mixture(chain, mix))
    mmd_prior = float(mmd2_to_mixture(x0, mix))
    assert mmd_out < 0.5 * mmd_chain and mmd_chain < 0.5 * mmd_prior, (mmd_out, mmd_chain, mmd_prior)
    assert mmd_out < 0.01


def test_integrator_schedules_start_at_each_samples_sigma():
    sde = VESDE(sigma_max=20.0)
    start = torch.tensor([0.5, 3.0], dtype=T64)
    ts = integrator_schedule("em", sde, start, 4, {})
    torch.testing.assert_close(sde.sigma(ts[:, 0]), start)
    assert torch.allclose(ts[:, -1], torch.tensor(sde.eps, dtype=T64))
    ks = integrator_schedule("karras-heun", sde, start, 5, {})
    torch.testing.assert_close(ks[:, 0], start)
    assert (ks[:, -1] == 0).all() and ks.shape == (2, 5)


def test_unknown_sampler_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean karras-heun"):
        get_sampler("karras-huen")


@pytest.mark.slow  # ~22 s of training under load; the exact-score DMCMC tests stay in the fast group
def test_trained_noise_classifier_beats_chance_by_far_on_digits():
    from generative.datasets import load_image_dataset
    from generative.models import train_noise_classifier

    train, test = load_image_dataset("digits-8x8", "train"), load_image_dataset("digits-8x8", "test")
    grid = ve_grid(VESDE(sigma_max=20.0))
    clf = train_noise_classifier(train.x, grid, n_steps=600, seed=0)
    g = torch.Generator().manual_seed(1)
    j = torch.randint(0, len(grid), (len(test),), generator=g)
    x = test.x + grid[j].float().view(-1, 1, 1, 1) * torch.randn(test.x.shape, generator=g)
    with torch.no_grad():
        logq = clf.log_probs(x)
    level_error = float((logq.argmax(1) - j).abs().float().mean())
    nll = float(-logq.gather(1, j[:, None]).mean())
    chance_error = (len(grid) ** 2 - 1) / (3 * len(grid))  # E|i - j| for i, j uniform: ≈ 333 levels
    assert level_error < 0.3 * chance_error, level_error
    assert nll < math.log(len(grid)) - 1.0, nll
