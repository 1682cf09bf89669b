"""How gradients flow through a solve (the ``adjoint=`` option of :func:`solvers.solve`).

* :class:`DirectAdjoint` (default): autograd records every step ("discretise-then-optimise"); exact
  gradients of the computed solution, memory O(steps).
* :class:`CheckpointAdjoint`: the loop runs in segments of ``every`` steps, each wrapped in
  ``torch.utils.checkpoint``; only segment boundaries are stored and segments are recomputed in the
  backward pass. Same gradients as direct backprop, memory O(steps / every + every). SDEs need a
  replayable Brownian path (:class:`~solvers.brownian.BrownianInterval`).
* :class:`BacksolveAdjoint`: ODEs only. The forward solve runs without graph; the backward pass solves
  the adjoint ODE ``da/dt = -a ∂f/∂y`` backwards together with ``y`` (torchdiffeq's "adjoint method"),
  per sample, with the same solver and controller. Parameter gradients are accumulated after every
  accepted step from the stage vector-Jacobian products (one extra backward per step), which keeps
  per-sample step sizes possible. Memory O(1) in the number of steps; gradients agree with backprop up
  to the solver tolerance.
* :class:`ReversibleAdjoint`: with :class:`~solvers.methods.ReversibleHeun` on a fixed grid. The backward
  pass reconstructs each earlier state algebraically and backpropagates through one step at a time:
  gradients equal direct backprop to floating-point tolerance with O(1) memory (except that with
  :class:`~solvers.brownian.BrownianIncrements` the increments are stored; use ``BrownianInterval`` to
  avoid that).

Parameters are taken from ``params=`` or, when the vector fields are ``nn.Module``\\ s, from them.
Gradients with respect to ``t0``/``t1`` are not provided by the O(1)-memory adjoints.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ._loop import Problem, fixed_grid, grid_steps, integrate
from .brownian import BrownianInterval
from .errors import SolveConfigError, TermSolverMismatchError
from .methods._base import ExplicitRK, bview
from .methods.reversible_heun import ReversibleHeun
from .solution import Solution
from .terms import CDETerm, ODETerm


def _collect_params(terms, params):
    if params is not None:
        return [q for q in params if q.requires_grad]
    out = []
    for fn in (getattr(terms, "vector_field", None), getattr(terms, "drift", None), getattr(terms, "diffusion", None)):
        if isinstance(fn, torch.nn.Module):
            out.extend(q for q in fn.parameters() if q.requires_grad)
    return out


class DirectAdjoint:
    def run(self, p: Problem) -> Solution:
        return integrate(p)


@dataclass(frozen=True)
class CheckpointAdjoint:
    every: int = 16

    def run(self, p: Problem) -> Solution:
        if p.terms.is_sde and not isinstance(p.terms.brownian, BrownianInterval):
            raise SolveConfigError("CheckpointAdjoint recomputes steps: use a BrownianInterval for SDEs")
        return integrate(p, checkpoint_every=self.every)


class _AugmentedTerm:
    """Vector field of (y, a) for the backward adjoint solve; records stages for parameter gradients."""

    is_sde = False

    def __init__(self, term, shape, params):
        self.term, self.shape, self.params = term, shape, params
        self.n = 1
        for s in shape:
            self.n *= s
        self.records = []

    def vf(self, t, z):
        n = self.n
        b = z.shape[0]
        with torch.enable_grad():
            y = z[:, :n].reshape(b, *self.shape).detach().requires_grad_(True)
            a = z[:, n:].reshape(b, *self.shape)
            fy = self.term.vf(t, y)
            (vjp,) = torch.autograd.grad(fy, y, a, retain_graph=bool(self.params), allow_unused=True)
        if vjp is None:
            vjp = torch.zeros_like(y)
        if self.params:
            self.records.append((fy, a))
        return torch.cat([fy.detach().reshape(b, n), -vjp.reshape(b, n)], 1)


class _BacksolveFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, holder, y0, *params):
        p = holder["problem"]
        with torch.no_grad():
            sol = integrate(p)
        holder["solution"] = sol
        ctx.holder = holder
        ctx.save_for_backward(sol.ys, sol.ts)
        return sol.ys

    @staticmethod
    def backward(ctx, grad_ys):
        ys, ts = ctx.saved_tensors
        holder = ctx.holder
        p: Problem = holder["problem"]
        params = holder["params"]
        shape = p.y0.shape[1:]
        b = p.y0.shape[0]
        n = p.y0[0].numel()
        term = _AugmentedTerm(p.terms, shape, params)
        solver = copy.copy(p.solver)
        if isinstance(solver, ExplicitRK) and solver.fsal:
            # stage records must belong to one step: recompute the first stage every step
            solver.fsal, solver.fevals_per_step, solver.init_fevals = False, len(solver.b), 0
        weights = solver.b
        pgrads = [torch.zeros_like(q) for q in params]

        def hook(t, dt, acc, dense):
            recs = term.records[-len(weights) :]
            term.records.clear()
            if not params:
                return
            outs, cots = [], []
            scale = -dt if acc is None else torch.where(acc, -dt, torch.zeros_like(dt))
            for w, (fy, a) in zip(weights, recs, strict=True):
                if w != 0.0:
                    outs.append(fy)
                    cots.append(a * (w * bview(scale, a)))
            gs = torch.autograd.grad(outs, params, cots, allow_unused=True)
            for acc_g, g in zip(pgrads, gs, strict=True):
                if g is not None:
                    acc_g.add_(g)

        t0v = p.time_tensor(p.t0)
        cols = ts.shape[1]
        a = torch.zeros_like(p.y0)
        y = ys[:, -1]
        for j in range(cols - 1, -1, -1):
            a = a + grad_ys[:, j]
            y = ys[:, j]
            start = ts[:, j]
            end = ts[:, j - 1] if j > 0 else t0v
            z = torch.cat([y.reshape(b, n), a.reshape(b, n)], 1)
            ctrl = p.controller
            bp = Problem(term, solver, start, end, z, None if ctrl.adaptive else p.dt0, ctrl,
                         _T1, p.max_steps)
            if not ctrl.adaptive and not isinstance(p.dt0, (int, float)):
                raise SolveConfigError("BacksolveAdjoint with a fixed grid needs a scalar dt0 (ConstantStepSize)")
            with torch.no_grad():
                out = integrate(bp, step_hook=hook)
            z1 = out.ys[:, -1]
            y = z1[:, :n].reshape(b, *shape)
            a = z1[:, n:].reshape(b, *shape)
        # pgrads hold ∫_{t0}^{t1} a ∂f/∂θ dt: each backward step (dt of the opposite sign) adds -dt Σ b_s a_s f_θ
        return (None, a, *pgrads)


from .saveat import SaveAt  # noqa: E402

_T1 = SaveAt()


@dataclass(frozen=True)
class BacksolveAdjoint:
    params: tuple | None = None

    def run(self, p: Problem) -> Solution:
        if not isinstance(p.terms, (ODETerm, CDETerm)):
            raise TermSolverMismatchError("BacksolveAdjoint is for ODE/CDE terms; use ReversibleAdjoint for SDEs")
        if p.saveat.steps or p.saveat.t0:
            raise SolveConfigError("BacksolveAdjoint supports SaveAt(t1=...) and SaveAt(ts=...)")
        if not p.controller.adaptive and type(p.controller).__name__ == "StepTo":
            raise SolveConfigError("BacksolveAdjoint supports ConstantStepSize or PIDController")
        params = _collect_params(p.terms, self.params)
        holder = {"problem": p, "params": params}
        ys = _BacksolveFn.apply(holder, p.y0, *params)
        sol = holder.pop("solution")
        sol.ys = ys
        return sol


class _ReversibleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, holder, y0, *params):
        p: Problem = holder["problem"]
        terms, solver = p.terms, p.solver
        grid = fixed_grid(p)
        dts = grid_steps(grid)
        store = terms.is_sde and not isinstance(terms.brownian, BrownianInterval)
        dws = [] if store else None
        with torch.no_grad():
            y = y0
            st = solver.init(terms, grid[0], y0)
            for k in range(dts.shape[0]):
                dw = terms.brownian.increment(grid[k], dts[k]) if terms.is_sde else None
                if store:
                    dws.append(dw)
                y, _, _, st = solver.step(terms, grid[k], y, dts[k], st, dw=dw)
        ctx.holder = holder
        holder["grid"], holder["dws"] = grid, dws
        ctx.save_for_backward(y, *st)
        nz = (dts != 0).sum(0)
        holder["stats"] = (grid, nz)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        y1, *st1 = ctx.saved_tensors
        holder = ctx.holder
        p: Problem = holder["problem"]
        params = holder["params"]
        terms, solver = p.terms, p.solver
        grid, dws = holder["grid"], holder["dws"]
        dts = grid_steps(grid)
        a_y, a_z = grad_y, torch.zeros_like(grad_y)
        pgrads = [torch.zeros_like(q) for q in params]
        y, st = y1, tuple(st1)
        for k in range(dts.shape[0] - 1, -1, -1):
            t, dt = grid[k], dts[k]
            if terms.is_sde:
                dw = dws[k] if dws is not None else terms.brownian.increment(t, dt)
            else:
                dw = None
            with torch.no_grad():
                y, st = solver.backward_step(terms, grid[k + 1], y, dt, st, dw=dw)
            with torch.enable_grad():
                yk = y.detach().requires_grad_(True)
                zk = st[0].detach().requires_grad_(True)
                stk = (zk, terms.vf(t, zk)) + ((terms.g(t, zk),) if terms.is_sde else ())
                y_next, _, _, st_next = solver.step(terms, t, yk, dt, stk, dw=dw)
                gs = torch.autograd.grad(
                    (y_next, st_next[0]), (yk, zk, *params), (a_y, a_z), allow_unused=True
                )
            a_y = gs[0] if gs[0] is not None else torch.zeros_like(a_y)
            a_z = gs[1] if gs[1] is not None else torch.zeros_like(a_z)
            for acc_g, g in zip(pgrads, gs[2:], strict=True):
                if g is not None:
                    acc_g.add_(g)
        return (None, a_y + a_z, *pgrads)


@dataclass(frozen=True)
class ReversibleAdjoint:
    params: tuple | None = None

    def run(self, p: Problem) -> Solution:
        if not isinstance(p.solver, ReversibleHeun):
            raise TermSolverMismatchError("ReversibleAdjoint needs the ReversibleHeun solver")
        if p.controller.adaptive:
            raise SolveConfigError("ReversibleAdjoint needs a fixed grid (ConstantStepSize or StepTo)")
        if p.saveat.ts is not None or p.saveat.steps or p.saveat.t0:
            raise SolveConfigError("ReversibleAdjoint supports SaveAt(t1=True) only")
        params = _collect_params(p.terms, self.params)
        holder = {"problem": p, "params": params}
        y = _ReversibleFn.apply(holder, p.y0, *params)
        grid, nz = holder["stats"]
        zeros = torch.zeros_like(nz)
        fe = nz * p.solver.fevals_per_step + p.solver.init_fevals
        return Solution(grid[-1].unsqueeze(1), y.unsqueeze(1), nz, zeros, fe, zeros.clone())
