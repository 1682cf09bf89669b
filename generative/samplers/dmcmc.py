"""Denoising MCMC: Denoising Langevin Gibbs (DLG), Kim & Ye, "Denoising MCMC for Accelerating Diffusion-Based
Generative Models" (ICML 2023, arXiv:2209.14593; official code ``1202kbs/DMCMC``).

An MCMC chain lives on the product space (x, σ), σ on the VE grid of J = 1000 levels
σ_j = σmin (σmax/σmin)^{t_j}, t = linspace(1, 1e-3, J) (``ScoreModel.classifier_sigmas``). One chain step:

1. Langevin on x given σ: x ← x + (η/2) s(x, σ) + √η z, with a fixed η (no σ scaling; paper eq. 10);
2. Gibbs on σ given x: σ ← grid[argmax_j q(j | x)] with a noise-level classifier q (``gibbs="sample"``
   draws j ~ q(· | x) instead).

For each output sample the chain runs ``skp`` steps and keeps the state with the smallest σ it visited; that
state is denoised by **any registered integrator** from its own σ (a per-sample schedule: ``em``,
``reverse-diffusion``, ``pc``, ``ode``, ``karras-heun``, ``karras-stochastic``), then one Tweedie step
x + σ_end² s(x, σ_end) at the integrator's end level σ_end (the SDE's σ at eps, ≈ σmin). The chain then
goes on from where it was (persistent), so consecutive outputs of one chain are ``skp`` steps apart.

Burn-in (official CIFAR-10 recipe, counted apart): from x = σmax z, a ``karras-stochastic`` run with
``burn_in_levels`` levels, plus ``burn_in_noise``·z, a Gibbs step, then ``burn_in_steps`` chain steps at
``burn_in_eta`` and ``burn_in_steps`` at η.

NFE per output sample = skp + integrator NFE + 1 (the official count). Classifier calls (skp per output) and
the burn-in's score evaluations and classifier calls are reported separately in ``info``, never hidden.

Randomness: chain c draws only from generator c (one generator per chain), so output (round r, chain c)
depends only on that chain's seed, whatever the number of chains run beside it. Outputs are ordered
round-major: row r·C + c.

Where the steps live: the Langevin and Gibbs moves are MCMC moves and stay here; the integrators integrate
through :mod:`solvers` as their own files say.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generative.samplers.base import SampleResult, SamplerSpec, ScoreModel, call_sampler, get_sampler, register
from generative.sdes import VESDE, batch_broadcast, gaussian_noise

__all__ = ["dmcmc", "ve_grid", "integrator_schedule", "INTEGRATORS"]

INTEGRATORS = ("em", "reverse-diffusion", "pc", "ode", "karras-heun", "karras-stochastic")


def ve_grid(sde: VESDE, n_levels: int = 1000, t_min: float = 1e-3, dtype=torch.float64) -> Tensor:
    """The official DMCMC grid: σ(t_j), t = linspace(1, t_min, n_levels) (descending)."""
    return sde.sigma(torch.linspace(1.0, t_min, n_levels, dtype=dtype))


def integrator_schedule(name: str, sde: VESDE, sigma_start: Tensor, n_steps: int, options: dict) -> Tensor:
    """A per-sample schedule for integrator ``name`` starting at σ = ``sigma_start`` (B,) and ending at the
    SDE's eps (σmin for Karras): ``n_steps`` time steps (score-SDE samplers), N = ``n_steps`` levels
    including the final 0 (Karras), or the (B, 2) start/end pair of the adaptive ODE."""
    t_start = sde.time_of_sigma(sigma_start).clamp_max(sde.T)
    eps = options.get("eps") or sde.eps
    if name == "ode":
        return torch.stack([t_start, torch.full_like(t_start, eps)], 1)
    if get_sampler(name).family == "karras":
        from generative.samplers.karras import karras_sigmas

        smin = options.get("sigma_min") or float(sde.sigma(torch.tensor(eps, dtype=torch.float64)))
        return karras_sigmas(sigma_start, smin, n_steps, options.get("rho") or 7.0,
                             dtype=sigma_start.dtype, device=sigma_start.device)
    u = torch.linspace(0.0, 1.0, n_steps + 1, dtype=sigma_start.dtype, device=sigma_start.device)
    return t_start[:, None] + u[None, :] * (eps - t_start[:, None])


def _gibbs(model: ScoreModel, x: Tensor, grid: Tensor, mode: str, generator) -> tuple[Tensor, Tensor]:
    """σ ← grid[j*], j* = argmax_j q(j | x) (or j ~ q(· | x)); returns (σ, j)."""
    logq = model.classifier(x)
    if mode == "argmax":
        j = logq.argmax(1)
    elif mode == "sample":  # inverse-CDF draw from q(. | x) with one uniform per sample, from our generator
        z = gaussian_noise((x.shape[0], 1), generator, dtype=torch.float64, device=x.device)
        u = 0.5 * (1 + torch.erf(z / 2**0.5))  # Φ(z) ~ U(0, 1)
        cdf = torch.cumsum(logq.double().exp(), 1)
        j = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1).clamp_max(logq.shape[1] - 1)
    else:
        raise ValueError(f"gibbs must be 'argmax' or 'sample', got {mode!r}")
    return grid.to(x.device, x.dtype)[j], j


def _langevin(model: ScoreModel, x: Tensor, sigma: Tensor, eta: float, generator) -> Tensor:
    t = model.sde.time_of_sigma(sigma)
    z = gaussian_noise(x.shape, generator, dtype=x.dtype, device=x.device)
    return x + (0.5 * eta) * model.score_fn(x, t) + eta**0.5 * z  # paper eq. 10


def dmcmc(model: ScoreModel, x_init: Tensor, schedule: Tensor | None, generator, condition=None, *,
          integrator: str = "karras-heun", skp: int = 5, integrator_steps: int | None = None,
          n_rounds: int = 1, eta: float = 0.05, gibbs: str = "argmax", burn_in_levels: int = 20,
          burn_in_noise: float = 0.5, burn_in_steps: int = 10, burn_in_eta: float | None = None,
          integrator_options: dict | None = None) -> SampleResult:
    """Denoising Langevin Gibbs from chains started at ``x_init`` (C, ...) (a draw of σmax·N(0, I));
    ``n_rounds`` outputs per chain (C·n_rounds samples). ``integrator_steps``: the integrator's steps (its
    own unit: time steps, or Karras levels); ``schedule`` is not used (each output starts at its own σ)."""
    if condition is not None:
        raise ValueError("dmcmc is unconditional; it takes no condition")
    sde = model.sde
    if not isinstance(sde, VESDE):
        raise ValueError(f"Denoising MCMC runs on the VE grid; got a {type(sde).__name__}")
    if model.classifier is None or model.classifier_sigmas is None:
        raise ValueError("dmcmc needs a noise-level classifier (ScoreModel.classifier)")
    if integrator not in INTEGRATORS:
        raise ValueError(f"unknown integrator {integrator!r}; choose from {', '.join(INTEGRATORS)}")
    if skp < 1 or n_rounds < 1 or eta <= 0:
        raise ValueError("skp and n_rounds must be at least 1 and eta positive")
    spec = get_sampler(integrator)
    opts = dict(integrator_options or {})
    opts.setdefault("denoise", "none")  # the Tweedie step below is DMCMC's own
    steps = integrator_steps or spec.default_steps
    grid = model.classifier_sigmas.to(torch.float64)
    x = x_init
    C = x.shape[0]
    burn_nfe = burn_cls = 0
    with torch.no_grad():
        if burn_in_levels >= 2:  # denoise the prior draw roughly, then re-noise it (official burn-in)
            res = call_sampler(get_sampler("karras-stochastic"), model, x, None, generator, n_steps=burn_in_levels)
            x = res.x + burn_in_noise * gaussian_noise(x.shape, generator, dtype=x.dtype, device=x.device)
            burn_nfe += res.nfe
        sigma, _ = _gibbs(model, x, grid, gibbs, generator)
        burn_cls += 1
        for step_eta in [burn_in_eta or eta] * burn_in_steps + [eta] * burn_in_steps:
            x = _langevin(model, x, sigma, step_eta, generator)
            sigma, _ = _gibbs(model, x, grid, gibbs, generator)
            burn_nfe, burn_cls = burn_nfe + 1, burn_cls + 1
        outs, integ_nfe, chosen, chosen_x = [], 0, [], []
        for _ in range(n_rounds):
            best_x, best_sigma = x, torch.full_like(sigma, float("inf"))
            for _ in range(skp):
                x = _langevin(model, x, sigma, eta, generator)
                sigma, _ = _gibbs(model, x, grid, gibbs, generator)
                better = sigma < best_sigma
                best_x = torch.where(batch_broadcast(better, x), x, best_x)
                best_sigma = torch.where(better, sigma, best_sigma)
            chosen.append(best_sigma)
            chosen_x.append(best_x)
            sched = integrator_schedule(integrator, sde, best_sigma.to(torch.float64), steps, opts)
            res = call_sampler(spec, model, best_x, sched.to(x.dtype), generator, **opts)
            integ_nfe = max(integ_nfe, res.nfe)
            t_end = torch.full((C,), opts.get("eps") or sde.eps, dtype=x.dtype, device=x.device)
            s_end = batch_broadcast(sde.sigma(t_end), x)
            outs.append(res.x + s_end**2 * model.score_fn(res.x, t_end))  # Tweedie: x + σ² s(x, σ)
    chosen_sigma = torch.cat(chosen)
    info = {
        "integrator": integrator, "integrator_nfe": integ_nfe, "skp": skp, "chains": C, "n_rounds": n_rounds,
        "classifier_calls_per_sample": skp, "burn_in_nfe_per_chain": burn_nfe,
        "burn_in_classifier_calls_per_chain": burn_cls, "chosen_sigma_mean": float(chosen_sigma.mean()),
        "chosen_sigma_median": float(chosen_sigma.median()), "chosen_sigma": chosen_sigma,
        "chosen_x": torch.cat(chosen_x),  # the states handed to the integrator (before denoising)
    }
    return SampleResult(torch.cat(outs), skp + integ_nfe + 1, info)


def _dmcmc_nfe(n_steps: int, opts) -> int:
    """NFE = skp + integrator NFE + 1 for an integrator run of ``n_steps`` (its own unit)."""
    spec = get_sampler(opts.get("integrator") or "karras-heun")
    return int(opts.get("skp") or 5) + spec.nfe(n_steps, {**opts, "denoise": "none"}) + 1


def _dmcmc_steps(nfe: int, opts) -> int:
    spec = get_sampler(opts.get("integrator") or "karras-heun")
    budget = nfe - int(opts.get("skp") or 5) - 1
    if budget < 1:
        raise ValueError(f"an NFE of {nfe} leaves no evaluations for the integrator after skp + 1")
    return spec.steps_for_nfe(budget, {**opts, "denoise": "none"})


register(SamplerSpec(name="dmcmc", family="dmcmc", fn=dmcmc, nfe=_dmcmc_nfe, steps_for_nfe=_dmcmc_steps,
                     needs_classifier=True, default_steps=10,
                     description="Denoising MCMC (DLG: Langevin-Gibbs on (x, sigma), then any integrator; "
                                 "Kim & Ye)"))
