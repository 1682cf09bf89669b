"""Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models" (NeurIPS 2022,
arXiv:2206.00364): the deterministic Heun sampler (Algorithm 1) and the stochastic sampler (Algorithm 2).

σ-space. Every SDE here is a VE process in x̃ = x / a_t with noise level σ̃(t) = s_t / a_t
(:meth:`generative.sdes.SDE.sigma_tilde`); the probability-flow ODE there is dx̃/dσ̃ = -σ̃ ∇log p̃(x̃; σ̃)
= (x̃ - D(x̃; σ̃)) / σ̃ (EDM eq. 3/4 with s(t) = 1, σ(t) = t), with ∇log p̃(x̃; σ̃) = a · score_fn(a x̃, t(σ̃)).
For VE that is the model's own σ and x; for VP we divide by a_T at the start and the final σ̃ = 0 is t = 0,
a = 1.

Schedule (EDM eq. 5, ρ = 7): N noise levels in all, σ_i = (σmax^{1/ρ} + i/(N-2)(σmin^{1/ρ} - σmax^{1/ρ}))^ρ
for i = 0..N-2, then σ_{N-1} = 0. A step that ends at σ = 0 is an Euler step (Alg. 1 line 8); every other
step is Heun's method. NFE = 2(N - 2) + 1 = 2N - 3, as the official DMCMC code counts it. σmax may be a
(B,) tensor (each sample starts at its own level: Denoising MCMC).

Where the steps live: the Heun and Euler steps go through :mod:`solvers` (``Heun``/``Euler`` with
``StepTo``). The stochastic sampler's "churn" (raise σ_i to σ̂ = (1 + γ)σ_i by adding fresh noise, Alg. 2
lines 5-6) is a discrete move and stays here. γ_i = min(S_churn / (N - 1), √2 - 1) for σ_i in
[S_tmin, S_tmax], else 0 (EDM ``generate.py`` divides by its ``num_steps``, the N - 1 non-zero levels); a
normal is drawn at every step, churned or not, so a sample consumes the same draws whatever its levels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from generative.samplers.base import SampleResult, SamplerSpec, ScoreModel, check_unconditional, register
from generative.sdes import SDE, batch_broadcast, gaussian_noise

__all__ = ["karras_sigmas", "karras_heun", "karras_stochastic", "sigma_range"]


def sigma_range(sde: SDE, eps: float | None = None) -> tuple[float, float]:
    """(σ̃(eps), σ̃(T)) of an SDE: the default σmin and σmax of the Karras schedule."""
    t = torch.tensor([sde.eps if eps is None else eps, sde.T], dtype=torch.float64)
    lo, hi = sde.sigma_tilde(t).tolist()
    return lo, hi


def karras_sigmas(sigma_max: float | Tensor, sigma_min: float, n_levels: int, rho: float = 7.0,
                  dtype=torch.float64, device="cpu") -> Tensor:
    """The ρ-schedule with ``n_levels`` levels including the final 0: (N,), or (B, N) for a (B,) σmax."""
    if n_levels < 2:
        raise ValueError(f"a Karras schedule needs at least 2 levels (one Euler step), got {n_levels}")
    smax = torch.as_tensor(sigma_max, dtype=dtype, device=device)
    batched = smax.dim() == 1
    smax = smax.reshape(-1, 1)
    if n_levels == 2:
        levels = smax
    else:
        i = torch.arange(n_levels - 1, dtype=dtype, device=device) / (n_levels - 2)
        lo = torch.as_tensor(sigma_min, dtype=dtype, device=device) ** (1 / rho)
        levels = (smax ** (1 / rho) + i * (lo - smax ** (1 / rho))) ** rho
    out = torch.cat([levels, torch.zeros_like(levels[:, :1])], 1)
    return out if batched else out[0]


class _SigmaSpace:
    """The model in σ-space: dx̃/dσ̃ = -σ̃ ∇log p̃(x̃; σ̃)."""

    def __init__(self, model: ScoreModel):
        self.model = model
        self.sde = model.sde

    def scale(self, sigma: Tensor) -> Tensor:
        return self.sde.mean_coef(self.sde.time_of_sigma(sigma))

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        t = self.sde.time_of_sigma(sigma)
        a = batch_broadcast(self.sde.mean_coef(t), x)
        return a * self.model.score_fn(a * x, t)

    def vector_field(self, sigma: Tensor, x: Tensor) -> Tensor:
        return -batch_broadcast(sigma, x) * self.score(x, sigma)


def _sigma_grid(model: ScoreModel, x: Tensor, schedule, n_steps, rho, sigma_min, sigma_max) -> Tensor:
    if schedule is None:
        lo, hi = sigma_range(model.sde)
        schedule = karras_sigmas(hi if sigma_max is None else sigma_max, lo if sigma_min is None else sigma_min,
                                 n_steps or 18, rho)
    sig = torch.as_tensor(schedule).to(dtype=x.dtype, device=x.device)
    sig = sig.unsqueeze(0).expand(x.shape[0], -1) if sig.dim() == 1 else sig
    if sig.shape[0] != x.shape[0] or sig.shape[1] < 2:
        raise ValueError(f"a σ schedule must be (N,) or (B, N) with N >= 2, got {tuple(sig.shape)}")
    return sig


def _ode_step(space: _SigmaSpace, x: Tensor, s0: Tensor, s1: Tensor) -> tuple[Tensor, Tensor]:
    """One step from s0 to s1 (B,) through solvers: Heun where s1 > 0, Euler where s1 = 0 (the Euler
    result is used for those samples; Heun's second evaluation at σ = 0 is never taken by them, since a
    grid is either all-zero or all-positive in a column). Returns (x1, NFE per sample)."""
    import solvers

    term = solvers.ODETerm(space.vector_field)
    ts = torch.stack([s0, s1], 1)
    final = bool((s1 == 0).any())
    if final and not bool((s1 == 0).all()):
        raise ValueError("the samples of one batch must reach σ = 0 at the same step")
    solver = solvers.Euler() if final else solvers.Heun()
    sol = solvers.solve(term, solver, s0, s1, x, controller=solvers.StepTo(ts))
    return sol.y1, sol.num_fevals


def _to_tilde(space: _SigmaSpace, x: Tensor, sigma0: Tensor) -> Tensor:
    return x / batch_broadcast(space.scale(sigma0), x)


def _from_tilde(space: _SigmaSpace, x: Tensor, sigma_last: Tensor) -> Tensor:
    a = torch.where(sigma_last == 0, torch.ones_like(sigma_last), space.scale(sigma_last.clamp_min(1e-30)))
    return x * batch_broadcast(a, x)


def karras_heun(model: ScoreModel, x_init: Tensor, schedule: Tensor | None, generator=None, condition=None, *,
                n_steps: int | None = None, rho: float = 7.0, sigma_min: float | None = None,
                sigma_max: float | None = None) -> SampleResult:
    """Algorithm 1: deterministic Heun over the σ schedule (``n_steps`` = the number N of levels, including
    the final 0, when no schedule is given); NFE = 2N - 3 when the schedule ends at 0."""
    check_unconditional("karras-heun", condition)
    space = _SigmaSpace(model)
    sig = _sigma_grid(model, x_init, schedule, n_steps, rho, sigma_min, sigma_max)
    import solvers

    x = _to_tilde(space, x_init, sig[:, 0])
    n = sig.shape[1]
    ends_at_zero = bool((sig[:, -1] == 0).all())
    heun_end = n - 1 if ends_at_zero else n  # columns [0, heun_end) are joined by Heun steps
    nfe = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    with torch.no_grad():
        if heun_end >= 2:
            sol = solvers.solve(solvers.ODETerm(space.vector_field), solvers.Heun(), sig[:, 0], sig[:, heun_end - 1],
                                x, controller=solvers.StepTo(sig[:, :heun_end]))
            x, nfe = sol.y1, nfe + sol.num_fevals
        if ends_at_zero:  # Alg. 1 line 8: the last step (to σ = 0) is an Euler step
            x, k = _ode_step(space, x, sig[:, -2], sig[:, -1])
            nfe = nfe + k
    return SampleResult(_from_tilde(space, x, sig[:, -1]), int(nfe.max()), {"nfe_per_sample": nfe})


def karras_stochastic(model: ScoreModel, x_init: Tensor, schedule: Tensor | None, generator=None,
                      condition=None, *, n_steps: int | None = None, rho: float = 7.0,
                      sigma_min: float | None = None, sigma_max: float | None = None, s_churn: float = 80.0,
                      s_tmin: float = 0.05, s_tmax: float = 1.0, s_noise: float = 1.007) -> SampleResult:
    """Algorithm 2: churn (γ_i, S_noise) then a Heun step from σ̂_i to σ_{i+1} (Euler to 0). Defaults are
    the DMCMC "KAR2" setting (S_churn 80, σ in [0.05, 1], S_noise 1.007)."""
    check_unconditional("karras-stochastic", condition)
    space = _SigmaSpace(model)
    sig = _sigma_grid(model, x_init, schedule, n_steps, rho, sigma_min, sigma_max)
    n = sig.shape[1]
    x = _to_tilde(space, x_init, sig[:, 0])
    gamma_max = min(s_churn / max(n - 1, 1), math.sqrt(2.0) - 1.0)
    nfe = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    with torch.no_grad():
        for i in range(n - 1):
            s_cur, s_next = sig[:, i], sig[:, i + 1]
            gamma = torch.where((s_cur >= s_tmin) & (s_cur <= s_tmax), torch.full_like(s_cur, gamma_max),
                                torch.zeros_like(s_cur))
            s_hat = s_cur * (1 + gamma)
            z = gaussian_noise(x.shape, generator, dtype=x.dtype, device=x.device)
            x = x + batch_broadcast((s_hat**2 - s_cur**2).clamp_min(0).sqrt() * s_noise, x) * z  # Alg. 2 l. 5-6
            x, k = _ode_step(space, x, s_hat, s_next)
            nfe = nfe + k
    return SampleResult(_from_tilde(space, x, sig[:, -1]), int(nfe.max()), {"nfe_per_sample": nfe})


def _karras_nfe(n_levels: int, opts) -> int:
    return 2 * n_levels - 3


def _karras_levels(nfe: int, opts) -> int:
    return max(2, (nfe + 3) // 2)


register(SamplerSpec(name="karras-heun", family="karras", fn=karras_heun, nfe=_karras_nfe,
                     steps_for_nfe=_karras_levels, default_steps=18,
                     description="Karras et al. 2022 Alg. 1: Heun, rho=7 levels, last step Euler (solvers)"))
register(SamplerSpec(name="karras-stochastic", family="karras", fn=karras_stochastic, nfe=_karras_nfe,
                     steps_for_nfe=_karras_levels, default_steps=18,
                     description="Karras et al. 2022 Alg. 2: churn + Heun (S_churn, S_tmin, S_tmax, S_noise)"))
