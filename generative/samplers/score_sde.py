"""Samplers of Song et al., "Score-Based Generative Modeling through SDEs" (ICLR 2021, arXiv:2011.13456).

Each sampler is a pure function of a score model ``score_fn(x, t)``, an :class:`~generative.sdes.SDE`, an
initial state (a tensor, or a shape to draw from the prior), a step count or tolerance, and an explicit
generator; it returns a :class:`SampleResult` with the samples and the number of score evaluations (NFE).
Line references are to the paper's Algorithms 1-5 (appendix G) and the official ``sampling.py``.

Time grid. Fixed-step samplers run over ``ts = linspace(T, eps, n_steps + 1)`` (or a grid you pass): step i
goes from ``ts[i]`` to ``ts[i+1]`` and evaluates the score once at ``ts[i]``, so NFE = n_steps and the chain
ends exactly at eps. (The official code evaluates at ``linspace(T, eps, N)`` with dt = 1/N, its last step
overshooting to eps - 1/N, and its SMLD/DDPM chains index fixed tables; ours use exact transitions between
the grid times, see ``SDE.discretize``.)

Randomness. ``generator`` is one ``torch.Generator`` (the whole batch in one draw: fastest, reproducible
for the same batch size), a sequence of per-sample generators, or a seeds tensor/list (turned into one
generator per sample, as EDM does). Per-sample, sample i consumes only generator i — prior draw, then one
draw per noisy step — so it is identical whatever the batch size. The Langevin corrector's step size uses
per-sample norms ‖z_i‖/‖s_i‖ (the official code uses batch means, which couples samples).

Where the steps live: the Euler–Maruyama predictor and the probability-flow ODE integrate through
:mod:`solvers` (``EulerMaruyama`` with ``StepTo``; ``Dopri5`` with a PID controller). The reverse-diffusion
and ancestral predictors are the SMLD / DDPM Markov chains and the Langevin corrector is an MCMC move: they
are discrete-time chains, not integrators of an SDE, and stay here. A time grid may be shared ``(N + 1,)`` or
per sample ``(B, N + 1)`` (Denoising MCMC starts each sample at its own time).

Registered samplers (:mod:`generative.samplers.base`): ``em``, ``reverse-diffusion``, ``ancestral``,
``langevin``, ``pc`` and ``ode``, family ``score-sde``.

Final step (``denoise``, one meaning everywhere):
``"mean"`` returns the last step's noise-free mean (official ``noise_removal``),
``"tweedie"`` adds one score evaluation at eps and returns
E[x_0 | x_eps] = (x + s_eps² ∇log p_eps(x)) / a_eps,
``"none"`` returns the last noisy iterate (distributed as p_eps in the limit). The probability-flow ODE
has no noise: ``"mean"`` and ``"none"`` both return its endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from generative.samplers.base import (
    SampleResult,
    SamplerSpec,
    ScoreModel,
    check_unconditional,
    per_sample_times,
    register,
    resolve_generator,
)
from generative.sdes import (
    SDE,
    VESDE,
    VPSDE,
    Generators,
    ScoreFn,
    SubVPSDE,
    batch_broadcast,
    gaussian_noise,
)

__all__ = [
    "SampleResult",
    "Predictor",
    "Corrector",
    "euler_maruyama_step",
    "reverse_diffusion_step",
    "ancestral_step",
    "langevin_step",
    "pc_sample",
    "euler_maruyama",
    "reverse_diffusion",
    "ancestral",
    "annealed_langevin",
    "ode_sample",
    "tweedie_denoise",
    "time_grid",
    "PREDICTORS",
]

Denoise = Literal["none", "mean", "tweedie"]
# A predictor step maps (sde, score_fn, x, t, t_next, z) to (x_next, x_next_mean); z ~ N(0, I) like x.
Predictor = Callable[[SDE, ScoreFn, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


# --- one-step updates (paper Algorithms 2-5; official Predictor / Corrector classes) --------------------
class _GivenIncrement:
    """A Brownian 'path' for one solver step whose increment is sqrt(|dt|) z for a given z."""

    def __init__(self, z: Tensor):
        self.z = z

    def increment(self, t, dt, levy=False):
        return self.z * batch_broadcast(dt.abs().sqrt(), self.z)


def euler_maruyama_step(sde, score_fn, x, t, t_next, z):
    """Reverse-time Euler–Maruyama, one step through :mod:`solvers` (``EulerMaruyama``, Ito): with
    Δt = t - t_next > 0, x ← x - [f - g² s] Δt + g sqrt(Δt) z (integrating dx = [f - g² s] dt + g dw̄
    backwards in time)."""
    import solvers

    rsde = sde.reverse(score_fn)
    term = solvers.SDETerm(lambda tt, y: rsde.drift(y, tt), lambda tt, y: batch_broadcast(rsde.diffusion(tt), y),
                           noise="diagonal", brownian=_GivenIncrement(z))
    sol = solvers.solve(term, solvers.EulerMaruyama(), t, t_next, x,
                        controller=solvers.StepTo(torch.stack([t, t_next], 1)))
    x_next = sol.y1
    noise = batch_broadcast(rsde.diffusion(t) * (t - t_next).sqrt(), x) * z
    return x_next, x_next - noise


def reverse_diffusion_step(sde, score_fn, x, t, t_next, z):
    """Reverse diffusion predictor (eq. 46 / Alg. 2 line 4, 3 line 4): x ← x - f_i + G_i² s + G_i z."""
    rev_f, rev_G = sde.reverse(score_fn).discretize(x, t, t_next=t_next)
    x_mean = x - rev_f
    return x_mean + rev_G * z, x_mean


def ancestral_step(sde, score_fn, x, t, t_next, z):
    """Ancestral sampling of the SMLD / DDPM chains (eqs. 47 and 48)."""
    s = score_fn(x, t)
    if isinstance(sde, VESDE):
        # SMLD: x ← x + (σ_i² - σ_{i-1}²) s + sqrt(σ_{i-1}² (σ_i² - σ_{i-1}²) / σ_i²) z
        sig2, prev2 = sde.sigma(t) ** 2, sde.sigma(t_next) ** 2
        x_mean = x + batch_broadcast(sig2 - prev2, x) * s
        std = (prev2 * (sig2 - prev2) / sig2).sqrt()
    elif isinstance(sde, VPSDE) and not isinstance(sde, SubVPSDE):
        # DDPM: x ← (x + β_i s) / sqrt(1 - β_i) + sqrt(β_i) z
        beta = sde.step_beta(t, t_next)
        x_mean = (x + batch_broadcast(beta, x) * s) / batch_broadcast((1 - beta).sqrt(), x)
        std = beta.sqrt()
    else:
        raise NotImplementedError(f"ancestral sampling needs a VE or VP SDE, got {type(sde).__name__}")
    return x_mean + batch_broadcast(std, x) * z, x_mean


def langevin_step(sde, score_fn, x, t, t_next, z, snr: float = 0.16, norm: str = "sample"):
    """One Langevin corrector step (Alg. 4 lines 3-6 / Alg. 5): ε = 2 α (snr ‖z‖ / ‖s‖)²,
    x ← x + ε s + sqrt(2ε) z; α = 1 - β_i for VP / sub-VP (official code), else 1.

    ``norm="sample"`` uses each sample's own ‖z_i‖ / ‖s_i‖ (sample i independent of the batch; in high
    dimension the norms concentrate and this matches the official rule). ``norm="batch"`` is the official
    rule, mean ‖z‖ / mean ‖s‖ over the batch, which couples samples but is needed in very low dimension:
    there ‖s_i‖ is often near 0 close to a mode, and the per-sample step 1/‖s_i‖² is heavy-tailed."""
    s = score_fn(x, t)
    if isinstance(sde, VPSDE):
        alpha = 1.0 - sde.step_beta(t, t_next)
    else:
        alpha = torch.ones_like(t)
    s_norm = s.reshape(s.shape[0], -1).norm(dim=-1)
    z_norm = z.reshape(z.shape[0], -1).norm(dim=-1)
    if norm == "batch":
        s_norm, z_norm = s_norm.mean().expand_as(s_norm), z_norm.mean().expand_as(z_norm)
    elif norm != "sample":
        raise ValueError(f"norm must be 'sample' or 'batch', got {norm!r}")
    step = batch_broadcast(2 * alpha * (snr * z_norm / s_norm) ** 2, x)
    x_mean = x + step * s
    return x_mean + (2 * step).sqrt() * z, x_mean


PREDICTORS: dict[str, Predictor] = {
    "euler_maruyama": euler_maruyama_step,
    "reverse_diffusion": reverse_diffusion_step,
    "ancestral": ancestral_step,
}


@dataclass(frozen=True)
class Corrector:
    """Langevin corrector settings: ``n_steps`` corrector steps of signal-to-noise ratio ``snr`` per time;
    ``norm`` "sample" (reproducible per sample) or "batch" (official; see :func:`langevin_step`)."""

    snr: float = 0.16
    n_steps: int = 1
    norm: str = "sample"


# --- helpers ---------------------------------------------------------------------------------------------
def time_grid(sde: SDE, n_steps: int, eps: float | None = None, dtype=torch.float64) -> Tensor:
    """ts = linspace(T, eps, n_steps + 1)."""
    return torch.linspace(sde.T, sde.eps if eps is None else eps, n_steps + 1, dtype=dtype)


_resolve_generator = resolve_generator


def _initial_state(sde, x_init, generator, dtype, device) -> Tensor:
    if isinstance(x_init, Tensor):
        return x_init
    return sde.prior_sample(tuple(x_init), generator, dtype=dtype, device=device)


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, x: Tensor, t: Tensor) -> Tensor:
    """E[x_0 | x_t] = (x + s_t² ∇log p_t(x)) / a_t (one score evaluation)."""
    s2 = batch_broadcast(sde.std(t) ** 2, x)
    return (x + s2 * score_fn(x, t)) / batch_broadcast(sde.mean_coef(t), x)


# --- samplers --------------------------------------------------------------------------------------------
def pc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    x_init: Tensor | Sequence[int],
    n_steps: int | None = None,
    *,
    generator: Generators | Sequence[int] | Tensor = None,
    predictor: str | Predictor | None = "reverse_diffusion",
    corrector: Corrector | None = Corrector(),
    ts: Tensor | None = None,
    eps: float | None = None,
    denoise: Denoise = "mean",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> SampleResult:
    """Predictor–corrector sampling (Alg. 1; official ``pc_sampler``): at each grid time the corrector runs
    first, then the predictor steps to the next time. ``predictor=None`` gives annealed Langevin dynamics
    (corrector only, the time still advancing), ``corrector=None`` a plain predictor sampler.
    NFE = n_steps × (1[predictor] + corrector.n_steps) (+1 with ``denoise="tweedie"``).
    """
    if ts is None:
        ts = time_grid(sde, n_steps if n_steps is not None else sde.N, eps)
    if predictor is None and corrector is None:
        raise ValueError("need a predictor, a corrector or both")
    step_fn = PREDICTORS[predictor] if isinstance(predictor, str) else predictor
    generator = _resolve_generator(generator)
    x = _initial_state(sde, x_init, generator, dtype, device)
    x_mean = x
    nfe = 0
    B = x.shape[0]
    ts = per_sample_times(ts, B, x.dtype, x.device)
    for i in range(ts.shape[1] - 1):  # Alg. 1 line 2: for i = N-1 .. 0
        t = ts[:, i]
        t_next = ts[:, i + 1]
        if corrector is not None:  # Alg. 1 lines 5-7
            for _ in range(corrector.n_steps):
                z = gaussian_noise(x.shape, generator, dtype=x.dtype, device=x.device)
                x, x_mean = langevin_step(sde, score_fn, x, t, t_next, z, snr=corrector.snr,
                                          norm=corrector.norm)
                nfe += 1
        if step_fn is not None:  # Alg. 1 lines 3-4
            z = gaussian_noise(x.shape, generator, dtype=x.dtype, device=x.device)
            x, x_mean = step_fn(sde, score_fn, x, t, t_next, z)
            nfe += 1
    if denoise == "mean":
        x = x_mean
    elif denoise == "tweedie":
        x = tweedie_denoise(sde, score_fn, x, ts[:, -1])
        nfe += 1
    elif denoise != "none":
        raise ValueError(f"denoise must be 'none', 'mean' or 'tweedie', got {denoise!r}")
    return SampleResult(x, nfe)


def euler_maruyama(score_fn, sde, x_init, n_steps=None, **kwargs) -> SampleResult:
    """Euler–Maruyama on the reverse-time SDE (predictor only)."""
    return pc_sample(score_fn, sde, x_init, n_steps, predictor="euler_maruyama", corrector=None, **kwargs)


def reverse_diffusion(score_fn, sde, x_init, n_steps=None, **kwargs) -> SampleResult:
    """Reverse-diffusion predictor only."""
    return pc_sample(score_fn, sde, x_init, n_steps, predictor="reverse_diffusion", corrector=None, **kwargs)


def ancestral(score_fn, sde, x_init, n_steps=None, **kwargs) -> SampleResult:
    """Ancestral sampling (DDPM for VP, SMLD for VE)."""
    return pc_sample(score_fn, sde, x_init, n_steps, predictor="ancestral", corrector=None, **kwargs)


def annealed_langevin(score_fn, sde, x_init, n_steps=None, *, corrector=Corrector(),
                      **kwargs) -> SampleResult:
    """Corrector-only sampling (annealed Langevin dynamics, Alg. 4 with the time grid of the SDE)."""
    return pc_sample(score_fn, sde, x_init, n_steps, predictor=None, corrector=corrector, **kwargs)


# --- probability-flow ODE ----------------------------------------------------------------------------------
ODE_MAX_STEPS = 10_000
ODE_BACKEND = "auto"  # "solvers" (Dopri5 + PID, per-sample steps), "scipy" (RK45, shared steps) or "auto"


def _integrate_ode(f: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t0: float, t1: float,
                   rtol: float, atol: float) -> tuple[Tensor, Tensor]:
    """Integrate dy/dt = f(t, y) (t of shape (B,)) from t0 to t1; returns (y(t1), NFE per sample (B,)).

    ``ODE_BACKEND="auto"`` uses ``solvers.solve`` with Dopri5 and a PID controller when the package imports
    (per-sample step sizes, so each sample's path is independent of the batch); otherwise scipy's RK45 on
    the flattened batch, as the official code does (one step size shared by the batch).
    """
    if ODE_BACKEND == "scipy":
        return _integrate_ode_scipy(f, y0, t0, t1, rtol, atol)
    try:
        import solvers  # noqa: F401
    except ImportError:
        if ODE_BACKEND == "solvers":
            raise
        return _integrate_ode_scipy(f, y0, t0, t1, rtol, atol)
    return _integrate_ode_solvers(f, y0, t0, t1, rtol, atol)


def _integrate_ode_solvers(f, y0, t0, t1, rtol, atol):
    import solvers

    sol = solvers.solve(solvers.ODETerm(f), solvers.Dopri5(), t0, t1, y0,
                        controller=solvers.PIDController(rtol=rtol, atol=atol), max_steps=ODE_MAX_STEPS)
    if not bool(sol.success.all()):
        raise RuntimeError(f"probability-flow ODE integration failed for {int((~sol.success).sum())} samples "
                           f"(status codes {sol.status.unique().tolist()})")
    return sol.y1, sol.num_fevals


def _integrate_ode_scipy(f, y0, t0, t1, rtol, atol):
    from scipy.integrate import solve_ivp

    shape, dtype, device, B = y0.shape, y0.dtype, y0.device, y0.shape[0]

    def rhs(t, y):
        yt = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        tt = torch.full((B,), t, dtype=dtype, device=device)
        with torch.no_grad():
            return f(tt, yt).reshape(-1).cpu().double().numpy()

    sol = solve_ivp(rhs, (t0, t1), y0.reshape(-1).cpu().double().numpy(), method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE integration failed: {sol.message}")
    y1 = torch.as_tensor(np.asarray(sol.y[:, -1]), dtype=dtype, device=device).reshape(shape)
    return y1, torch.full((B,), int(sol.nfev), dtype=torch.long)


def ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    x_init: Tensor | Sequence[int],
    *,
    generator: Generators | Sequence[int] | Tensor = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    t0: float | Tensor | None = None,
    denoise: Denoise | bool = "tweedie",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> SampleResult:
    """Probability-flow ODE dx/dt = f - g² s / 2 (eq. 13) from ``t0`` (default T; a (B,) tensor starts each
    sample at its own time) to eps with an adaptive Dopri5 (official ``ode_sampler``: RK45, rtol = atol =
    1e-5), then optionally one Tweedie step (``denoise="tweedie"``; ``True``/``False`` are accepted for
    "tweedie"/"none")."""
    if isinstance(denoise, bool):
        denoise = "tweedie" if denoise else "none"
    if denoise not in ("none", "mean", "tweedie"):
        raise ValueError(f"denoise must be 'none', 'mean' or 'tweedie', got {denoise!r}")
    generator = _resolve_generator(generator)
    x = _initial_state(sde, x_init, generator, dtype, device)
    eps = sde.eps if eps is None else eps
    start = sde.T if t0 is None else t0
    if isinstance(start, Tensor) and ODE_BACKEND == "scipy":
        raise ValueError("per-sample start times need the solvers backend")
    rsde = sde.reverse(score_fn, probability_flow=True)
    with torch.no_grad():
        x, nfe = _integrate_ode(lambda t, y: rsde.drift(y, t), x, start, eps, rtol, atol)
    if denoise == "tweedie":
        x = tweedie_denoise(sde, score_fn, x, torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device))
        nfe = nfe + 1
    return SampleResult(x, int(nfe.max()), {"nfe_per_sample": nfe})


# --- the registry interface: sampler(model, x_init, schedule, generator, condition, **options) ---------------
def _grid(model: ScoreModel, schedule, n_steps, eps):
    return schedule if schedule is not None else time_grid(model.sde, n_steps or model.sde.N, eps)


def _predictor_sampler(name: str, predictor: str | None, corrector_default: bool):
    def sampler(model: ScoreModel, x_init: Tensor, schedule: Tensor | None, generator, condition=None, *,
                n_steps: int | None = None, eps: float | None = None, denoise: Denoise = "mean",
                snr: float = 0.16, corrector_steps: int = 1, corrector_norm: str = "sample",
                pc_predictor: str = "reverse_diffusion") -> SampleResult:
        check_unconditional(name, condition)
        corrector = Corrector(snr=snr, n_steps=corrector_steps, norm=corrector_norm) if corrector_default else None
        pred = pc_predictor if name == "pc" else predictor
        return pc_sample(model.score_fn, model.sde, x_init, generator=generator, predictor=pred,
                         corrector=corrector, ts=_grid(model, schedule, n_steps, eps), denoise=denoise)

    sampler.__name__ = sampler.__qualname__ = name.replace("-", "_") + "_sampler"
    return sampler


def _ode_sampler(model: ScoreModel, x_init: Tensor, schedule: Tensor | None, generator, condition=None, *,
                 rtol: float = 1e-5, atol: float = 1e-5, eps: float | None = None,
                 denoise: Denoise = "tweedie") -> SampleResult:
    """``schedule``: None (T -> eps), or a start/end pair (2,) / (B, 2) (per-sample start times)."""
    check_unconditional("ode", condition)
    t0 = None
    if schedule is not None:
        sched = per_sample_times(schedule, x_init.shape[0], x_init.dtype, x_init.device)
        t0, eps = sched[:, 0], float(sched[0, -1])
    return ode_sample(model.score_fn, model.sde, x_init, generator=generator, rtol=rtol, atol=atol, eps=eps,
                      t0=t0, denoise=denoise)


def _tweedie_extra(opts) -> int:
    return 1 if opts.get("denoise") == "tweedie" else 0


for _name, _pred, _corr, _per_step, _desc in [
    ("em", "euler_maruyama", False, lambda o: 1, "Euler-Maruyama on the reverse-time SDE (solvers)"),
    ("reverse-diffusion", "reverse_diffusion", False, lambda o: 1, "reverse-diffusion predictor (SMLD/DDPM chain)"),
    ("ancestral", "ancestral", False, lambda o: 1, "ancestral sampling: DDPM (VP) / SMLD (VE)"),
    ("langevin", None, True, lambda o: int(o.get("corrector_steps") or 1),
     "annealed Langevin dynamics (corrector only)"),
    ("pc", "reverse_diffusion", True, lambda o: 1 + int(o.get("corrector_steps") or 1),
     "predictor-corrector sampler (Song et al. 2021, Alg. 1)"),
]:
    register(SamplerSpec(
        name=_name, family="score-sde", fn=_predictor_sampler(_name, _pred, _corr), description=_desc,
        nfe=lambda n, o, k=_per_step: n * k(o) + _tweedie_extra(o),
        steps_for_nfe=lambda nfe, o, k=_per_step: max(1, (nfe - _tweedie_extra(o)) // k(o)),
    ))
register(SamplerSpec(
    name="ode", family="score-sde", fn=_ode_sampler, adaptive=True,
    description="probability-flow ODE with an adaptive solver (Dopri5 + PID, solvers)",
    nfe=lambda n, o: n, steps_for_nfe=lambda nfe, o: nfe,
))
