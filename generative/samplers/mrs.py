"""Samplers for mean-reverting diffusion (image restoration): MRS and the two IR-SDE baselines.

* ``mrs`` — MR Sampler (Li et al., "MRS: A Fast Sampler for Mean Reverting Diffusion based on ODE and SDE
  Solvers", ICLR 2025, arXiv:2502.07856; official code ``grrrute/mr-sampler``, ``utils/sampler.py``): the
  semi-analytic solutions of the PF-ODE and of the reverse SDE in the log-SNR variable lambda_t =
  log alpha_t - log sigma_t, first order and second-order multistep (the first step is first order), in
  data or noise form, from a network that predicts noise, data or velocity (:func:`convert`).
* ``ir-sde`` — IR-SDE's reverse SDE by Euler–Maruyama (Luo et al., ICML 2023; ``Algolzw/image-restoration-sde``
  ``IRSDE.reverse_sde``), through :mod:`solvers` (``EulerMaruyama`` with ``StepTo``).
* ``ir-posterior`` — IR-SDE's posterior sampling: x_s ~ q(x_s | x_t, x0_hat), the exact Gaussian bridge of the
  OU process from t to s.

Both baselines are right at every step count: a step from t to s integrates (t - s) of time (the rate
thetabar(t) - thetabar(s)). The official baselines in mr-sampler take strided grid points but move the state
one training index per step whatever the stride (``IRSDE.reverse_sde`` / ``reverse_posterior`` with
``num_steps`` < 100), so with 10 steps they integrate 0.53 of the 5.30 of rate they should and stop near the
degraded input; the paper's low-NFE baseline numbers come from that code. ``ir-posterior --set
official_unit_step=true`` reproduces that baseline, to show what the paper compared against.
``tests/generative/test_mrs.py`` checks both on the analytic task at 10 steps.

Every step here is the closed-form (exponential-integrator) update of a linear-in-x ODE/SDE or a Gaussian
bridge; only the EM baseline is a generic integrator, and it goes through :mod:`solvers`.

Deviation from the official code, on purpose: alpha, sigma and lambda on a non-integer time come from one
interpolated rate thetabar(t) (:class:`generative.sdes.MRSDE`), so lambda_t = log(alpha_t / sigma_t) holds
exactly; the official interpolates the three tables separately (their lambda is then slightly inconsistent).

Schedules (:func:`mrs_timesteps`): ``uniform-t`` (official ``linspace``), ``logsnr`` (official
``linear-lambda``: uniform in lambda) and ``karras`` (official ``karras-n``: rho = 7 in sigma_t / alpha_t).
The top of each grid is clipped where lambda_t < ``logsnr_min`` (official ``lambda_min = -5``; inactive
at the default lam and eps, as in the official configs).

Final steps (official ``sampling``): with fewer than 10 steps, step i uses order min(order, M - i), so the
second-to-last step is first order, and the final step uses the full order again; with 10 or more every
step after the first is full order. ``lower_order_final=True`` makes the final step first order instead
(the DPM-Solver rule). ``denoise_last=True`` replaces the final step by the data prediction at the last
grid point but one (official option, off by default). NFE = M network calls in every case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from generative.samplers.base import SampleResult, SamplerSpec, register
from generative.sdes import MRSDE, Generators, batch_broadcast, gaussian_noise

__all__ = [
    "MRPredictor", "PARAMS", "FORMS", "SOLVERS", "TIME_SCHEDULES", "convert", "targets", "mrs_timesteps",
    "mrs_sample", "ir_sde_sample", "ir_posterior_sample", "ir_timesteps", "mrs_step",
]

PARAMS = ("noise", "data", "velocity")  # what a network predicts
FORMS = ("data", "noise")  # which quantity the MRS solver integrates
SOLVERS = ("ode", "sde")
TIME_SCHEDULES = ("uniform-t", "logsnr", "karras")

NoiseFn = Callable[[int, tuple[int, ...]], Tensor]


@dataclass(frozen=True)
class MRPredictor:
    """A conditional network as the samplers see it: ``fn(x, mu, t) -> output`` shaped like x, t of shape (B,)
    on the MRSDE time scale [0, T]; ``param`` says what the output is (noise, data or velocity)."""

    fn: Callable[[Tensor, Tensor, Tensor], Tensor]
    sde: MRSDE
    param: str = "noise"

    def __post_init__(self):
        if self.param not in PARAMS:
            raise ValueError(f"unknown parameterisation {self.param!r}; choose from {', '.join(PARAMS)}")


def _coefs(sde: MRSDE, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """alpha_t, sigma_t broadcast to x (t scalar or (B,))."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    return (batch_broadcast(sde.alpha(t.cpu()).to(x), x), batch_broadcast(sde.std(t.cpu()).to(x), x))


def convert(out: Tensor, src: str, dst: str, x: Tensor, mu: Tensor, t, sde: MRSDE) -> Tensor:
    """A prediction of kind ``src`` at (x, t) as kind ``dst`` (noise / data / velocity). With y = x0 - mu,
    x - mu = alpha y + sigma eps, and the velocity v = lam alpha eps - (sigma / lam) y (the VP velocity of the
    lam-normalised residual; official ``convert_model_output``): x0 = alpha x - (sigma / lam) v + (1 - alpha)
    mu and eps = (alpha v + (x - mu) sigma / lam) / lam. The conversions are exact inverses."""
    for p in (src, dst):
        if p not in PARAMS:
            raise ValueError(f"unknown parameterisation {p!r}; choose from {', '.join(PARAMS)}")
    if src == dst:
        return out
    a, s = _coefs(sde, t, x)
    lam = sde.lam
    if src == "noise":
        eps = out
        x0 = mu + (x - mu - s * eps) / a
    elif src == "data":
        x0 = out
        eps = (x - mu - a * (out - mu)) / s
    else:
        x0 = a * x - (s / lam) * out + (1 - a) * mu
        eps = (a * out + (x - mu) * (s / lam)) / lam
    if dst == "data":
        return x0
    if dst == "noise":
        return eps
    return lam * a * eps - (s / lam) * (x0 - mu)


def targets(x0: Tensor, mu: Tensor, eps: Tensor, t, sde: MRSDE) -> dict[str, Tensor]:
    """x_t = mu + alpha (x0 - mu) + sigma eps and the three regression targets for it."""
    a, s = _coefs(sde, t, x0)
    xt = mu + a * (x0 - mu) + s * eps
    return {"x_t": xt, "noise": eps, "data": x0, "velocity": sde.lam * a * eps - (s / sde.lam) * (x0 - mu)}


# ------------------------------------------------------------------------------------------------- schedules
def mrs_timesteps(sde: MRSDE, n_steps: int, kind: str = "logsnr", *, t_min: float = 0.0,
                  logsnr_min: float = -5.0, rho: float = 7.0) -> Tensor:
    """A descending time grid (n_steps + 1,) float64 from t_max to ``t_min``. t_max = T unless lambda_T <
    ``logsnr_min``, then the time where lambda = logsnr_min (the official clip)."""
    if not (isinstance(n_steps, int) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if kind not in TIME_SCHEDULES:
        raise ValueError(f"unknown time schedule {kind!r}; choose from {', '.join(TIME_SCHEDULES)}")
    t_max = torch.tensor(float(sde.T), dtype=torch.float64)
    if float(sde.logsnr(t_max)) < logsnr_min:
        t_max = sde.time_of_logsnr(torch.tensor(logsnr_min, dtype=torch.float64))
    t_lo = torch.tensor(float(t_min), dtype=torch.float64)
    u = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    if kind == "uniform-t":
        ts = t_max + u * (t_lo - t_max)
    elif kind == "logsnr":
        l_hi, l_lo = sde.logsnr(t_max), sde.logsnr(t_lo)
        ts = sde.time_of_logsnr(l_hi + u * (l_lo - l_hi))
    else:
        s_max = float(sde.std(t_max) / sde.alpha(t_max))
        s_min = float(sde.std(t_lo) / sde.alpha(t_lo))
        sig = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        ts = sde.time_of_sigma_ratio(sig)
    ts[0], ts[-1] = t_max, t_lo  # exact ends (the inversions round)
    return ts


# ------------------------------------------------------------------------------------------------- MRS
def mrs_step(x: Tensor, mu: Tensor, q0: Tensor, q1: Tensor | None, h_prev: float | None, s: float, t: float,
             sde: MRSDE, *, form: str, solver: str, order: int, z: Tensor | None) -> Tensor:
    """One MRS step from time s to t < s. ``q0``: the model output at (x, s) in ``form``; ``q1``/``h_prev``:
    the previous step's output and log-SNR step (order 2). Formulas: official ``step_{ode,sde}_{1st,2nd}``
    (the phi_2 "Taylor" multistep correction D1 = (q0 - q1) / r, r = h_prev / h)."""
    st = torch.tensor([s, t], dtype=torch.float64)
    (a_s, a_t), (s_s, s_t), (l_s, l_t) = sde.alpha(st).tolist(), sde.std(st).tolist(), sde.logsnr(st).tolist()
    h = l_t - l_s
    d1 = None
    if order == 2:
        if q1 is None or h_prev is None:
            raise ValueError("a second-order MRS step needs the previous model output")
        d1 = (q0 - q1) * (h / h_prev)
    y = x - mu
    if solver == "ode":
        if form == "data":
            out = mu + (s_t / s_s) * y + (a_t * -math.expm1(-h)) * (q0 - mu)
            if d1 is not None:
                out = out + (a_t * (1 + math.expm1(-h) / h)) * d1
        else:
            out = mu + (a_t / a_s) * y - (s_t * math.expm1(h)) * q0
            if d1 is not None:
                out = out - (s_t * (math.expm1(h) / h - 1)) * d1
        return out
    if form == "data":
        phi1 = -math.expm1(-2 * h)
        out = mu + (s_t / s_s * math.exp(-h)) * y + (a_t * phi1) * (q0 - mu) + (s_t * math.sqrt(phi1)) * z
        if d1 is not None:
            out = out + (a_t * (1 - phi1 / (2 * h))) * d1
    else:
        out = mu + (a_t / a_s) * y - (2 * s_t * math.expm1(h)) * q0 + (s_t * math.sqrt(math.expm1(2 * h))) * z
        if d1 is not None:
            out = out - (2 * s_t * (math.expm1(h) / h - 1)) * d1
    return out


def _noise(noise: NoiseFn | None, i: int, x: Tensor, generator: Generators) -> Tensor:
    if noise is not None:
        return noise(i, tuple(x.shape)).to(x.dtype)
    return gaussian_noise(tuple(x.shape), generator, dtype=x.dtype, device=x.device)


def _grid(model: MRPredictor, schedule, n_steps: int | None, default: int, kind: str, logsnr_min: float,
          rho: float = 7.0) -> Tensor:
    if schedule is not None:
        ts = torch.as_tensor(schedule, dtype=torch.float64).flatten()
        if ts.numel() < 2 or not bool((ts[1:] < ts[:-1]).all()):
            raise ValueError("an MR schedule is a strictly decreasing time grid of at least 2 points")
        return ts
    return mrs_timesteps(model.sde, n_steps or default, kind, logsnr_min=logsnr_min, rho=rho)


def _check_condition(name: str, x: Tensor, condition) -> Tensor:
    if condition is None:
        raise ValueError(f"sampler {name!r} restores an image: pass the degraded image as the condition")
    mu = torch.as_tensor(condition).to(x)
    if mu.shape != x.shape:
        raise ValueError(f"{name}: condition shape {tuple(mu.shape)} differs from the state {tuple(x.shape)}")
    return mu


def mrs_sample(model: MRPredictor, x_init: Tensor, schedule, generator: Generators, condition=None, *,
               n_steps: int | None = None, solver: str = "sde", form: str = "data", order: int = 2,
               time_schedule: str = "logsnr", logsnr_min: float = -5.0, rho: float = 7.0,
               lower_order_final: bool = False, denoise_last: bool = False, clip: bool = False,
               noise: NoiseFn | None = None) -> SampleResult:
    """MR Sampler from x_init (x_T = mu + lam z) to t = schedule[-1]. Defaults: the official ``test.yml``
    (SDE, data form, order 2, uniform log-SNR, 20 steps). ``noise(i, shape)`` supplies step i's Gaussian
    noise instead of ``generator`` (common random numbers across samplers). ``clip`` clamps to [-1, 1]."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown MRS solver {solver!r}; choose from {', '.join(SOLVERS)}")
    if form not in FORMS:
        raise ValueError(f"unknown MRS form {form!r}; choose from {', '.join(FORMS)}")
    if order not in (1, 2):
        raise ValueError(f"MRS order must be 1 or 2, got {order!r}")
    mu = _check_condition("mrs", x_init, condition)
    ts = _grid(model, schedule, n_steps, 20, time_schedule, logsnr_min, rho)
    m = ts.numel() - 1
    sde = model.sde
    lams = sde.logsnr(ts).tolist()
    x = x_init
    q_prev, h_prev = None, None
    nfe = 0
    for i in range(1, m + 1):
        s, t = float(ts[i - 1]), float(ts[i])
        tb = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
        out = model.fn(x, mu, tb)
        nfe += 1
        q0 = convert(out, model.param, form, x, mu, s, sde)
        if i == m and denoise_last:
            x = convert(out, model.param, "data", x, mu, s, sde)
            break
        step_order = 1 if i == 1 else order
        if m < 10 and i < m:
            step_order = min(step_order, m - i)
        if i == m and lower_order_final:
            step_order = 1
        z = _noise(noise, i, x, generator) if solver == "sde" else None
        x = mrs_step(x, mu, q0, q_prev, h_prev, s, t, sde, form=form, solver=solver, order=step_order, z=z)
        q_prev, h_prev = q0, lams[i] - lams[i - 1]
    if clip:
        x = x.clamp(-1, 1)
    return SampleResult(x, nfe, {"t_end": float(ts[-1])})


# ------------------------------------------------------------------------------------------------- IR-SDE
def ir_timesteps(sde: MRSDE, n_steps: int) -> Tensor:
    """The baselines' grid: uniform in t from T to 0 (n_steps + 1 points; 100 steps = the training indices)."""
    return mrs_timesteps(sde, n_steps, "uniform-t", logsnr_min=-math.inf)


class _GivenIncrement:
    def __init__(self, z: Tensor):
        self.z = z

    def increment(self, t, dt, levy=False):
        return self.z * batch_broadcast(dt.abs().sqrt(), self.z)


def ir_sde_sample(model: MRPredictor, x_init: Tensor, schedule, generator: Generators, condition=None, *,
                  n_steps: int | None = None, clip: bool = False, noise: NoiseFn | None = None) -> SampleResult:
    """Euler–Maruyama on IR-SDE's reverse SDE dx = [theta_t (mu - x) - g_t^2 score] dt + g_t dw (backwards in
    t), score = -eps / sigma_t, through ``solvers.EulerMaruyama``: a step from s to t moves (s - t) of time.
    The returned state is the last iterate (as the official)."""
    import solvers

    mu = _check_condition("ir-sde", x_init, condition)
    sde = model.sde
    ts = _grid(model, schedule, n_steps, 100, "uniform-t", -math.inf)
    x = x_init
    B = x.shape[0]
    for i in range(1, ts.numel()):
        s, t = float(ts[i - 1]), float(ts[i])
        tb = torch.full((B,), s, dtype=x.dtype, device=x.device)
        eps = convert(model.fn(x, mu, tb), model.param, "noise", x, mu, s, sde)
        theta_s = float(sde.theta(torch.tensor(s)))  # theta on (ceil(s) - 1, ceil(s)]: the segment below s
        g2_s = 2 * sde.lam**2 * theta_s
        sig_s = float(sde.std(torch.tensor(s)))
        score = -eps / sig_s
        # time runs backwards: tau = -t; d x / d tau = -[theta (mu - x) - g^2 score], diffusion g
        drift = -(theta_s * (mu - x) - g2_s * score)
        z = _noise(noise, i, x, generator)
        term = solvers.SDETerm(lambda tt, y, d=drift: d, lambda tt, y, g=math.sqrt(g2_s): torch.full_like(y, g),
                               noise="diagonal", brownian=_GivenIncrement(z))
        t0 = torch.full((B,), -s, dtype=x.dtype, device=x.device)
        t1 = torch.full((B,), -t, dtype=x.dtype, device=x.device)
        x = solvers.solve(term, solvers.EulerMaruyama(), t0, t1, x,
                          controller=solvers.StepTo(torch.stack([t0, t1], 1))).y1
    if clip:
        x = x.clamp(-1, 1)
    return SampleResult(x, ts.numel() - 1, {"t_end": float(ts[-1])})


def official_grid(sde: MRSDE, n_steps: int) -> Tensor:
    """The official baselines' time points for ``num_steps`` < T: int(t) for t in linspace(1, T, n) reversed."""
    import numpy as np

    return torch.tensor([int(t) for t in reversed(np.linspace(1, sde.T, n_steps))], dtype=torch.float64)


def ir_posterior_sample(model: MRPredictor, x_init: Tensor, schedule, generator: Generators, condition=None,
                        *, n_steps: int | None = None, clip: bool = False, official_unit_step: bool = False,
                        noise: NoiseFn | None = None) -> SampleResult:
    """IR-SDE posterior sampling on any grid: x_s ~ q(x_s | x_t, x0_hat) with A = exp(-(thetabar_t -
    thetabar_s)), B = alpha_t, C = alpha_s (B = A C): mean = mu + A (1 - C^2) / (1 - B^2) (x_t - mu) +
    C (1 - A^2) / (1 - B^2) (x0_hat - mu), variance lam^2 (1 - A^2)(1 - C^2) / (1 - B^2). The final step
    returns its noise-free mean."""
    mu = _check_condition("ir-posterior", x_init, condition)
    sde = model.sde
    if official_unit_step:  # reproduce mr-sampler's baseline: strided labels, one training index per step
        pts = official_grid(sde, n_steps or 100)
        ts = torch.stack([pts, pts - 1], 1).flatten()  # (t, t - 1) pairs: the step actually taken
    else:
        ts = _grid(model, schedule, n_steps, 100, "uniform-t", -math.inf)
    x = x_init
    m = ts.numel() // 2 if official_unit_step else ts.numel() - 1
    for i in range(1, m + 1):
        if official_unit_step:
            s_hi, s_lo = float(ts[2 * i - 2]), float(ts[2 * i - 1])
        else:
            s_hi, s_lo = float(ts[i - 1]), float(ts[i])
        tb = torch.full((x.shape[0],), s_hi, dtype=x.dtype, device=x.device)
        x0 = convert(model.fn(x, mu, tb), model.param, "data", x, mu, s_hi, sde)
        r = sde.rate(torch.tensor([s_hi, s_lo], dtype=torch.float64))
        A2 = math.exp(-2 * float(r[0] - r[1]))
        B2, C2 = math.exp(-2 * float(r[0])), math.exp(-2 * float(r[1]))
        A, C = math.sqrt(A2), math.sqrt(C2)
        mean = mu + (A * (1 - C2) / (1 - B2)) * (x - mu) + (C * (1 - A2) / (1 - B2)) * (x0 - mu)
        if i == m:
            x = mean
            break
        std = sde.lam * math.sqrt(max((1 - A2) * (1 - C2) / (1 - B2), 0.0))
        x = mean + std * _noise(noise, i, x, generator)
    if clip:
        x = x.clamp(-1, 1)
    return SampleResult(x, m, {"t_end": float(ts[-1]), "official_unit_step": official_unit_step})


def _steps(n: int, opts) -> int:
    return n


register(SamplerSpec("mrs", "mrs", mrs_sample,
                     "MR Sampler (ICLR 2025): semi-analytic PF-ODE / reverse-SDE solver in log-SNR, order 1 or 2",
                     nfe=lambda n, o: n, steps_for_nfe=_steps, task_kinds=("restoration",), default_steps=20))
register(SamplerSpec("ir-sde", "mrs", ir_sde_sample,
                     "IR-SDE reverse SDE, Euler–Maruyama (baseline; right at any step count)",
                     nfe=lambda n, o: n, steps_for_nfe=_steps, task_kinds=("restoration",), default_steps=100))
register(SamplerSpec("ir-posterior", "mrs", ir_posterior_sample,
                     "IR-SDE posterior sampling q(x_s | x_t, x0_hat) (baseline; right at any step count)",
                     nfe=lambda n, o: n, steps_for_nfe=_steps, task_kinds=("restoration",), default_steps=100))
