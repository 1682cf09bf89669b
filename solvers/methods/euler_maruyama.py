"""Euler–Maruyama for Ito SDEs: strong order 0.5 (1.0 for additive noise), any noise type.

One drift and one diffusion evaluation per step; ODE order 1 when the diffusion vanishes.
"""

import torch

from ._base import AbstractSolver, bview


class EulerMaruyama(AbstractSolver):
    order = 1
    strong_order = 0.5
    accepts_ode = False
    sde_type = "ito"

    def step(self, terms, t, y, dt, state):
        dw = terms.brownian.increment(t, dt)
        y1 = terms.add_prod(torch.addcmul(y, bview(dt, y), terms.vf(t, y)), terms.g(t, y), dw)
        return y1, None, (y, y1), ()
