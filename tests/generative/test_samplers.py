"""Score-SDE samplers with the exact score: correctness on Gaussians, convergence in NFE, reproducibility."""

import pytest
import torch

import generative.samplers.score_sde as score_sde
from generative.analytic import gaussian_2d, gaussian_w2, mmd2_to_mixture, ring_gmm_2d
from generative.sampler_study import error_vs_nfe, exact_gaussian_output, fit_slopes
from generative.samplers import (
    Corrector,
    ancestral,
    annealed_langevin,
    euler_maruyama,
    ode_sample,
    pc_sample,
    reverse_diffusion,
    tweedie_denoise,
)
from generative.sdes import VESDE, VPSDE, SubVPSDE, generators_from_seeds

T64 = torch.float64
SDES = [VPSDE(), SubVPSDE(), VESDE()]
IDS = ["vp", "subvp", "ve"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _pc_batch(score_fn, sde, x, n, **kw):
    return pc_sample(score_fn, sde, x, n, corrector=Corrector(norm="batch"), **kw)


SAMPLERS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral": ancestral,
    "pc": _pc_batch,
}


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("name", [*SAMPLERS, "ode"])
def test_reverse_time_sampling_reproduces_gaussian_data(sde, name):
    if name == "ancestral" and isinstance(sde, SubVPSDE):
        pytest.skip("no ancestral chain for sub-VP")
    data = gaussian_2d()
    score_fn = data.score_fn(sde)
    g = torch.Generator().manual_seed(0)
    n = 10_000
    # start from the prior, as in practice; end with a Tweedie step, so the target is E[x0|x_eps] ≈ data
    if name == "ode":
        res = ode_sample(score_fn, sde, (n, 2), generator=g, dtype=T64, denoise=True)
    else:
        res = SAMPLERS[name](score_fn, sde, (n, 2), 200, generator=g, dtype=T64, denoise="tweedie")
    x = res.x
    assert x.dtype == T64 and torch.isfinite(x).all()
    m, S = data.means[0], data.covs[0]
    assert (x.mean(0) - m).norm() < 0.05, x.mean(0)
    assert (x.T.cov() - S).norm() < 0.12, x.T.cov()


def test_nfe_accounting(monkeypatch):
    data = gaussian_2d()
    sde = VPSDE()
    sf = data.score_fn(sde)
    g = torch.Generator().manual_seed(0)
    assert euler_maruyama(sf, sde, (4, 2), 10, generator=g, dtype=T64).nfe == 10
    assert euler_maruyama(sf, sde, (4, 2), 10, generator=g, dtype=T64, denoise="tweedie").nfe == 11
    assert pc_sample(sf, sde, (4, 2), 10, generator=g, dtype=T64, corrector=Corrector(n_steps=2)).nfe == 30
    assert annealed_langevin(sf, sde, (4, 2), 10, generator=g, dtype=T64).nfe == 10
    calls = []

    def counting(x, t):
        calls.append(len(x))
        return sf(x, t)

    # scipy's RK45 shares one step size: every call is charged to every sample
    monkeypatch.setattr(score_sde, "ODE_BACKEND", "scipy")
    res = ode_sample(counting, sde, (4, 2), generator=g, dtype=T64, denoise=True, rtol=1e-3, atol=1e-3)
    assert res.nfe == len(calls) and (res.info["nfe_per_sample"] == len(calls)).all()
    try:
        import solvers  # noqa: F401
    except ImportError:
        return
    # solvers: per-sample counts; samples that finished early are not charged for the batch's extra calls
    calls.clear()
    monkeypatch.setattr(score_sde, "ODE_BACKEND", "solvers")
    res = ode_sample(counting, sde, (4, 2), generator=g, dtype=T64, denoise=True, rtol=1e-3, atol=1e-3)
    assert 10 < res.nfe <= len(calls) and res.nfe == int(res.info["nfe_per_sample"].max())


def test_tweedie_step_is_posterior_mean():
    data = gaussian_2d()
    sde = VPSDE()
    t = torch.full((3,), 0.5, dtype=T64)
    x = torch.randn(3, 2, dtype=T64)
    a, s = sde.mean_coef(t)[0], sde.std(t)[0]
    S = data.covs[0]
    # E[x0 | x_t] = m + a Σ (a²Σ + s²I)⁻¹ (x - a m)
    K = a * S @ torch.linalg.inv(a**2 * S + s**2 * torch.eye(2, dtype=T64))
    ref = data.means[0] + (x - a * data.means[0]) @ K.T
    torch.testing.assert_close(tweedie_denoise(sde, data.score_fn(sde), x, t), ref)


@pytest.mark.parametrize("name", ["em", "ancestral"])
def test_exact_gaussian_propagation_matches_monte_carlo(name):
    data = gaussian_2d()
    sde = VPSDE()
    sf = data.score_fn(sde)
    prior = data.marginal(sde, sde.T)
    m, S = exact_gaussian_output(name, sde, sf, prior.means[0], prior.covs[0], 8)
    x0 = prior.sample(40_000, torch.Generator().manual_seed(1))
    fn = SAMPLERS[{"em": "euler_maruyama"}.get(name, name)]
    x = fn(sf, sde, x0, 8, generator=torch.Generator().manual_seed(2), denoise="none").x
    target = data.marginal(sde, sde.eps)
    err = gaussian_w2(m, S, target.means[0], target.covs[0])
    assert err > 0.1  # 8 steps are far from converged ...
    assert gaussian_w2(x.mean(0), x.T.cov(), m, S) < 0.15 * err  # ... and the propagation says exactly how


@pytest.mark.parametrize("sde", ["vp", "subvp"])
def test_euler_maruyama_weak_order_one(sde):
    rows = error_vs_nfe("gaussian-2d", ["em"], [16, 32, 64, 128, 256], sde=sde)
    errs = [r["error"] for r in rows]
    assert all(a > 1.6 * b for a, b in zip(errs, errs[1:], strict=False)), errs
    slope = fit_slopes(rows)[f"gaussian-2d/{sde}/em"]
    assert -1.2 < slope < -0.85, slope


def test_error_falls_with_nfe_on_the_mixture():
    names = ["em", "reverse-diffusion", "ancestral", "pc", "ode", "karras-heun"]
    rows = error_vs_nfe("gmm-2d", names, [8, 24, 64],
                        n_samples=3000, seed=0, sde="vp", ode_tols=[1e-1, 1e-3])
    by: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by.setdefault(r["sampler"], []).append((r["nfe"], r["mmd2"]))
    for name, pts in by.items():
        pts.sort()
        nfes, mmd2 = zip(*pts, strict=False)
        assert all(a < b for a, b in zip(nfes, nfes[1:], strict=False)), (name, nfes)
        assert all(a > 2.5 * b for a, b in zip(mmd2, mmd2[1:], strict=False)), (name, mmd2)


SEEDED = {
    "euler_maruyama": lambda sf, sde, x, seeds: euler_maruyama(sf, sde, x, 6, generator=seeds, dtype=T64),
    "reverse_diffusion": lambda sf, sde, x, seeds: reverse_diffusion(sf, sde, x, 6, generator=seeds,
                                                                     dtype=T64),
    "ancestral": lambda sf, sde, x, seeds: ancestral(sf, sde, x, 6, generator=seeds, dtype=T64),
    "pc": lambda sf, sde, x, seeds: pc_sample(sf, sde, x, 3, generator=seeds, dtype=T64,
                                              corrector=Corrector(n_steps=2), denoise="tweedie"),
    "ode": lambda sf, sde, x, seeds: ode_sample(sf, sde, x, generator=seeds, dtype=T64, rtol=1e-3, atol=1e-3),
}


@pytest.mark.parametrize("name", list(SEEDED))
def test_per_sample_reproducibility(name):
    if name == "ode":
        try:
            import solvers  # noqa: F401
        except ImportError:
            pytest.skip("per-sample step sizes need the solvers package (scipy shares one step size)")
        if score_sde.ODE_BACKEND == "scipy":
            pytest.skip("scipy backend shares one step size across the batch")
    data = ring_gmm_2d()
    sde = VESDE()
    sf = data.score_fn(sde)
    seeds = torch.arange(100, 164)
    big = SEEDED[name](sf, sde, (64, 2), seeds).x
    for i in (0, 5, 63):
        one = SEEDED[name](sf, sde, (1, 2), seeds[i:i + 1]).x
        torch.testing.assert_close(one[0], big[i], rtol=1e-12, atol=1e-12)
    # a list of generators is the same as the seeds
    again = SEEDED[name](sf, sde, (64, 2), generators_from_seeds(seeds)).x
    torch.testing.assert_close(again, big, rtol=0, atol=0)
    assert not torch.allclose(big[0], big[1])


def test_single_generator_and_initial_state():
    data = ring_gmm_2d()
    sde = VPSDE()
    sf = data.score_fn(sde)
    a = reverse_diffusion(sf, sde, (8, 2), 5, generator=torch.Generator().manual_seed(0), dtype=T64).x
    b = reverse_diffusion(sf, sde, (8, 2), 5, generator=torch.Generator().manual_seed(0), dtype=T64).x
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    x0 = torch.zeros(8, 2, dtype=T64)
    c = ode_sample(sf, sde, x0, denoise=False, rtol=1e-4, atol=1e-4).x  # deterministic given x_init
    assert torch.allclose(c, c[:1].expand(8, 2))
    # mixture error of a converged ODE sample is at the Monte Carlo floor
    x = ode_sample(sf, sde, data.marginal(sde, 1.0).sample(2000, torch.Generator().manual_seed(0)),
                   rtol=1e-5, atol=1e-5, denoise=False).x
    assert abs(mmd2_to_mixture(x, data.marginal(sde, sde.eps)).item()) < 2e-4
