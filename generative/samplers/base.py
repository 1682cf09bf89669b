"""The one sampler interface and the one sampler registry of the suite.

A sampler is a function ``sampler(model, x_init, schedule, generator, condition=None, **options)``:

* ``model`` — a :class:`ScoreModel`: the score ``score_fn(x, t) = ∇log p_t(x)``, the forward SDE it belongs
  to, and (for Denoising MCMC) a noise-level classifier;
* ``x_init`` — the initial state (B, ...), already drawn (the prior, or a chain state);
* ``schedule`` — the sampler's grid: a time grid ``(N + 1,)`` / per-sample ``(B, N + 1)`` for the score-SDE
  samplers, a noise-level grid for the Karras samplers, ``None`` for the sampler's default from ``n_steps``;
* ``generator`` — one ``torch.Generator`` for the batch, or one per sample (sample i then depends only on
  generator i); never the global RNG in the suite;
* ``condition`` — an optional conditioning input (restoration tasks); unconditional samplers refuse one.

It returns a :class:`SampleResult` (samples, NFE per sample, and whatever else it measured in ``info``).

Each sampler is registered once, with :func:`register`, as a :class:`SamplerSpec`: its name, family, NFE
accounting (``nfe(n_steps, options)`` and its inverse ``steps_for_nfe``), supported task kinds and default
schedule. The suite's methods, runs and studies all read :data:`REGISTRY`; adding a sampler is one file (the
function and its ``register(...)`` line) and one import line in ``generative/samplers/__init__.py``.

Where the steps live: every step that integrates an ODE or SDE (Euler–Maruyama, Heun / Karras, the
probability-flow ODE) goes through :mod:`solvers`. Discrete-time Markov chains stay here, in ``generative``:
the reverse-diffusion and ancestral chains (SMLD / DDPM), the Langevin corrector, the Karras churn move and
the Denoising-MCMC Langevin and Gibbs moves. Each file says which of its steps are which.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from generative.sdes import SDE, Generators, ScoreFn, gaussian_noise, generators_from_seeds

__all__ = [
    "SampleResult",
    "ScoreModel",
    "SamplerSpec",
    "REGISTRY",
    "register",
    "get_sampler",
    "list_samplers",
    "call_sampler",
    "resolve_generator",
    "GeneratorBrownian",
    "UnknownSamplerError",
]


@dataclass
class SampleResult:
    x: Tensor  # samples (B, ...)
    nfe: int  # score evaluations per sample (max over the batch for adaptive solvers)
    info: dict = field(default_factory=dict)  # e.g. solver status, per-sample NFE, classifier calls


@dataclass(frozen=True)
class ScoreModel:
    """What a sampler may use of a model: the score, its SDE, and optionally a noise-level classifier
    ``classifier(x) -> (B, J)`` log-probabilities over the grid ``classifier_sigmas`` (J,) (DMCMC)."""

    score_fn: ScoreFn
    sde: SDE
    classifier: Callable[[Tensor], Tensor] | None = None
    classifier_sigmas: Tensor | None = None


class UnknownSamplerError(KeyError, ValueError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    family: str  # "score-sde", "karras", "dmcmc", …
    fn: Callable[..., SampleResult]
    description: str
    # NFE accounting, once: score evaluations per sample for a step count, and the step count for a budget
    nfe: Callable[[int, Mapping[str, Any]], int]
    steps_for_nfe: Callable[[int, Mapping[str, Any]], int]
    task_kinds: tuple[str, ...] = ("generation",)
    adaptive: bool = False  # NFE set by a tolerance (ode): ``nfe``/``steps_for_nfe`` are not used
    needs_classifier: bool = False  # needs model.classifier (DMCMC)
    default_steps: int = 1000

    def options(self) -> set[str]:
        """Keyword options the sampler function accepts."""
        return _keyword_options(self.fn)


REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"sampler {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get_sampler(name: str) -> SamplerSpec:
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownSamplerError(f"unknown sampler {name!r}{hint} (known: {', '.join(sorted(REGISTRY))})")


def list_samplers(family: str | None = None) -> list[SamplerSpec]:
    return [s for s in REGISTRY.values() if family is None or s.family == family]


def _keyword_options(fn) -> set[str]:
    params = inspect.signature(fn).parameters
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def call_sampler(spec: SamplerSpec, model: ScoreModel, x_init: Tensor, schedule: Tensor | None,
                 generator, condition=None, **options) -> SampleResult:
    """Call ``spec.fn`` with the options it accepts (a run's config holds every sampler's options; each
    sampler takes its own). ``None`` values are left out, so the sampler's default applies."""
    accepted = spec.options()
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return spec.fn(model, x_init, schedule, generator, condition, **kwargs)


def resolve_generator(generator: Generators | Sequence[int] | Tensor) -> Generators:
    """A generator, a sequence of per-sample generators, or seeds (-> one generator per sample)."""
    if isinstance(generator, Tensor) or (
        isinstance(generator, Sequence) and len(generator) > 0 and not isinstance(generator[0], torch.Generator)
    ):
        return generators_from_seeds(generator)
    return generator


class GeneratorBrownian:
    """Brownian increments for :func:`solvers.solve` drawn from our generator(s), in call order:
    ``increment(t, dt) = sqrt(|dt|) z`` with z from :func:`generative.sdes.gaussian_noise`, so a sequence of
    per-sample generators keeps sample i dependent on generator i only. ``last`` is the latest increment
    (for the noise-free mean of the last step)."""

    def __init__(self, shape: Sequence[int], generator: Generators, *, dtype=torch.float32, device="cpu"):
        self.shape, self.generator, self.dtype, self.device = tuple(shape), generator, dtype, device
        self.last: Tensor | None = None

    def increment(self, t: Tensor, dt: Tensor, levy: bool = False):
        if levy:
            raise NotImplementedError("GeneratorBrownian has no Lévy area (use solvers.BrownianInterval)")
        z = gaussian_noise(self.shape, self.generator, dtype=self.dtype, device=self.device)
        sq = dt.abs().sqrt().reshape((-1,) + (1,) * (len(self.shape) - 1))
        self.last = z * sq
        return self.last


def check_unconditional(name: str, condition) -> None:
    if condition is not None:
        raise ValueError(f"sampler {name!r} is unconditional; it takes no condition")


def per_sample_times(schedule: Tensor, batch: int, dtype, device) -> Tensor:
    """A grid ``(N + 1,)`` or ``(B, N + 1)`` as a ``(B, N + 1)`` tensor."""
    schedule = torch.as_tensor(schedule).to(dtype=dtype, device=device)
    if schedule.dim() == 1:
        return schedule.unsqueeze(0).expand(batch, schedule.shape[0])
    if schedule.dim() == 2 and schedule.shape[0] == batch:
        return schedule
    raise ValueError(f"a schedule must be (N + 1,) or (B, N + 1) with B = {batch}, got {tuple(schedule.shape)}")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b > 0 else math.inf
