"""Exact likelihoods of score-based models through the probability-flow ODE (Song et al. 2021,
sec. 4.3, app. D.2).

Along the probability-flow ODE dx/dt = f̃(x, t) = f(x, t) - ½ g(t)² s(x, t), the density obeys
d log p_t(x(t)) / dt = -∇·f̃(x(t), t), so for a data point x = x(eps)

    log p_eps(x) = log p_T(x(T)) + ∫_eps^T ∇·f̃(x(t), t) dt,

integrated jointly with x(t) from eps to T (official ``likelihood.py``). The divergence is the
Hutchinson–Skilling estimate ∇·f̃ ≈ vᵀ (∂f̃/∂x) v with one Rademacher (or Gaussian) probe v per sample, fixed
over the solve (an unbiased estimate of log p), or exact (D backward passes, for low dimension).

Bits per dimension: bpd = -log p(x) / (D ln 2) + offset. For 8-bit images, data k ∈ {0..255} is dequantised
as y = (k + u) / 256, u ~ U[0, 1), then mapped to [-1, 1] by 2y - 1; a density on [-1, 1]^D is 2^-D times
the density on [0, 1]^D, and the discrete probability of k is ≥ 256^-D times the latter's, so
bpd_discrete ≤ -log2 p_[-1,1](x) / D + 8 - 1, i.e. offset = 7 (REFERENCE.md; the official code's
``offset = 7 - inverse_scaler(-1)``; offset 8 for data in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from generative.samplers.score_sde import _integrate_ode, _resolve_generator
from generative.sdes import SDE, Generators, ScoreFn

__all__ = ["LikelihoodResult", "log_likelihood", "bits_per_dim", "dequantize", "image_bits_per_dim",
           "IMAGE_BPD_OFFSET"]

IMAGE_BPD_OFFSET = 7.0  # 8-bit data dequantised and scaled to [-1, 1]


@dataclass
class LikelihoodResult:
    logp: Tensor  # (B,) log p_eps(x) (an unbiased estimate with Hutchinson probes)
    prior_logp: Tensor  # (B,) log p_T(x(T))
    delta_logp: Tensor  # (B,) ∫_eps^T ∇·f̃ dt
    z: Tensor  # (B, ...) x(T), the latent code
    nfe: Tensor  # (B,) evaluations of the augmented vector field (each: one score call + one backward)


def _probe(shape, generator: Generators, kind: str, dtype, device) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        v = torch.randn(shape, generator=generator, dtype=dtype, device=device) if kind == "gaussian" else (
            torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1)
        return v
    rows = []
    for g in generator:  # per-sample generators: probe i depends on generator i only
        if kind == "gaussian":
            rows.append(torch.randn(shape[1:], generator=g, dtype=dtype, device=device))
        else:
            rows.append(torch.randint(0, 2, shape[1:], generator=g, device=device).to(dtype) * 2 - 1)
    return torch.stack(rows)


def log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    *,
    generator: Generators | Sequence[int] | Tensor = None,
    probe: str = "rademacher",
    n_probes: int = 1,
    exact_divergence: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
) -> LikelihoodResult:
    """log p_eps(x) of the model's probability-flow ODE for data x of shape (B, ...).

    ``probe``: "rademacher" (default, as the paper) or "gaussian"; ``exact_divergence=True`` takes the
    trace of the Jacobian with D backward passes instead; ``n_probes`` > 1 averages several probes per
    sample (one backward pass each) to reduce the estimator's variance.
    ``generator``: one generator, per-sample
    generators or seeds (for the probes). The ODE runs from eps to T with rtol/atol (paper: 1e-5).
    """
    eps = sde.eps if eps is None else eps
    shape, B = x.shape, x.shape[0]
    D = x[0].numel()
    generator = _resolve_generator(generator)
    probes = [] if exact_divergence else [_probe(shape, generator, probe, x.dtype, x.device)
                                          for _ in range(n_probes)]
    rsde = sde.reverse(score_fn, probability_flow=True)

    def augmented(t: Tensor, y: Tensor) -> Tensor:
        with torch.enable_grad():
            xt = y[:, :D].reshape(shape).detach().requires_grad_(True)
            drift = rsde.drift(xt, t)
            if exact_divergence:
                div = torch.zeros(B, dtype=y.dtype, device=y.device)
                flat = drift.reshape(B, D)
                for i in range(D):
                    (gi,) = torch.autograd.grad(flat[:, i].sum(), xt, retain_graph=i < D - 1)
                    div = div + gi.reshape(B, D)[:, i]
            else:
                div = torch.zeros(B, dtype=y.dtype, device=y.device)
                for j, v in enumerate(probes):
                    (grad_v,) = torch.autograd.grad((drift * v).sum(), xt, retain_graph=j < len(probes) - 1)
                    div = div + (grad_v * v).reshape(B, D).sum(-1) / len(probes)
        return torch.cat([drift.detach().reshape(B, D), div.detach()[:, None]], dim=1)

    y0 = torch.cat([x.reshape(B, D), torch.zeros(B, 1, dtype=x.dtype, device=x.device)], dim=1)
    with torch.no_grad():
        y1, nfe = _integrate_ode(augmented, y0, eps, sde.T, rtol, atol)
    z = y1[:, :D].reshape(shape)
    delta = y1[:, D]
    prior = sde.prior_logp(z)
    return LikelihoodResult(prior + delta, prior, delta, z, nfe)


def bits_per_dim(score_fn: ScoreFn, sde: SDE, x: Tensor, *, offset: float = 0.0, **kwargs) -> Tensor:
    """Per-sample bits/dim -log p(x) / (D ln 2) + offset; kwargs as :func:`log_likelihood`."""
    res = log_likelihood(score_fn, sde, x, **kwargs)
    return -res.logp / (x[0].numel() * math.log(2)) + offset


def dequantize(images: Tensor, generator: Generators = None) -> Tensor:
    """8-bit images (uint8 in {0..255}, or floats k/255 in [0, 1]) to uniformly dequantised data in [-1, 1):
    y = (k + u) / 256 with u ~ U[0, 1)^D (one generator, or per-sample generators), returned as 2y - 1."""
    if images.dtype == torch.uint8:
        k = images.to(torch.float64)
    else:
        k = (images.to(torch.float64) * 255).round()
    if generator is None or isinstance(generator, torch.Generator):
        u = torch.rand(k.shape, generator=generator, dtype=torch.float64, device=k.device)
    else:
        u = torch.stack([torch.rand(k.shape[1:], generator=g, dtype=torch.float64, device=k.device)
                         for g in generator])
    dtype = images.dtype if images.dtype.is_floating_point else torch.float32
    return (2 * (k + u) / 256 - 1).to(dtype)


def image_bits_per_dim(score_fn: ScoreFn, sde: SDE, images: Tensor, *,
                       generator: Generators | Sequence[int] | Tensor = None, **kwargs) -> Tensor:
    """Bits/dim of 8-bit images: dequantise (with ``generator``), then :func:`bits_per_dim` with offset 7.
    The same generator then draws the Hutchinson probes."""
    generator = _resolve_generator(generator)
    x = dequantize(images, generator)
    return bits_per_dim(score_fn, sde, x, offset=IMAGE_BPD_OFFSET, generator=generator, **kwargs)
