"""Forward SDEs of score-based generative modelling (Song et al., ICLR 2021, arXiv:2011.13456).

An :class:`SDE` describes the forward noising process dx = f(x, t) dt + g(t) dw on [0, T], its Gaussian
transition kernel x_t = a_t x_0 + s_t z (``mean_coef`` a_t, ``std`` s_t), the prior p_T, and the discrete
Markov chains it generalises (SMLD for VE, DDPM for VP), which the reverse-diffusion and ancestral samplers
use. ``reverse(score_fn)`` gives the reverse-time SDE (drift f - g^2 s) or the probability-flow ODE
(drift f - g^2 s / 2). Formulas: ``shared/docs/REFERENCE.md``, "Score-based SDEs".

Times are tensors of shape (B,), one per sample; every coefficient comes back with shape (B,) and is
broadcast against x of shape (B, ...) by :func:`batch_broadcast`.

Randomness is always passed in. A ``generator`` argument is a single ``torch.Generator`` (one draw for the
whole batch: fast, reproducible for a fixed batch size), a sequence of generators with one per sample (sample
i depends only on generator i, whatever the batch size; see :func:`gaussian_noise`), or ``None`` (global RNG,
for interactive use only).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None

__all__ = [
    "SDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "ReverseSDE",
    "ScoreFn",
    "Generators",
    "batch_broadcast",
    "gaussian_noise",
    "generators_from_seeds",
    "SDES",
    "build_sde",
    "sde_name",
    "MRSDE",
]


def batch_broadcast(c: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample coefficients ``c`` of shape (B,) to (B, 1, ..., 1) to multiply ``x``."""
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim()))


def generators_from_seeds(seeds: Sequence[int] | Tensor,
                          device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per sample, seeded with ``seeds[i]`` (EDM's per-sample seeding)."""
    seeds = seeds.tolist() if isinstance(seeds, Tensor) else list(seeds)
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def gaussian_noise(
    shape: Sequence[int],
    generator: Generators,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Standard normal noise of ``shape`` = (B, ...).

    With a sequence of B generators, row i is ``torch.randn(shape[1:], generator=generator[i])``, so it
    depends only on generator i (EDM ``generate.py``'s ``StackedRandomGenerator``). That costs one small
    call per sample and step. Measured on a loaded 2-core CPU box: 10,000 rows of 2-D noise take 0.32 s
    (0.1 ms in one draw) — dominant with an analytic score, so pass one generator for large toy batches
    when per-sample reproducibility is not needed; 256 CIFAR-sized rows take 25 ms (18 ms in one draw),
    negligible next to a score network. A single generator draws the whole batch in one call.
    """
    shape = tuple(int(s) for s in shape)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} per-sample generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, dtype=dtype, device=device) for g in generator])


class SDE(abc.ABC):
    """Forward SDE dx = f(x, t) dt + g(t) dw with Gaussian transition x_t = a_t x_0 + s_t z."""

    T: float = 1.0
    eps: float = 1e-3  # default end time of sampling (and start time of likelihood integration)
    N: int = 1000  # number of discretisation steps of the discrete chain (SMLD / DDPM) it generalises

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t)."""

    @abc.abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), shape (B,)."""

    @abc.abstractmethod
    def mean_coef(self, t: Tensor) -> Tensor:
        """a_t, shape (B,)."""

    @abc.abstractmethod
    def std(self, t: Tensor) -> Tensor:
        """s_t, shape (B,)."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the zero-mean isotropic Gaussian prior p_T."""

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean a_t x_0 and std s_t (shape (B, 1, ..., 1)) of p_{0t}(x_t | x_0)."""
        return batch_broadcast(self.mean_coef(t), x0) * x0, batch_broadcast(self.std(t), x0)

    def prior_sample(self, shape: Sequence[int], generator: Generators = None, *, dtype=torch.float32,
                     device="cpu") -> Tensor:
        return self.prior_std * gaussian_noise(shape, generator, dtype=dtype, device=device)

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std^2 I), shape (B,)."""
        d = z[0].numel()
        sq = z.reshape(z.shape[0], -1).pow(2).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * self.prior_std**2) - 0.5 * sq / self.prior_std**2

    def discretize(self, x: Tensor, t: Tensor, n_steps: int | None = None,
                   t_next: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(f_i, G_i) with x_{i+1} = x_i + f_i + G_i z_i the forward chain over one step ending at t.

        The step runs from ``t_next`` (< t) to ``t``; by default ``t_next = t - T / n_steps`` (clamped at 0),
        ``n_steps`` defaulting to ``self.N``. The base class uses the Euler–Maruyama discretisation
        f_i = f(x, t) dt, G_i = g(t) sqrt(dt) (as the official code does for sub-VP); VE and VP override it
        with the SMLD and DDPM chains (paper eqs. 1 and 3, appendix E/F), whose steps are exact transitions.
        """
        t_next = self._previous_time(t, n_steps, t_next)
        dt = batch_broadcast(t - t_next, x)
        return self.drift(x, t) * dt, batch_broadcast(self.diffusion(t), x) * dt.sqrt()

    def _previous_time(self, t: Tensor, n_steps: int | None, t_next: Tensor | None) -> Tensor:
        if t_next is not None:
            return t_next
        return (t - self.T / (n_steps or self.N)).clamp_min(0.0)

    # --- the equivalent VE noise level σ̃(t) = s_t / a_t (Karras et al. 2022, "σ-space") ---------------
    # x_t / a_t = x_0 + σ̃(t) z, so every SDE here is a VE process in x̃ = x / a_t with noise level σ̃(t).
    def sigma_tilde(self, t: Tensor) -> Tensor:
        """σ̃(t) = std(t) / mean_coef(t), increasing in t."""
        return self.std(t) / self.mean_coef(t)

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """The inverse of :meth:`sigma_tilde` (closed form for VE and VP)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form inverse of sigma_tilde")

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """Reverse-time SDE dx = [f - g^2 s] dt + g dw̄ (eq. 6), or the probability-flow ODE
        dx = [f - g^2 s / 2] dt (eq. 13) with ``probability_flow=True``."""
        return ReverseSDE(self, score_fn, probability_flow)


@dataclass(frozen=True)
class ReverseSDE:
    """Reverse-time SDE / probability-flow ODE of ``sde`` for a score model (official ``SDE.reverse``).

    Each of ``drift``, ``sde`` and ``discretize`` evaluates the score once.
    """

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def _weight(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        g2 = batch_broadcast(self.forward.diffusion(t) ** 2, x)
        return self.forward.drift(x, t) - g2 * self.score_fn(x, t) * self._weight

    def diffusion(self, t: Tensor) -> Tensor:
        g = self.forward.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.drift(x, t), self.diffusion(t)

    def discretize(self, x: Tensor, t: Tensor, n_steps: int | None = None,
                   t_next: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reverse chain x_{i} = x_{i+1} - f_{i+1} + G_{i+1}^2 s + G_{i+1} z (paper eq. 46): returns
        (rev_f, rev_G) with x_next = x - rev_f + rev_G z."""
        f, G = self.forward.discretize(x, t, n_steps, t_next)
        rev_f = f - G**2 * self.score_fn(x, t) * self._weight
        rev_G = torch.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


class VPSDE(SDE):
    """Variance preserving SDE, the continuous limit of DDPM: dx = -β(t)x/2 dt + sqrt(β(t)) dw."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        self.beta_0, self.beta_1, self.N = float(beta_min), float(beta_max), int(N)
        self.eps = 1e-3

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_mean_coef(self, t: Tensor) -> Tensor:
        """c(t) = log a_t = -t^2 (β1 - β0) / 4 - t β0 / 2."""
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * batch_broadcast(self.beta(t), x) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def mean_coef(self, t: Tensor) -> Tensor:
        return self.log_mean_coef(t).exp()

    def std(self, t: Tensor) -> Tensor:
        return (-torch.expm1(2.0 * self.log_mean_coef(t))).sqrt()

    @property
    def prior_std(self) -> float:
        return 1.0

    def step_beta(self, t: Tensor, t_next: Tensor) -> Tensor:
        """DDPM β of the step t_next -> t: 1 - (a_t / a_{t_next})^2 (≈ β(t) dt; exact transition)."""
        return -torch.expm1(2.0 * (self.log_mean_coef(t) - self.log_mean_coef(t_next)))

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        # σ̃² = e^{-2c} - 1  =>  c = -log(1 + σ̃²)/2 = -t²(β1-β0)/4 - tβ0/2: the positive root of the quadratic
        c = -0.5 * torch.log1p(sigma**2)
        a, b = 0.25 * (self.beta_1 - self.beta_0), 0.5 * self.beta_0
        if a == 0:
            return -c / b
        return (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)

    def discretize(self, x, t, n_steps=None, t_next=None):
        # DDPM chain x_i = sqrt(1 - β_i) x_{i-1} + sqrt(β_i) z (paper eq. 3). The official code indexes
        # linspace(β0/N, β1/N, N); we take β_i from the marginal so that the chain is exact for any grid.
        beta = batch_broadcast(self.step_beta(t, self._previous_time(t, n_steps, t_next)), x)
        return (1.0 - beta).sqrt() * x - x, beta.sqrt()


class SubVPSDE(VPSDE):
    """Sub-VP SDE: VP drift, g^2 = β(t)(1 - e^{-2β0 t - (β1-β0) t^2}); its std 1 - a_t^2 bounds VP's."""

    def diffusion(self, t: Tensor) -> Tensor:
        return (self.beta(t) * -torch.expm1(4.0 * self.log_mean_coef(t))).sqrt()

    def std(self, t: Tensor) -> Tensor:
        return -torch.expm1(2.0 * self.log_mean_coef(t))

    def discretize(self, x, t, n_steps=None, t_next=None):
        return SDE.discretize(self, x, t, n_steps, t_next)  # no discrete chain: Euler–Maruyama

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        raise NotImplementedError("sub-VP has no closed-form inverse of sigma_tilde")


class VESDE(SDE):
    """Variance exploding SDE, the continuous limit of SMLD: dx = sqrt(d σ^2/dt) dw,
    σ(t) = σmin (σmax/σmin)^t.

    As in the official code, ``std(t) = σ(t)`` (not sqrt(σ(t)^2 - σmin^2)): the perturbed distributions
    are p_t = p_data * N(0, σ(t)^2 I), which solve the SDE's Fokker–Planck
    equation from p_data * N(0, σmin^2).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        self.sigma_min, self.sigma_max, self.N = float(sigma_min), float(sigma_max), int(N)
        self.eps = 1e-5

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))

    def mean_coef(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def std(self, t: Tensor) -> Tensor:
        return self.sigma(t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def discretize(self, x, t, n_steps=None, t_next=None):
        # SMLD chain x_i = x_{i-1} + sqrt(σ_i^2 - σ_{i-1}^2) z (paper eq. 1), σ_{i-1} = σ(t_next). The
        # official code's grid ends with σ_{-1} = 0; here the chain ends at σ(t_next) >= σ(0) = σmin.
        t_next = self._previous_time(t, n_steps, t_next)
        G = (self.sigma(t) ** 2 - self.sigma(t_next) ** 2).sqrt()
        return torch.zeros_like(x), batch_broadcast(G, x)


# One table of SDE names for the whole suite: canonical short names, with the checkpoint-sidecar spellings
# ("vesde", …) and "sub-vp" accepted as aliases.
SDES: dict[str, type[SDE]] = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
_ALIASES = {"vpsde": "vp", "subvpsde": "subvp", "sub-vp": "subvp", "vesde": "ve"}


def sde_name(name: str) -> str:
    """Canonical name (``vp``, ``subvp``, ``ve``) of an SDE name or alias; ValueError if unknown."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in SDES:
        raise ValueError(f"unknown SDE {name!r}; choose from {', '.join(SDES)}")
    return key


def build_sde(name: str, **kwargs) -> SDE:
    """An SDE by name or alias with constructor keyword arguments (e.g. ``build_sde("ve", sigma_max=20)``)."""
    return SDES[sde_name(name)](**kwargs)


class MRSDE:
    """Mean-reverting SDE of IR-SDE (Luo et al., ICML 2023, arXiv:2301.11699) and MRS (Li et al., ICLR 2025,
    arXiv:2502.07856): dx = theta_t (mu - x) dt + sigma_t dw with sigma_t^2 = 2 lam^2 theta_t, conditioned on a
    degraded image ``mu`` (one per sample, shaped like x).

    Schedule (IR-SDE's ``cosine``): ``thetas[i] = 1 - abar_cos(i + 1)``, i = 0..T, from a cosine alpha-bar over
    T + 2 points (s = 0.008), and the time scale ``dt = -log(eps) / sum(thetas)`` so that alpha_T = eps.
    Time runs over t in [0, T] on the training index scale; the integrated rate thetabar(t) = int_0^t theta is
    the cumulative sum times dt at the integers and linear in between (theta_t is constant on each (i-1, i]).
    We take the cumulative sum *without* IR-SDE's "- thetas[0]", as MRS does: then alpha_0 < 1, sigma_0 > 0 and
    the log-SNR stays finite at t = 0, the last point of every sampling grid.

    Marginals: x_t = mu + alpha_t (x0 - mu) + sigma_t eps, alpha_t = exp(-thetabar(t)), sigma_t =
    lam sqrt(1 - alpha_t^2) (the marginal std; ``g2`` is the squared diffusion coefficient). Prior: x_T = mu +
    lam z. ``lam`` is on the data's own scale: IR-SDE's 50/255 on [0, 1] images is 100/255 on the suite's
    [-1, 1] images (the default).

    ``logsnr`` is MRS's lambda_t = log alpha_t - log sigma_t (half the log signal-to-noise ratio of the residual
    x - mu); it decreases in t. ``time_of_logsnr`` and ``time_of_sigma_ratio`` invert it exactly (alpha is a
    function of lambda alone: alpha^2 = lam^2 e^{2 lambda} / (1 + lam^2 e^{2 lambda})).
    """

    def __init__(self, lam: float = 100.0 / 255.0, T: int = 100, eps: float = 0.005, cosine_s: float = 0.008):
        if not (lam > 0 and math.isfinite(lam)):
            raise ValueError(f"MRSDE: lam must be positive and finite, got {lam}")
        if not (isinstance(T, int) and T >= 2):
            raise ValueError(f"MRSDE: T must be an integer >= 2, got {T!r}")
        if not 0 < eps < 1:
            raise ValueError(f"MRSDE: eps must be in (0, 1), got {eps}")
        self.lam, self.T, self.eps = float(lam), T, float(eps)
        tp = T + 2
        grid = torch.linspace(0, tp, tp + 1, dtype=torch.float64)
        abar = torch.cos(((grid / tp) + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        abar = abar / abar[0]
        thetas = 1 - abar[1:-1]  # T + 1 values, index 0..T
        cumsum = torch.cumsum(thetas, 0)
        self.dt = -math.log(eps) / float(cumsum[-1])
        self.thetas = thetas
        self.rate_table = cumsum * self.dt  # thetabar at t = 0, 1, ..., T

    # ---- schedule ----

    @staticmethod
    def _t64(t) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64)

    def rate(self, t) -> Tensor:
        """thetabar(t), float64, piecewise linear between the integers."""
        t = self._t64(t).clamp(0, self.T)
        i = t.floor().clamp(max=self.T - 1).long()
        frac = t - i
        table = self.rate_table
        return table[i] + frac * (table[i + 1] - table[i])

    def theta(self, t) -> Tensor:
        """theta_t (the drift rate, per unit t): constant on (i-1, i], float64."""
        t = self._t64(t).clamp(0, self.T)
        i = t.ceil().clamp(min=1).long()
        return self.rate_table[i] - self.rate_table[i - 1]

    def g2(self, t) -> Tensor:
        """Squared diffusion coefficient sigma_t^2 = 2 lam^2 theta_t."""
        return 2 * self.lam**2 * self.theta(t)

    def alpha(self, t) -> Tensor:
        return torch.exp(-self.rate(t))

    def std(self, t) -> Tensor:
        """Marginal std sigma_t = lam sqrt(1 - alpha_t^2) (IR-SDE's ``sigma_bars``)."""
        return self.lam * torch.sqrt(-torch.expm1(-2 * self.rate(t)))

    def logsnr(self, t) -> Tensor:
        """lambda_t = log alpha_t - log sigma_t."""
        r = self.rate(t)
        return -r - math.log(self.lam) - 0.5 * torch.log(-torch.expm1(-2 * r))

    def time_of_rate(self, rate) -> Tensor:
        r = self._t64(rate).clamp(float(self.rate_table[0]), float(self.rate_table[-1]))
        i = torch.searchsorted(self.rate_table, r, right=True).clamp(1, self.T)
        lo, hi = self.rate_table[i - 1], self.rate_table[i]
        return (i - 1).double() + (r - lo) / (hi - lo)

    def time_of_logsnr(self, lam_t) -> Tensor:
        """The t with logsnr(t) = lam_t (clamped to [0, T])."""
        lt = self._t64(lam_t)
        log_a2 = 2 * math.log(self.lam) + 2 * lt - torch.log1p(self.lam**2 * torch.exp(2 * lt))
        return self.time_of_rate(-0.5 * log_a2)

    def time_of_sigma_ratio(self, s) -> Tensor:
        """The t with sigma_t / alpha_t = s (Karras' sigma of the residual; alpha = lam / sqrt(s^2 + lam^2))."""
        s = self._t64(s)
        return self.time_of_rate(0.5 * torch.log1p((s / self.lam) ** 2))

    # ---- distributions ----

    def marginal(self, x0: Tensor, mu: Tensor, t) -> tuple[Tensor, Tensor]:
        """Mean and std of x_t | x0, mu (t of shape (B,), std broadcast to x)."""
        t = torch.as_tensor(t).cpu()  # the schedule tables live on the CPU; coefficients move to x0's device
        a = batch_broadcast(self.alpha(t).to(x0), x0)
        return mu + a * (x0 - mu), batch_broadcast(self.std(t).to(x0), x0)

    def prior_sample(self, mu: Tensor, generator: Generators = None) -> Tensor:
        """x_T = mu + lam z (IR-SDE's ``noise_state``; it drops the eps-sized residual of x0)."""
        return mu + self.lam * gaussian_noise(tuple(mu.shape), generator, dtype=mu.dtype, device=mu.device)

    def config(self) -> dict:
        return {"sde": "mr", "lam": self.lam, "T": self.T, "eps": self.eps}
