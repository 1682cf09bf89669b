"""SRA1 (Rößler 2010) for SDEs with additive noise: strong order 1.5, two drift and two diffusion
evaluations per step. Uses the time integral of the Brownian increment ``U = ∫ (W_r - W_t) dr``
(``brownian.increment(..., levy=True)``). Additive noise only: ``g`` must not depend on ``y``.
"""

import torch

from ._base import AbstractSolver, bview


class SRA1(AbstractSolver):
    order = 2
    strong_order = 1.5
    accepts_ode = False
    sde_type = "ito"  # Ito and Stratonovich coincide for additive noise
    noise_types = ("additive",)
    fevals_per_step = 2

    def step(self, terms, t, y, dt, state):
        dw, u = terms.brownian.increment(t, dt, levy=True)
        dtb = bview(dt, y)
        safe = torch.where(dtb != 0, dtb, torch.ones_like(dtb))
        u_over_h = u / safe
        f0 = terms.vf(t, y)
        g0 = terms.g(t, y)  # diffusion at c1 = 0 (stage 2)
        g1 = terms.g(t + dt, y)  # diffusion at c1 = 1 (stage 1)
        # stage 2: H = y + 3/4 f0 dt + 3/2 g(t + dt) U/dt
        h2 = y + 0.75 * f0 * dtb + 1.5 * g1 * u_over_h
        f1 = terms.vf(t + 0.75 * dt, h2)
        y1 = (
            y
            + dtb * (f0 * (1 / 3) + f1 * (2 / 3))
            + g1 * (dw - u_over_h)  # beta1 = (1, 0), beta2 = (-1, 1)
            + g0 * u_over_h
        )
        return y1, None, (y, y1), ()
