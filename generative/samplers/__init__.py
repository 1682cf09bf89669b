"""Samplers for score / denoiser models: one interface and one registry (:mod:`generative.samplers.base`).

One file per family, each registering its samplers: ``score_sde`` (Song et al. 2021: em,
reverse-diffusion, ancestral, langevin, pc, ode), ``karras`` (Karras et al. 2022: karras-heun,
karras-stochastic), ``dmcmc`` (Kim & Ye: Denoising Langevin Gibbs over any integrator). A new sampler is one
file plus one import line here.
"""

from generative.samplers import dmcmc, karras, mrs, score_sde  # noqa: F401  (registration)
from generative.samplers.base import (
    REGISTRY,
    GeneratorBrownian,
    SampleResult,
    SamplerSpec,
    ScoreModel,
    UnknownSamplerError,
    call_sampler,
    get_sampler,
    list_samplers,
    register,
)
from generative.samplers.score_sde import (
    PREDICTORS,
    Corrector,
    ancestral,
    ancestral_step,
    annealed_langevin,
    euler_maruyama,
    euler_maruyama_step,
    langevin_step,
    ode_sample,
    pc_sample,
    reverse_diffusion,
    reverse_diffusion_step,
    time_grid,
    tweedie_denoise,
)

__all__ = [
    "REGISTRY", "GeneratorBrownian", "SampleResult", "SamplerSpec", "ScoreModel", "UnknownSamplerError",
    "call_sampler", "get_sampler", "list_samplers", "register",
    "PREDICTORS", "Corrector", "ancestral", "ancestral_step", "annealed_langevin", "euler_maruyama",
    "euler_maruyama_step", "langevin_step", "ode_sample", "pc_sample", "reverse_diffusion",
    "reverse_diffusion_step", "time_grid", "tweedie_denoise",
]
