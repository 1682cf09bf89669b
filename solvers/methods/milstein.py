"""Milstein's method for Ito SDEs with diagonal noise: strong order 1.0.

``y1 = y + f dt + g dW + ½ g ∂g/∂y (dW² − dt)``, where diagonal noise means ``g_i`` depends on ``y_i`` only.
The derivative comes from autograd (one vector-Jacobian product with ones, exact for diagonal noise) or,
with ``derivative_free=True``, from Platen's finite difference ``(g(ŷ) − g(y)) / √|dt|`` at
``ŷ = y + f dt + g √|dt|`` (same strong order, no autograd). Additive noise is accepted (the correction
vanishes); general noise raises :class:`~solvers.errors.TermSolverMismatchError`.
"""

import torch

from ._base import AbstractSolver, bview


class Milstein(AbstractSolver):
    order = 1
    strong_order = 1.0
    accepts_ode = False
    sde_type = "ito"
    noise_types = ("diagonal", "additive")

    def __init__(self, derivative_free: bool = False):
        self.derivative_free = derivative_free

    def step(self, terms, t, y, dt, state):
        dw = terms.brownian.increment(t, dt)
        dtb = bview(dt, y)
        f = terms.vf(t, y)
        if terms.noise == "additive":  # g does not depend on y: the correction is exactly zero
            g = terms.g(t, y)
            ggp = torch.zeros_like(y)
        elif self.derivative_free:
            g = terms.g(t, y)
            sq = dtb.abs().sqrt()
            g_hat = terms.g(t, y + f * dtb + g * sq)
            safe = torch.where(sq > 0, sq, torch.ones_like(sq))
            ggp = (g_hat - g) / safe
        else:
            create = torch.is_grad_enabled() and y.requires_grad
            with torch.enable_grad():
                yv = y if create else y.detach().requires_grad_(True)
                g = terms.g(t, yv)
                dg = None
                if g.requires_grad:  # a diagonal-noise g that happens not to depend on y has no graph
                    (dg,) = torch.autograd.grad(g, yv, torch.ones_like(g), create_graph=create, allow_unused=True)
            if not create:
                g = g.detach()
            ggp = g * (dg if dg is not None else torch.zeros_like(g))
        y1 = y + f * dtb + g * dw + 0.5 * ggp * (dw * dw - dtb)
        return y1, None, (y, y1), ()
