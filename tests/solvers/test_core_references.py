"""The step builder and the controller against independent references (mutation testing of issue 21).

* ``make_rk_step`` runs when a method's class is created, so tests that only call ``solve`` never see a change
  to it made after import (mutmut's mutants are switched on at call time): here every tableau's step is built
  at test time and checked against exact solutions -- its order on a non-autonomous nonlinear problem, the
  order of its error estimate, and the FSAL stage.
  Surviving mutants that are equivalent: skipping a coefficient of exactly 1.0 in the error weights (none is),
  multiplying by 1.0, ``yi = None`` before the stage loop (only Euler has no stages after the first, and it is not
  FSAL), always taking the ``rows[i]``/``nodes[i] != 0`` branches (``t + 0·dt`` is ``t``; no row is empty), and
  recomputing an FSAL method's y1 from ``b`` (its last row *is* ``b``: equal up to rounding).
* ``PIDController``'s error norm, factor, update and first step against the formulas written out in numpy
  (Hairer, Nørsett & Wanner II.4; Söderlind's PID form as in diffrax). Equivalent survivors: ``"INF"`` for
  ``"inf"``, ``<`` for ``<=`` at the exact boundary (errn = 1, |dt| = dtmin), ``dtmin / direction`` for
  ``dtmin * direction`` (direction is ±1), ``IController`` not passing a coefficient equal to the dataclass
  default, and ``nf = 1`` for the first ``nf += 1`` of ``initial_step`` (it starts at 0).
"""

import math

import numpy as np
import pytest
import torch

import solvers as S
from solvers.methods._base import ExplicitRK, make_rk_step

from .conftest import fit_slope

F64 = dict(dtype=torch.float64)
RK = [S.Euler, S.Midpoint, S.Heun, S.RK4, S.Bosh3, S.Dopri5, S.Tsit5]


def _field(t, y):  # y1' = cos(t) y1, y2' = -2 t y2^2
    t = t.view(-1, 1)
    return torch.cat([torch.cos(t) * y[:, :1], -2.0 * t * y[:, 1:] ** 2], 1)


def _exact(t, y0):
    return torch.stack([y0[:, 0] * math.exp(math.sin(t)), 1.0 / (t**2 + 1.0 / y0[:, 1])], 1)


Y0 = torch.tensor([[1.0, 0.5], [0.7, 1.3]], **F64)


@pytest.mark.parametrize("cls", RK, ids=lambda c: c.__name__)
def test_step_built_at_test_time_converges_at_its_order(cls):
    step = make_rk_step(cls.c, cls.a, cls.b, cls.b_error, cls.fsal)
    t1 = 1.5
    ns = {5: [32, 64, 128, 256], 4: [8, 16, 32, 64], 3: [16, 32, 64, 128]}.get(cls.order, [32, 64, 128, 256])
    errs = []
    for n in ns:
        h = torch.full((2,), t1 / n, **F64)
        t, y = torch.zeros(2, **F64), Y0
        for _ in range(n):
            y, _, _ = step(_field, t, y, h)
            t = t + h
        errs.append(float((y - _exact(t1, Y0)).abs().max()))
    assert abs(fit_slope([t1 / n for n in ns], errs) - cls.order) < 0.3, errs


@pytest.mark.parametrize("cls", [c for c in RK if c.b_error is not None], ids=lambda c: c.__name__)
def test_error_estimate_and_fsal_stage_built_at_test_time(cls):
    """The embedded estimate of a p(p-1) pair is the local error of the order p-1 solution, O(h^p); the estimate
    must also be the difference between the two solutions (y1 - its lower-order partner) up to rounding."""
    step = make_rk_step(cls.c, cls.a, cls.b, cls.b_error, cls.fsal)
    t = torch.full((2,), 0.3, **F64)
    hs, errs = [0.2, 0.1, 0.05, 0.025], []
    for h in hs:
        dt = torch.full((2,), h, **F64)
        y1, err, ks = step(_field, t, Y0, dt)
        low = Y0 + dt.view(-1, 1) * sum((b - e) * k for b, e, k in zip(cls.b, cls.b_error, ks, strict=True))
        torch.testing.assert_close(err, y1 - low, rtol=1e-9, atol=1e-15)
        errs.append(float(err.abs().max()))
        if cls.fsal:  # the last stage is f at the new point: the next step's first stage
            torch.testing.assert_close(ks[-1], _field(t + dt, y1), rtol=1e-12, atol=1e-14)
    assert abs(fit_slope(hs, errs) - cls.order) < 0.35, errs


@pytest.mark.parametrize("cls", [c for c in RK if c.fsal], ids=lambda c: c.__name__)
def test_fsal_step_reuses_the_given_first_stage(cls):
    """Given k0 (the previous step's last stage), an FSAL step evaluates the field n - 1 times, not n."""
    step = make_rk_step(cls.c, cls.a, cls.b, cls.b_error, cls.fsal)
    calls = []

    def f(t, y):
        calls.append(1)
        return _field(t, y)

    t, dt = torch.full((2,), 0.2, **F64), torch.full((2,), 0.1, **F64)
    y1, _, ks = step(f, t, Y0, dt, _field(t, Y0))
    assert len(calls) == len(cls.b) - 1 == cls.fevals_per_step
    torch.testing.assert_close(y1, step(_field, t, Y0, dt)[0], rtol=0, atol=0)


def test_every_explicit_rk_class_carries_the_step_of_its_tableau():
    for cls in RK:
        assert issubclass(cls, ExplicitRK)
        fresh = make_rk_step(cls.c, cls.a, cls.b, cls.b_error, cls.fsal)
        dt = torch.full((2,), 0.1, **F64)
        t = torch.full((2,), 0.2, **F64)
        a, b = cls.rk_step(_field, t, Y0, dt), fresh(_field, t, Y0, dt)
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)


# --- the controller ------------------------------------------------------------------------------------------
def _np_norm(err, y0, y1, rtol, atol):
    scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y1))
    return np.sqrt(np.mean((err / scale) ** 2, axis=1))


def test_error_norm_is_the_rms_of_the_scaled_error():
    rng = np.random.default_rng(0)
    err, y0, y1 = rng.normal(size=(3, 5, 3)) * np.array([1e-4, 1.0, 1.0]).reshape(3, 1, 1)
    ctrl = S.PIDController(rtol=1e-3, atol=1e-5)
    got = ctrl.error_norm(*(torch.tensor(x) for x in (err, y0, y1)))
    np.testing.assert_allclose(got.numpy(), _np_norm(err, y0, y1, 1e-3, 1e-5), rtol=1e-12)


def _np_factor(errn, e1, e2, order, accept, c):
    b1 = (c.pcoeff + c.icoeff + c.dcoeff) / order
    b2 = -(c.pcoeff + 2 * c.dcoeff) / order
    b3 = c.dcoeff / order
    f = c.safety * np.maximum(errn, 1e-12) ** -b1 * np.maximum(e1, 1e-12) ** -b2 * np.maximum(e2, 1e-12) ** -b3
    return np.clip(f, c.factormin, np.where(accept, c.factormax, 1.0))


@pytest.mark.parametrize("pid", [(0.0, 1.0, 0.0), (0.2, 0.5, 0.1), (0.3, 0.4, 0.0)], ids=["I", "PID", "PI"])
def test_factor_is_soederlinds_pid_formula(pid):
    p, i, d = pid
    c = S.PIDController(pcoeff=p, icoeff=i, dcoeff=d, safety=0.85, factormin=0.3, factormax=6.0)
    errn = np.array([1e-14, 1e-6, 0.02, 0.7, 1.0, 3.0, 40.0, 1e6])
    e1 = np.array([0.5, 1e-13, 2.0, 0.1, 1.0, 0.9, 0.3, 4.0])
    e2 = np.array([2.0, 0.4, 1e-15, 0.8, 1.0, 0.2, 5.0, 0.7])
    accept = errn <= 1.0
    got = c.factor(*(torch.tensor(x) for x in (errn, e1, e2)), 5, torch.tensor(accept))
    np.testing.assert_allclose(got.numpy(), _np_factor(errn, e1, e2, 5, accept, c), rtol=1e-12)
    if (p, i, d) == (0.0, 1.0, 0.0):  # the I controller clips at factormin too (a huge error: 0.3, not below)
        assert got[-1] == pytest.approx(0.3) and got[0] == pytest.approx(6.0)


def test_update_accepts_clips_and_flags_small_steps():
    c = S.PIDController(rtol=1e-3, atol=1e-6, dtmin=1e-3, dtmax=0.5)
    y0 = torch.ones(4, 2, **F64)
    y1 = y0.clone()
    # scaled errors 0.5 (accept), 1.5 (reject), NaN (reject as inf), 1e-9 (accept, huge factor -> dtmax)
    scale = 1e-6 + 1e-3
    err = torch.tensor([[0.5], [1.5], [float("nan")], [1e-9]], **F64).expand(4, 2) * scale
    dt = torch.tensor([0.1, 0.1, 0.002, 0.3], **F64)
    active = torch.tensor([True, True, True, True])
    one = torch.ones(4, **F64)
    accept, dt_new, errn, small = c.update(err.clone(), y0, y1, dt, active, one, one, 5, torch.ones(4, **F64))
    assert accept.tolist() == [True, False, False, True]
    assert math.isinf(float(errn[2]))
    fac = _np_factor(errn.numpy(), one.numpy(), one.numpy(), 5, accept.numpy(), c)
    want = np.clip(dt.numpy() * fac, -0.5, 0.5)
    np.testing.assert_allclose(dt_new[[0, 1, 3]].numpy(), want[[0, 1, 3]], rtol=1e-12)
    assert float(dt_new[3]) == 0.5  # dtmax
    # the NaN sample: 0.002 * factormin = 4e-4 < dtmin after a rejection -> STEP_SIZE_TOO_SMALL
    assert small.tolist() == [False, False, True, False]
    # an accepted step whose proposal falls below dtmin is raised to dtmin (in the direction of integration)
    c2 = S.PIDController(rtol=1e-3, atol=1e-6, dtmin=0.05)
    acc, dt2, _, small2 = c2.update(err[:1].clone(), y0[:1], y1[:1], torch.tensor([-0.01], **F64),
                                    active[:1], one[:1], one[:1], 5, torch.tensor([-1.0], **F64))
    assert acc.tolist() == [True] and small2.tolist() == [False] and float(dt2[0]) == -0.05
    # backwards in time, a tiny error proposes a huge negative step: clipped to -dtmax
    acc, dt3, _, _ = c.update(err[3:].clone(), y0[3:], y1[3:], torch.tensor([-0.3], **F64), active[3:], one[3:],
                              one[3:], 5, torch.tensor([-1.0], **F64))
    assert acc.tolist() == [True] and float(dt3[0]) == -0.5


def test_icontroller_is_the_i_only_pid_controller():
    assert S.IController() == S.PIDController(pcoeff=0.0, icoeff=1.0, dcoeff=0.0)
    assert S.IController(1e-4, 1e-8, dtmax=0.5, safety=0.8) == S.PIDController(rtol=1e-4, atol=1e-8, dtmax=0.5,
                                                                              safety=0.8)


def test_initial_step_is_hairers_algorithm():
    """HNW II.4 (starting step size), written out in numpy for y' = -3 y + sin(t) per sample."""
    c = S.PIDController(rtol=1e-4, atol=1e-7)
    # the last sample starts at y = 0 with f != 0 (t0 = 0.5): only d0 < 1e-5, which selects h0 = 1e-6
    y0 = np.array([[1.0, -0.5], [2.0, 0.3], [1e-9, 1e-9], [0.0, 0.0]])
    f = lambda t, y: -3.0 * y + np.sin(t)[:, None]  # noqa: E731
    order, t0 = 5, np.array([0.0, 0.0, 0.0, 0.5])
    scale = np.abs(y0) * c.rtol + c.atol
    rms = lambda x: np.sqrt(np.mean((x / scale) ** 2, axis=1))  # noqa: E731
    f0 = f(t0, y0)
    d0, d1 = rms(y0), rms(f0)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    f1 = f(t0 + h0, y0 + h0[:, None] * f0)
    d2 = rms(f1 - f0) / h0
    h1 = np.where(np.maximum(d1, d2) <= 1e-15, np.maximum(1e-6, h0 * 1e-3), (0.01 / np.maximum(d1, d2)) ** (1 / order))
    want = np.minimum(100 * h0, h1)
    term = S.ODETerm(lambda t, y: -3.0 * y + torch.sin(t).view(-1, 1))
    h, nf = c.initial_step(term, torch.tensor(t0), torch.tensor(y0), torch.ones(4, **F64), order)
    assert nf == 2 and want[3] > 0
    np.testing.assert_allclose(h.numpy(), want, rtol=1e-12)
