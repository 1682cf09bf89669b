"""Low-overhead adaptive loop for explicit Runge–Kutta solvers when no autograd graph is recorded.

Same algorithm and results (up to float rounding) as the generic loop in :mod:`solvers._loop`, with the
per-step Python and dispatch overhead cut down; on a small batch (Van der Pol, B = 256) the step is
dominated by ~100 tiny kernel launches, so every launch counts:

* stages are stored pre-multiplied by the per-sample ``dt`` in one preallocated ``(stages, B * n)``
  buffer (written with ``out=``); every stage combination, the solution and the error estimate are one
  ``addmm``/``mm`` with the tableau rows stored as tensors;
* constants are 0-dim tensors of the state's dtype: on recent CPU builds an op with a Python-scalar
  operand costs ~3 µs more than with a tensor operand (the scalar is wrapped on every call);
* the error norm is never square-rooted: ``accept ⇔ Σ r² ≤ threshold`` and the step factor is
  ``(Σ r²)^(−β/2)`` with the RMS normalisation folded into constants; ``fmax``/``fmin`` clipping maps a
  NaN error to ``factormin`` as the generic loop's ``nan → inf`` does;
* finished samples need no mask before the step: a finished sample sits exactly at ``t1`` (or has
  ``dt = 0`` after ``STEP_SIZE_TOO_SMALL``), so ``dt_step = min(dt, t1 - t)`` is already zero;
* the "all done?" check is ``torch.equal`` against an all-false mask (one call, a Python bool).

Used by :func:`solvers._loop.integrate_adaptive` when autograd is off (``torch.no_grad()``, or inside the
O(1)-memory adjoints), the solver is an :class:`ExplicitRK` with an error estimate whose ``step`` is not
overridden, and the state is floating point.
"""

from __future__ import annotations

import torch

from .controllers import PIDController
from .methods._base import ExplicitRK
from .solution import Status
from .terms import ODETerm

ENABLED = True  # switch for A/B measurements and tests


def eligible(solver, ctrl, y0, checkpoint_every) -> bool:
    return (
        ENABLED
        and not torch.is_grad_enabled()
        and checkpoint_every is None
        and isinstance(solver, ExplicitRK)
        and type(solver).step is ExplicitRK.step
        and solver.b_error is not None
        and y0.is_floating_point()
        and y0.dim() >= 1
        and y0.shape[0] > 0
    )


def _plain_pid(ctrl) -> bool:
    cls = type(ctrl)
    return (
        cls.error_norm is PIDController.error_norm
        and cls.factor is PIDController.factor
        and not ctrl.uses_history
        and ctrl.rtol > 0.0
    )


_TABLEAUX: dict = {}


class _Tableau:
    """The RK tableau as tensors for the "scatter" form of the stage sums (cached per dtype/device).

    Row ``i - 1`` of the accumulator ``P`` receives ``a[i][j] * k_j`` for stage ``i``; then come the
    solution weights ``b`` (non-FSAL methods) and the error weights ``b_error``.
    As soon as ``k_j`` is known, one broadcast ``addcmul_`` adds it to every row that needs it (``P[j:]``),
    so a stage costs two kernels (this update and ``y + dt * P[i - 1]``) whatever its number of terms.
    """

    def __init__(self, solver, kw, nd):
        n = len(solver.b)
        fsal = solver.fsal
        rows = [list(solver.a[i]) + [0.0] * (n - len(solver.a[i])) for i in range(1, n)]
        self.b_row = None
        if not fsal:
            self.b_row = len(rows)
            rows.append(list(solver.b))
        self.e_row = len(rows)
        rows.append(list(solver.b_error))
        coef = torch.tensor(rows, **kw)  # (R, n)
        ones = (1,) * (nd + 1)  # broadcast over (B, *shape)
        self.cols = []
        for j in range(n):
            col = coef[j:, j]
            self.cols.append(col.reshape(-1, *ones) if bool((col != 0).any()) or j == 0 else None)
        self.first = coef[:, 0].reshape(-1, *ones)
        self.nonzero_row = [None] + [any(c != 0.0 for c in solver.a[i]) for i in range(1, n)]
        self.n_rows = len(rows)
        # distinct nonzero stage times t + c dt: one addcmul, rows unbound per step
        cs = [c for c in solver.c[1:] if c != 0.0]
        self.c_values = sorted(set(cs), key=cs.index)
        self.c_index = {c: i for i, c in enumerate(self.c_values)}
        self.c_col = torch.tensor(self.c_values, **kw).reshape(-1, 1) if self.c_values else None


def run(p, state, t0, t1, dt, direction, nfev, saver, buf, step_hook, hist, scalar_dir):
    """The loop; returns ``(t, y, active, status, nsteps, iters, nfev, buf)``."""
    terms, solver, y0, ctrl = p.terms, p.solver, p.y0, p.controller
    vf = terms.vector_field if type(terms) is ODETerm else terms.vf  # one Python frame less per evaluation
    where, addcmul, mul, clamp, maximum = torch.where, torch.addcmul, torch.mul, torch.clamp, torch.maximum
    fmin, gt, equal, mv = torch.fmin, torch.gt, torch.equal, torch.mv
    b = y0.shape[0]
    nd = y0.dim() - 1
    bshape = (b,) + (1,) * nd
    kw = dict(dtype=y0.dtype, device=y0.device)
    n = len(solver.b)
    fsal = solver.fsal

    def const(x):
        return torch.tensor(x, **kw)

    plain = _plain_pid(ctrl)
    order = solver.order
    if plain:
        # errn² = Σ_sample (err / (atol + rtol·max(|y0|, |y1|)))² / D = S / (rtol² D) with
        # S = Σ (err / (max(|y0|, |y1|) + atol/rtol))²: no square root; accept ⇔ S ≤ rtol² D and the
        # factor safety · errn^(−β1) = safety · (rtol² D)^(β1/2) · S^(−β1/2)
        d = y0[0].numel()
        sc = ctrl.rtol * ctrl.rtol * d  # S = sc · errn²
        shift = const(ctrl.atol / ctrl.rtol)
        b1 = (ctrl.pcoeff + ctrl.icoeff + ctrl.dcoeff) / float(order)
        expo = const(-b1 / 2.0)
        mult = ctrl.safety * sc ** (b1 / 2.0)
        # fac = clamp(mult · S^(−β1/2), factormin, factormax), with the generic loop's floor errn ≥ 1e-12:
        # clip S instead, then one pow; NaN (fmin) → the factormin end, as the generic loop's nan → inf
        if b1 > 0:
            s_hi = (ctrl.factormin / mult) ** (-2.0 / b1)
            s_lo = max((ctrl.factormax / mult) ** (-2.0 / b1), 1e-24 * sc)
        else:
            s_hi, s_lo = float("inf"), 1e-24 * sc
        s_hi_t, s_lo_t = const(s_hi), const(s_lo)
        mult_t = const(mult)
        thr = const(sc)
    key = (type(solver), fsal, y0.dtype, y0.device, nd)
    tab = _TABLEAUX.get(key)
    if tab is None:
        tab = _TABLEAUX[key] = _Tableau(solver, kw, nd)
    cols, first, nonzero_row = tab.cols, tab.first, tab.nonzero_row
    c_col, c_index = tab.c_col, tab.c_index
    stage_c = [None] + [c_index.get(c) for c in solver.c[1:]]
    c1 = c_index.get(1.0)
    pbuf = torch.empty(tab.n_rows, *y0.shape, **kw)
    prow = list(pbuf.unbind(0))
    ptail = [pbuf[j:] for j in range(n)]
    e_row, b_row = prow[tab.e_row], (prow[tab.b_row] if tab.b_row is not None else None)

    dtmin, dtmax = ctrl.dtmin, ctrl.dtmax
    history = ctrl.uses_history
    inf = float("inf")
    zero_t = const(0.0)
    int_kw = dict(dtype=torch.int64, device=y0.device)
    status = torch.zeros(b, **int_kw)
    nsteps = torch.zeros(b, **int_kw)
    iters = torch.zeros(b, **int_kw)
    e1 = torch.ones(b, **kw)
    e2 = torch.ones_like(e1)
    none_active = torch.zeros(b, dtype=torch.bool, device=y0.device)
    active = t0 != t1
    if dtmin is not None:
        dtmin_dir = direction * dtmin
    if dtmax is not None:
        dtmax_lo, dtmax_hi = const(-dtmax), const(dtmax)
    # samples with t0 == t1 never move (their first-step estimate may be NaN); every other finished sample sits
    # exactly at t1 (rem = 0) or has dt = 0 (STEP_SIZE_TOO_SMALL), so dt_step below is 0 for it with no mask
    dt = where(active, dt, zero_t)
    need_acc = buf is not None or step_hook is not None or hist is not None or history or dtmin is not None
    # Without those consumers no per-step "active" mask is needed: a sample is finished iff t == t1 exactly
    # (the last step sets t = t1); the statistics are summed from the recorded (accept, t) every flush_every
    # steps. (A step that lands on t1 exactly without being the "last" one finishes the sample at once, where
    # the generic loop takes one more zero-length step.)
    track = need_acc
    ones_d = torch.ones(y0[0].numel(), **kw) if nd == 1 else None

    t, y = t0, y0
    k_first = state[0] if fsal else None
    chunk = ctrl.check_every or (1 if y0.device.type == "cpu" else 8)
    flush_every = 64
    accs, acts = [], []

    def flush(nsteps, iters):
        if accs:
            a, v = torch.stack(accs), torch.stack(acts)
            if not track:
                v = v != t1  # acts holds the times at the start of each step
            nsteps = nsteps + (a & v).sum(0)
            iters = iters + v.sum(0)
            accs.clear()
            acts.clear()
        return nsteps, iters

    it = 0
    max_steps = p.max_steps
    while it < max_steps:
        if it % chunk == 0 and (equal(active, none_active) if track else equal(t, t1)):
            break
        it += 1
        rem = t1 - t
        if scalar_dir is None:
            last = (dt - rem).mul_(direction) >= 0
            dt_step = where(last, rem, dt)
        elif scalar_dir > 0:
            last = dt >= rem
            dt_step = clamp(dt, max=rem)
        else:
            last = dt <= rem
            dt_step = clamp(dt, min=rem)
        dtb = dt_step.view(bshape)
        times = addcmul(t, c_col, dt_step).unbind(0) if c_col is not None else ()
        ks = []
        k = k_first if fsal else vf(t, y)
        ks.append(k)
        mul(first, k, out=pbuf)
        yi = y
        for i in range(1, n):
            if nonzero_row[i]:
                yi = addcmul(y, dtb, prow[i - 1])
            ci = stage_c[i]
            k = vf(times[ci] if ci is not None else t, yi)
            ks.append(k)
            col = cols[i]
            if col is not None:
                ptail[i].addcmul_(col, k)
        y1 = yi if fsal else addcmul(y, dtb, b_row)
        err = mul(dtb, e_row)
        if plain:
            m = maximum(y.abs(), y1.abs()).add_(shift)
            r = err.div_(m)
            s = mv(r.square_(), ones_d) if nd == 1 else r.square_().sum(tuple(range(1, nd + 1))) if nd else r.square_()
            accept = s <= thr
            # s ∈ [s_lo, s_hi] ⇔ fac ∈ [factormin, factormax]; fmin maps NaN to s_hi (factormin)
            fac = fmin(s, s_hi_t).clamp_(min=s_lo_t).pow_(expo).mul_(mult_t)
        else:
            errn = ctrl.error_norm(err, y, y1).nan_to_num_(nan=inf)
            accept = errn <= 1.0
            fac = ctrl.factor(errn, e1, e2, order, accept)
        dt_new = dt_step * fac
        if dtmax is not None:
            dt_new = dt_new.clamp_(dtmax_lo, dtmax_hi)
        acc = accept & active if need_acc else None
        small = None
        if dtmin is not None:
            small_dt = dt_new.abs() < dtmin
            small = active & ~accept & small_dt
            dt_new = where(acc & small_dt, dtmin_dir, dt_new)
        if buf is not None:
            buf = saver.update(buf, solver, (y, y1, dtb, ks), t, dt_step, mask=acc)
        if step_hook is not None:
            step_hook(t, dt_step, acc, (y, y1, dtb, ks))
        # finished samples took a zero step (y1 = y, same k, t stays): `accept` may stand in for `accept & active`
        accb = accept.view(bshape)
        y = where(accb, y1, y)
        if fsal:
            k_first = where(accb, k, k_first)
        tc = times[c1] if c1 is not None else t + dt_step
        t_start = t
        t = where(accept, where(last, t1, tc), t)
        accs.append(accept)
        acts.append(active if track else t_start)
        if len(accs) == flush_every:
            nsteps, iters = flush(nsteps, iters)
        if history:
            e2 = where(acc, e1, e2)
            e1 = where(acc, errn, e1)
        if track:
            active = gt(active, accept & last)  # active and not (accepted and last)
        dt = dt_new
        if small is not None:
            status = where(small, int(Status.STEP_SIZE_TOO_SMALL), status)
            active = active & ~small
            dt = where(small, zero_t, dt)
        if hist is not None:
            hist.append((t, y, acc))
    nsteps, iters = flush(nsteps, iters)
    if not track:
        active = t != t1
    return t, y, active, status, nsteps, iters, nfev, buf
