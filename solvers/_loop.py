"""The step loops behind :func:`solvers.solve`: one for fixed grids, one for adaptive per-sample steps.

Fixed grids (``ConstantStepSize``, ``StepTo``) are turned into a ``(n + 1, B)`` table of times before
the loop; a sample that has arrived takes zero-length steps, which leave its state unchanged, so the
loop body has no masks, no ``.item()`` and no data-dependent Python branches (CUDA-graph / compile
friendly). When ``t0``/``t1`` are Python numbers even building the grid needs no host sync; per-sample
tensor end points cost one sync (the number of steps) *before* the loop.

The adaptive loop keeps ``t``, ``dt``, the PID error history, the statistics and a ``done`` mask per
sample and updates them with ``torch.where``; it asks the device whether every sample is done only
every ``check_every`` iterations (one sync per check). Loops are run in chunks so that
``CheckpointAdjoint`` can wrap each chunk in ``torch.utils.checkpoint``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from . import _fast
from .controllers import ConstantStepSize, PIDController, StepTo
from .errors import SolveConfigError
from .methods._base import bview
from .saveat import SaveAt
from .solution import Solution, Status


@dataclass
class Problem:
    terms: Any
    solver: Any
    t0: Any  # float or (B,) tensor
    t1: Any
    y0: torch.Tensor
    dt0: Any
    controller: Any
    saveat: SaveAt
    max_steps: int
    compile: Any = False

    @property
    def batch(self) -> int:
        return self.y0.shape[0]

    def time_tensor(self, t) -> torch.Tensor:
        y0 = self.y0
        return torch.as_tensor(t, dtype=y0.dtype, device=y0.device).expand(y0.shape[0])


def grid_steps(grid: torch.Tensor) -> torch.Tensor:
    """Step sizes ``(n, B)`` of a time table. A shared grid is an expanded ``(n + 1, 1)`` column: differencing
    the column (not the expanded table, which takes a slow strided path costing milliseconds) and expanding
    the result keeps it cheap."""
    if grid.dim() == 2 and grid.shape[0] > 1 and grid.stride(1) == 0:
        col = grid[:, :1]
        return (col[1:] - col[:-1]).expand(grid.shape[0] - 1, grid.shape[1])
    return grid[1:] - grid[:-1]


def _is_number(x) -> bool:
    return isinstance(x, (int, float))


def fixed_grid(p: Problem) -> torch.Tensor:
    """Time table (n + 1, B) for fixed-step solves."""
    y0 = p.y0
    kw = dict(dtype=y0.dtype, device=y0.device)
    b = y0.shape[0]
    c = p.controller
    if isinstance(c, StepTo):
        ts = torch.as_tensor(c.ts, **kw)
        if ts.dim() == 1:
            return ts.unsqueeze(1).expand(ts.shape[0], b)
        if ts.dim() == 2 and ts.shape[0] == b:
            return ts.t()
        raise SolveConfigError("StepTo.ts must be (N,) or (B, N)")
    if p.dt0 is None:
        raise SolveConfigError("ConstantStepSize needs dt0")
    if _is_number(p.t0) and _is_number(p.t1) and _is_number(p.dt0):
        span = abs(p.t1 - p.t0)
        n = max(1, math.ceil(span / abs(p.dt0) - 1e-9)) if span > 0 else 0
        step = math.copysign(abs(p.dt0), p.t1 - p.t0)
        k = torch.arange(n + 1, **kw)
        grid = p.t0 + k * step
        grid[-1] = p.t1
        return grid.unsqueeze(1).expand(n + 1, b)
    t0, t1 = p.time_tensor(p.t0), p.time_tensor(p.t1)
    h = torch.as_tensor(p.dt0, **kw).abs().expand(b)
    n_i = torch.ceil((t1 - t0).abs() / h - 1e-9)
    n = int(n_i.max())  # one host sync, before the loop
    k = torch.arange(n + 1, **kw).unsqueeze(1)
    grid = t0 + k * (h * torch.sign(t1 - t0))
    return torch.where(k >= n_i, t1, grid)


class _Saver:
    """Buffers for SaveAt(ts=...): every step fills the save times that fall into it."""

    def __init__(self, p: Problem):
        self.ts = None
        if p.saveat.ts is not None:
            y0 = p.y0
            ts = torch.as_tensor(p.saveat.ts, dtype=y0.dtype, device=y0.device)
            self.ts = ts.expand(y0.shape[0], ts.shape[-1]) if ts.dim() == 1 else ts

    def init_buffer(self, t0, y0):
        if self.ts is None:
            return None
        buf = y0.unsqueeze(1).expand(y0.shape[0], self.ts.shape[1], *y0.shape[1:])
        hit = (self.ts == t0.unsqueeze(1)).view(*self.ts.shape, *([1] * (y0.dim() - 1)))
        return torch.where(hit, buf, torch.zeros_like(buf))

    def update(self, buf, solver, dense, t, dt, mask=None):
        dt = dt.unsqueeze(1)
        safe = torch.where(dt == 0, torch.ones_like(dt), dt)
        theta = (self.ts - t.unsqueeze(1)) / safe
        inside = (theta > 0) & (theta <= 1) & (dt != 0)
        if mask is not None:
            inside = inside & mask.unsqueeze(1)
        vals = solver.interpolate(dense, theta.clamp(0, 1))
        return torch.where(inside.view(*inside.shape, *([1] * (buf.dim() - 2))), vals, buf)


def _assemble(p, t0v, t1v, y0, y_final, saver, buf, steps_ts=None, steps_ys=None, steps_valid=None):
    ts_parts, ys_parts, valid_parts = [], [], []
    b = y0.shape[0]
    ones = torch.ones(b, 1, dtype=torch.bool, device=y0.device)
    if p.saveat.t0:
        ts_parts.append(t0v.unsqueeze(1))
        ys_parts.append(y0.unsqueeze(1))
        valid_parts.append(ones)
    if saver.ts is not None:
        ts_parts.append(saver.ts)
        ys_parts.append(buf)
        valid_parts.append(torch.ones_like(saver.ts, dtype=torch.bool))
    if steps_ts is not None:
        ts_parts.append(steps_ts)
        ys_parts.append(steps_ys)
        valid_parts.append(steps_valid)
    if p.saveat.save_t1:
        ts_parts.append(t1v.unsqueeze(1))
        ys_parts.append(y_final.unsqueeze(1))
        valid_parts.append(ones)
    ts = torch.cat(ts_parts, 1)
    ys = torch.cat(ys_parts, 1) if len(ys_parts) > 1 else ys_parts[0]
    valid = torch.cat(valid_parts, 1) if steps_ts is not None else None
    return ts, ys, valid


def _checkpointed(fn, carry, use_checkpoint):
    if not use_checkpoint:
        return fn(*carry)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(fn, *carry, use_reentrant=False)


def integrate_fixed(p: Problem, checkpoint_every: int | None = None, step_hook=None) -> Solution:
    terms, solver, y0 = p.terms, p.solver, p.y0
    grid = fixed_grid(p)
    n = grid.shape[0] - 1
    dts = grid_steps(grid)
    uniform = n > 1 and all(_is_number(x) for x in (p.t0, p.t1, p.dt0)) and not isinstance(p.controller, StepTo)
    if uniform:
        # one shared dt object for all full steps (lets Brownian increments cache sqrt(dt))
        step = torch.full((y0.shape[0],), math.copysign(abs(p.dt0), p.t1 - p.t0), dtype=grid.dtype, device=grid.device)
        last_dt = dts[-1]
        dt_list = [step] * (n - 1) + [last_dt]
        nonzero = torch.full((y0.shape[0],), n, dtype=torch.int64, device=y0.device)
    else:
        dt_list = dts.unbind(0)
        nonzero = (dts != 0).to(torch.int64).sum(0)
    t_list = grid.unbind(0)  # one call instead of a select per step
    saver = _Saver(p)
    state = tuple(solver.init(terms, grid[0], y0))
    ns = len(state)
    buf = saver.init_buffer(grid[0], y0)
    save_steps = p.saveat.steps
    if save_steps and checkpoint_every:
        raise SolveConfigError("SaveAt(steps=True) is not supported with CheckpointAdjoint")
    steps_ys = [y0] if save_steps else None

    def one_step(t, dt, y, *st):
        y1, _, dense, st1 = solver.step(terms, t, y, dt, st)
        return y1, dense, tuple(st1)

    step_fn = None
    if p.compile:
        mode = p.compile if isinstance(p.compile, str) else None
        step_fn = torch.compile(one_step, mode=mode, dynamic=False)

    def run_chunk(lo, hi):
        def fn(y, *rest):
            st, bf = rest[:ns], (rest[ns] if buf is not None else None)
            for k in range(lo, hi):
                t, dt = t_list[k], dt_list[k]
                if step_fn is None:  # eager: call the solver directly (least Python overhead per step)
                    y1, _, dense, st = solver.step(terms, t, y, dt, st)
                else:
                    y1, dense, st = step_fn(t, dt, y, *st)
                if bf is not None:
                    bf = saver.update(bf, solver, dense, t, dt)
                if step_hook is not None:
                    step_hook(t, dt, None, dense)
                if save_steps:
                    steps_ys.append(y1)
                y = y1
            return (y, *st) + ((bf,) if bf is not None else ())

        return fn

    carry = (y0, *state) + ((buf,) if buf is not None else ())
    chunk = checkpoint_every or max(n, 1)
    for lo in range(0, n, chunk):
        carry = _checkpointed(run_chunk(lo, min(n, lo + chunk)), carry, bool(checkpoint_every))
    y = carry[0]
    if buf is not None:
        buf = carry[ns + 1]

    num_fevals = nonzero * solver.fevals_per_step + solver.init_fevals
    steps_ts = steps_y = steps_valid = None
    if save_steps:
        steps_ts = grid.t()
        steps_y = torch.stack(steps_ys, 1)
        steps_valid = torch.cat([torch.ones_like(dts[:1], dtype=torch.bool), dts != 0], 0).t()
    ts, ys, valid = _assemble(p, grid[0], grid[-1], y0, y, saver, buf, steps_ts, steps_y, steps_valid)
    zeros = torch.zeros_like(nonzero)
    return Solution(ts, ys, nonzero, zeros, num_fevals, zeros.clone(), valid)


def _select(mask, new, old):
    return tuple(torch.where(bview(mask, n), n, o) for n, o in zip(new, old, strict=True))


def integrate_adaptive(p: Problem, checkpoint_every: int | None = None, step_hook=None) -> Solution:
    terms, solver, y0, ctrl = p.terms, p.solver, p.y0, p.controller
    if not isinstance(ctrl, PIDController):
        raise SolveConfigError(f"unknown controller {ctrl!r}")
    if not solver.adaptive:
        raise SolveConfigError(f"{type(solver).__name__} has no error estimate; use ConstantStepSize or StepTo")
    b = y0.shape[0]
    t0, t1 = p.time_tensor(p.t0), p.time_tensor(p.t1)
    direction = torch.where(t1 >= t0, 1.0, -1.0).to(t0)
    int_kw = dict(dtype=torch.int64, device=y0.device)
    state = tuple(solver.init(terms, t0, y0))
    nfev = torch.full((b,), solver.init_fevals, **int_kw)
    with torch.no_grad():
        if p.dt0 is None:
            f0 = state[0].detach() if solver.fsal else None
            h, nf = ctrl.initial_step(terms, t0, y0.detach(), direction, solver.order, f0=f0, span=(t1 - t0).abs())
            nfev += nf
        else:
            h = torch.as_tensor(p.dt0, dtype=y0.dtype, device=y0.device).abs().expand(b)
        dt = h * direction
    done = t0 == t1
    status = torch.zeros(b, **int_kw)
    nsteps = torch.zeros(b, **int_kw)
    nrej = torch.zeros(b, **int_kw)
    e1 = torch.ones(b, dtype=y0.dtype, device=y0.device)
    e2 = torch.ones_like(e1)
    saver = _Saver(p)
    buf = saver.init_buffer(t0, y0)
    save_steps = p.saveat.steps
    if save_steps and checkpoint_every:
        raise SolveConfigError("SaveAt(steps=True) is not supported with CheckpointAdjoint")
    hist = [] if save_steps else None
    ns = len(state)
    fpstep = solver.fevals_per_step
    order = solver.order
    dtmin, dtmax = ctrl.dtmin, ctrl.dtmax

    if _fast.eligible(solver, ctrl, y0, checkpoint_every):
        scalar_dir = None
        if _is_number(p.t0) and _is_number(p.t1):
            scalar_dir = 1.0 if p.t1 >= p.t0 else -1.0
        t, y, active, status, nsteps, iters, nfev, buf = _fast.run(
            p, state, t0, t1, dt, direction, nfev, saver, buf, step_hook, hist, scalar_dir
        )
        return _finish(p, t0, t, y0, y, ~active, status, nsteps, iters, nfev, fpstep, saver, buf, hist)

    history = ctrl.uses_history
    zero = torch.zeros_like(t0)
    inf = float("inf")

    def body(t, y, dt, done, status, nsteps, nrej, nfev, e1, e2, bf, st):
        # nrej counts active iterations here; rejections and evaluations are derived after the loop
        rem = t1 - t
        last = (dt - rem).mul_(direction) >= 0
        dt_step = torch.where(done, zero, torch.where(last, rem, dt))
        y1, err, dense, st1 = solver.step(terms, t, y, dt_step, st)
        with torch.no_grad():
            errn = ctrl.error_norm(err.detach(), y.detach(), y1.detach()).nan_to_num_(nan=inf)
            accept = errn <= 1.0
            fac = ctrl.factor(errn, e1, e2, order, accept)
            dt_new = dt_step * fac
            if dtmax is not None:
                dt_new = dt_new.clamp_(-dtmax, dtmax)
            active = ~done
            acc = accept & active
            small = None
            if dtmin is not None:
                small = active & ~accept & (dt_new.abs() < dtmin)
                dt_new = torch.where(acc & (dt_new.abs() < dtmin), dtmin * direction, dt_new)
        if bf is not None:
            bf = saver.update(bf, solver, dense, t, dt_step, mask=acc)
        if step_hook is not None:
            step_hook(t, dt_step, acc, dense)
        y = torch.where(bview(acc, y), y1, y)
        st = _select(acc, st1, st)
        with torch.no_grad():
            t = torch.where(acc, torch.where(last, t1, t + dt_step), t)
            nsteps = nsteps + acc
            nrej = nrej + active
            if history:
                e2 = torch.where(acc, e1, e2)
                e1 = torch.where(acc, errn, e1)
            dt = torch.where(active, dt_new, dt)
            done = done | (acc & last)
            if small is not None:
                status = torch.where(small, int(Status.STEP_SIZE_TOO_SMALL), status)
                done = done | small
        if hist is not None:
            hist.append((t, y, acc))
        return t, y, dt, done, status, nsteps, nrej, nfev, e1, e2, bf, st

    def run_chunk(count):
        def fn(*c):
            t, y, dt, done, status, nsteps, nrej, nfev, e1, e2 = c[:10]
            st = tuple(c[10 : 10 + ns])
            bf = c[10 + ns] if buf is not None else None
            for _ in range(count):
                t, y, dt, done, status, nsteps, nrej, nfev, e1, e2, bf, st = body(
                    t, y, dt, done, status, nsteps, nrej, nfev, e1, e2, bf, st
                )
            return (t, y, dt, done, status, nsteps, nrej, nfev, e1, e2, *st) + ((bf,) if bf is not None else ())

        return fn

    carry = (t0, y0, dt, done, status, nsteps, nrej, nfev, e1, e2, *state) + ((buf,) if buf is not None else ())
    chunk = checkpoint_every or ctrl.check_every or (1 if y0.device.type == "cpu" else 8)
    it = 0
    while it < p.max_steps and not bool(carry[3].all()):  # the one host sync per chunk
        count = min(chunk, p.max_steps - it)
        carry = _checkpointed(run_chunk(count), carry, bool(checkpoint_every))
        it += count
    t, y, dt, done, status, nsteps, iters, nfev = carry[:8]
    if buf is not None:
        buf = carry[10 + ns]
    return _finish(p, t0, t, y0, y, done, status, nsteps, iters, nfev, fpstep, saver, buf, hist)


def _finish(p, t0, t, y0, y, done, status, nsteps, iters, nfev, fpstep, saver, buf, hist) -> Solution:
    nrej = iters - nsteps
    nfev = nfev + iters * fpstep
    status = torch.where(done, status, int(Status.MAX_STEPS_REACHED))
    steps_ts = steps_y = steps_valid = None
    if hist is not None:
        steps_ts, steps_y, steps_valid = _compact_history(t0, y0, hist)
    ts, ys, valid = _assemble(p, t0, t, y0, y, saver, buf, steps_ts, steps_y, steps_valid)
    return Solution(ts, ys, nsteps, nrej, nfev, status, valid)


def _compact_history(t0, y0, hist):
    """Per-sample accepted steps, left-aligned and padded with the last value (mask in ys_valid)."""
    ts = torch.stack([t0] + [h[0] for h in hist], 1)  # (B, I+1)
    ys = torch.stack([y0] + [h[1] for h in hist], 1)
    acc = torch.stack([torch.ones_like(t0, dtype=torch.bool)] + [h[2] for h in hist], 1)
    counts = acc.sum(1)
    width = int(counts.max())
    # stable sort puts accepted entries first in their original order
    order = torch.argsort((~acc).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=ts.device).unsqueeze(0) < counts.unsqueeze(1)
    ts_s = ts.gather(1, order)
    idx = order.view(*order.shape, *([1] * (ys.dim() - 2))).expand(-1, -1, *ys.shape[2:])
    ys_s = ys.gather(1, idx)
    return ts_s, ys_s, valid


def integrate(p: Problem, checkpoint_every: int | None = None, step_hook=None) -> Solution:
    if getattr(p.controller, "adaptive", False):
        return integrate_adaptive(p, checkpoint_every, step_hook)
    if not isinstance(p.controller, (ConstantStepSize, StepTo)):
        raise SolveConfigError(f"unknown controller {p.controller!r}")
    return integrate_fixed(p, checkpoint_every, step_hook)
