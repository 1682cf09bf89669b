"""Samplers for score / denoiser models. ``score_sde`` holds the samplers of Song et al. (ICLR 2021)."""

from generative.samplers.score_sde import (
    PREDICTORS,
    Corrector,
    SampleResult,
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
    "PREDICTORS",
    "Corrector",
    "SampleResult",
    "ancestral",
    "ancestral_step",
    "annealed_langevin",
    "euler_maruyama",
    "euler_maruyama_step",
    "langevin_step",
    "ode_sample",
    "pc_sample",
    "reverse_diffusion",
    "reverse_diffusion_step",
    "time_grid",
    "tweedie_denoise",
]
