"""Reversible Heun (Kidger et al. 2021) for Stratonovich SDEs and ODEs: strong order 0.5, ODE order 2.

One drift and one diffusion evaluation per step. The carried state ``(z, f(z), g(z))`` makes the step
algebraically reversible: ``backward_step`` reconstructs ``(y_n, z_n)`` from ``(y_{n+1}, z_{n+1})``,
which :class:`~solvers.adjoint.ReversibleAdjoint` uses for exact gradients in O(1) memory.

    z_{n+1} = 2 y_n − z_n + f(z_n) dt + g(z_n) dW
    y_{n+1} = y_n + (f(z_n) + f(z_{n+1})) dt / 2 + (g(z_n) + g(z_{n+1})) dW / 2
"""

import torch

from ._base import AbstractSolver, bview


class ReversibleHeun(AbstractSolver):
    order = 2
    strong_order = 0.5
    sde_type = "stratonovich"
    init_fevals = 1

    def init(self, terms, t0, y0):
        if terms.is_sde:
            return (y0, terms.vf(t0, y0), terms.g(t0, y0))
        return (y0, terms.vf(t0, y0))

    def step(self, terms, t, y, dt, state, dw=None):
        z, fz = state[0], state[1]
        dtb = bview(dt, y)
        t1 = t + dt
        if terms.is_sde:
            if dw is None:
                dw = terms.brownian.increment(t, dt)
            gdw = terms.prod(state[2], dw)
            z1 = 2 * y - z + fz * dtb + gdw
            fz1, gz1 = terms.vf(t1, z1), terms.g(t1, z1)
            y1 = y + 0.5 * ((fz + fz1) * dtb + gdw + terms.prod(gz1, dw))
            new = (z1, fz1, gz1)
        else:
            z1 = torch.addcmul(2 * y - z, fz, dtb)
            fz1 = terms.vf(t1, z1)
            y1 = torch.addcmul(y, 0.5 * (fz + fz1), dtb)
            new = (z1, fz1)
        return y1, None, (y, y1), new

    def backward_step(self, terms, t1, y1, dt, state1, dw=None):
        """Invert one step: from (y_{n+1}, state_{n+1}) at t_{n+1} get (y_n, state_n), dt = t_{n+1} − t_n."""
        z1, fz1 = state1[0], state1[1]
        dtb = bview(dt, y1)
        t0 = t1 - dt
        if terms.is_sde:
            gdw1 = terms.prod(state1[2], dw)
            z0 = 2 * y1 - z1 - fz1 * dtb - gdw1
            fz0, gz0 = terms.vf(t0, z0), terms.g(t0, z0)
            y0 = y1 - 0.5 * ((fz0 + fz1) * dtb + terms.prod(gz0, dw) + gdw1)
            return y0, (z0, fz0, gz0)
        z0 = 2 * y1 - z1 - fz1 * dtb
        fz0 = terms.vf(t0, z0)
        y0 = y1 - 0.5 * (fz0 + fz1) * dtb
        return y0, (z0, fz0)
