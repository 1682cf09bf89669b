"""Euler–Heun for Stratonovich SDEs: strong order 0.5 (general noise), predictor on the diffusion only.

``y' = y + g(t, y) dW``; ``y1 = y + f(t, y) dt + (g(t, y) + g(t, y')) dW / 2``.
"""

import torch

from ._base import AbstractSolver, bview


class EulerHeun(AbstractSolver):
    order = 1
    strong_order = 0.5
    accepts_ode = False
    sde_type = "stratonovich"

    def step(self, terms, t, y, dt, state):
        dw = terms.brownian.increment(t, dt)
        gdw = terms.prod(terms.g(t, y), dw)
        gdw_pred = terms.prod(terms.g(t + dt, y + gdw), dw)
        y1 = torch.addcmul(y, bview(dt, y), terms.vf(t, y)) + 0.5 * (gdw + gdw_pred)
        return y1, None, (y, y1), ()
