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
import os
import types
import warnings
from dataclasses import dataclass
from typing import Any

import torch

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


def _fixed_step(terms, solver, t, dt, y, *st):
    """One fixed-grid step (the unit compiled by ``solve(..., compile=True)`` on fixed grids)."""
    y1, _, dense, st1 = solver.step(terms, t, y, dt, st)
    return y1, dense, tuple(st1)


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

    key = None
    if p.compile and not checkpoint_every:  # checkpointed chunks run eagerly (see integrate_adaptive)
        key = _compile_key(_fixed_step, p.compile if isinstance(p.compile, str) else None, terms, solver, y0)

    def run_chunk(lo, hi):
        def fn(y, *rest):
            st, bf = rest[:ns], (rest[ns] if buf is not None else None)
            for k in range(lo, hi):
                t, dt = t_list[k], dt_list[k]
                out = _try_compiled(key, terms, solver, t, dt, y, *st) if key is not None else None
                if out is None:  # eager (or compile failed): the same step, called directly
                    y1, _, dense, st = solver.step(terms, t, y, dt, st)
                else:
                    y1, dense, st = out
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


def _adaptive_iteration(terms, solver, ctrl, saver, t1, direction, carry):
    """One iteration of the adaptive loop for every sample: step, controller update, accept/reject.

    ``carry = (t, y, dt, done, status, nsteps, iters, e1, e2, bf, *state)``; finished samples take a zero-length
    step and keep their values. Returns ``(carry, acc, dt_step, dense)``. The eager loop, the compiled chunks
    and the compiled ``while_loop`` all run this function, so they cannot drift apart.
    """
    t, y, dt, done, status, nsteps, iters, e1, e2, bf = carry[:10]
    st = tuple(carry[10:])
    rem = t1 - t
    last = (dt - rem) * direction >= 0
    dt_step = torch.where(done, 0.0, torch.where(last, rem, dt))
    y1, err, dense, st1 = solver.step(terms, t, y, dt_step, st)
    with torch.no_grad():
        active = ~done
        accept, dt_new, errn, small = ctrl.update(
            err.detach(), y.detach(), y1.detach(), dt_step, active, e1, e2, solver.order, direction
        )
        acc = accept & active
    if bf is not None:
        bf = saver.update(bf, solver, dense, t, dt_step, mask=acc)
    y = torch.where(bview(acc, y), y1, y)
    st = _select(acc, st1, st)
    with torch.no_grad():
        t = torch.where(acc, torch.where(last, t1, t + dt_step), t)
        nsteps = nsteps + acc
        iters = iters + active
        if ctrl.uses_history:
            e2 = torch.where(acc, e1, e2)
            e1 = torch.where(acc, errn, e1)
        dt = torch.where(active, dt_new, dt)
        done = done | (acc & last)
        if small is not None:
            status = torch.where(small, int(Status.STEP_SIZE_TOO_SMALL), status)
            done = done | small
    return (t, y, dt, done, status, nsteps, iters, e1, e2, bf, *st), acc, dt_step, dense


def _adaptive_chunk(terms, solver, ctrl, saver, t1, direction, count, carry):
    """``count`` iterations in a row (the unit between two "all done?" checks, and the unit compiled with
    autograd on: one compiled call serves ``count`` steps)."""
    for _ in range(count):
        carry = _adaptive_iteration(terms, solver, ctrl, saver, t1, direction, carry)[0]
    return carry


def _adaptive_while(terms, solver, ctrl, saver, t1, direction, max_steps, carry):
    """The whole adaptive solve as one ``while_loop`` (compiled without autograd: no host sync, no Python per
    step). ``bf`` (the SaveAt buffer) is carried only when present: ``while_loop`` carries tensors."""
    from torch._higher_order_ops import while_loop

    has_bf = carry[9] is not None

    def cond(it, *c):
        return (it < max_steps) & ~c[3].all()

    def body(it, *c):
        out = _pack(_adaptive_iteration(terms, solver, ctrl, saver, t1, direction, _unpack(c, has_bf))[0])
        # while_loop refuses outputs that alias inputs (e.g. e1/e2 without PID history): copy those
        return (it + 1, *(o.clone() if o is i else o for o, i in zip(out, c, strict=True)))

    it0 = torch.zeros((), dtype=torch.int64, device=carry[1].device)
    init = (it0, *_pack(carry))
    out = while_loop(cond, body, tuple(x.contiguous() for x in init))  # carried strides must match the body's
    return _unpack(tuple(out[1:]), has_bf)


def _pack(c):
    """The carry as tensors only (``while_loop`` and ``checkpoint`` carry tensors): the absent SaveAt buffer
    (slot 9, ``None``) is dropped."""
    return tuple(c[:9]) + ((c[9],) if c[9] is not None else ()) + tuple(c[10:])


def _unpack(c, has_bf: bool):
    """The inverse of :func:`_pack`: slot 9 back in place (``None`` without a SaveAt buffer)."""
    return tuple(c[:9]) + ((c[9],) if has_bf else (None,)) + tuple(c[9 + has_bf :])


_COMPILED: dict = {}
_COMPILE_FAILED: set = set()


def _compile_key(fn, mode, terms, solver, y0):
    vf = getattr(terms, "vector_field", None) or getattr(terms, "drift", None)
    return (fn, mode, type(terms), type(solver), getattr(vf, "__code__", None), y0.dtype, y0.device.type)


def _compiled(key):
    """``torch.compile`` of ``key[0]``, once per key (loop function, mode, term/solver types, the vector field's code,
    dtype, device). Each key compiles a fresh copy of the function's code object, so that dynamo's per-code cache
    (and its recompile limit) is per problem kind: its guards reuse the compiled code across solves with new term
    objects, closures over the same model and new tensors of the same shapes, and inductor keeps the kernels in
    its on-disk cache between processes."""
    if key not in _COMPILED:
        fn, mode = key[0], key[1]
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        backend = "inductor"
        if fn is _adaptive_while and key[6] == "cpu" and mode is None and os.environ.get("SOLVERS_CPP_WRAPPER") != "0":
            backend = _inductor_small_cpp_wrapper
        _COMPILED[key] = torch.compile(copy, fullgraph=True, dynamic=False, mode=mode, backend=backend)
    return _COMPILED[key]


CPP_WRAPPER_MAX_NODES = 1500


def _inductor_small_cpp_wrapper(gm, example_inputs):
    """inductor, with its C++ wrapper for small graphs. On CPU the compiled while_loop's body of a small vector
    field (Van der Pol) is one fused C++ kernel; what is left per step is the wrapper that allocates its buffers
    and calls it, and the C++ wrapper cuts that from ~55 to ~36 µs per step (1 thread, CPU time) for a first
    compile of ~45 instead of ~18 s. For a network (a U-Net: thousands of nodes) the C++ wrapper takes many
    minutes of gcc and saves nothing measurable beside the network's own kernels, so graphs with more than
    ``CPP_WRAPPER_MAX_NODES`` nodes (all subgraphs counted) keep the Python wrapper. SOLVERS_CPP_WRAPPER=0: never."""
    from torch._inductor.compile_fx import compile_fx

    nodes = sum(len(m.graph.nodes) for m in gm.modules() if isinstance(m, torch.fx.GraphModule))
    patches = {"cpp_wrapper": True} if nodes <= CPP_WRAPPER_MAX_NODES else None
    return compile_fx(gm, example_inputs, config_patches=patches)


def _try_compiled(key, *args):
    """Run the compiled function of ``key``; if compiling fails (no C++ compiler, an untraceable vector field such
    as one drawing from a ``torch.Generator``, an old torch), warn once per key and return ``None`` so that the
    caller runs the same function eagerly."""
    if key in _COMPILE_FAILED:
        return None
    try:
        return _compiled(key)(*args)
    except Exception as exc:  # noqa: BLE001 -- any compile failure falls back to the identical eager code
        _COMPILE_FAILED.add(key)
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        msg = lines[0][:200] if lines else type(exc).__name__
        warnings.warn(f"solvers: torch.compile failed ({msg}); running eagerly", RuntimeWarning, stacklevel=4)
        return None


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
    iters = torch.zeros(b, **int_kw)
    e1 = torch.ones(b, dtype=y0.dtype, device=y0.device)
    e2 = torch.ones_like(e1)
    saver = _Saver(p)
    buf = saver.init_buffer(t0, y0)
    save_steps = p.saveat.steps
    if save_steps and checkpoint_every:
        raise SolveConfigError("SaveAt(steps=True) is not supported with CheckpointAdjoint")
    hist = [] if save_steps else None
    fpstep = solver.fevals_per_step
    carry = (t0, y0, dt.contiguous(), done, status, nsteps, iters, e1, e2, buf, *state)
    mode = p.compile if isinstance(p.compile, str) else None
    # CheckpointAdjoint's recomputation (torch.utils.checkpoint) stops by raising inside the chunk, which a
    # compiled region cannot pass through: checkpointed chunks run eagerly
    compiled = bool(p.compile) and step_hook is None and hist is None and checkpoint_every is None
    args = (terms, solver, ctrl, saver, t1, direction)

    if compiled and not torch.is_grad_enabled():
        out = _try_compiled(_compile_key(_adaptive_while, mode, terms, solver, y0), *args, p.max_steps, carry)
        if out is not None:
            t, y, _, done, status, nsteps, iters = out[:7]
            return _finish(p, t0, t, y0, y, done, status, nsteps, iters, nfev, fpstep, saver, out[9], hist)

    def run_chunk(count):
        def fn(*c):
            c = _unpack(c, buf is not None)
            if compiled:
                res = _try_compiled(_compile_key(_adaptive_chunk, mode, terms, solver, y0), *args, count, c)
                if res is not None:
                    return _pack(res)
            for _ in range(count):
                t_start = c[0]
                c, acc, dt_step, dense = _adaptive_iteration(*args, c)
                if step_hook is not None:
                    step_hook(t_start, dt_step, acc, dense)
                if hist is not None:
                    hist.append((c[0], c[1], acc))
            return _pack(c)

        return fn

    chunk = checkpoint_every or ctrl.check_every or (4 if compiled else 1 if y0.device.type == "cpu" else 8)
    flat = _pack(carry)
    it = 0
    while it < p.max_steps and not bool(flat[3].all()):  # the one host sync per chunk
        count = min(chunk, p.max_steps - it)
        flat = _checkpointed(run_chunk(count), flat, bool(checkpoint_every))
        it += count
    t, y, _, done, status, nsteps, iters = flat[:7]
    buf = flat[9] if buf is not None else None
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
