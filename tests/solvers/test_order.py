"""Convergence orders: the fitted log-log slope of error vs step size matches each declared order."""

import pytest
import torch

import solvers as S

from .conftest import GridBrownian, fit_slope

A = torch.tensor([[-0.4, 1.3, 0.0], [-1.1, -0.2, 0.5], [0.3, -0.6, -0.5]], dtype=torch.float64)
ODE_SOLVERS = [S.Euler(), S.Midpoint(), S.Heun(), S.RK4(), S.Bosh3(), S.Dopri5(), S.Tsit5(), S.ReversibleHeun()]


def _linear_problem(batch=4):
    y0 = torch.randn(batch, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = y0 @ torch.linalg.matrix_exp(2.0 * A).T
    return S.ODETerm(lambda t, y: y @ A.T), y0, exact


@pytest.mark.parametrize("solver", ODE_SOLVERS, ids=lambda s: type(s).__name__)
def test_ode_order(solver):
    term, y0, exact = _linear_problem()
    ns = {4: [8, 16, 32, 64], 5: [12, 24, 48, 96]}.get(solver.order, [16, 32, 64, 128])
    hs, errs = [], []
    for n in ns:
        sol = S.solve(term, solver, 0.0, 2.0, y0, dt0=2.0 / n)
        hs.append(2.0 / n)
        errs.append(float((sol.y1 - exact).abs().max()))
        assert int(sol.num_steps[0]) == n
    assert abs(fit_slope(hs, errs) - solver.order) < 0.25, (errs, fit_slope(hs, errs))


def _nonautonomous_problem(batch=3):
    """y1' = cos(t) y1 (exact y1(0) exp(sin t)) and y2' = -2 t y2^2 (exact 1 / (t^2 + 1 / y2(0))): nonlinear and
    time-dependent, so every tableau node c_i and every weight b_i enters the error (y' = A y uses neither the
    nodes nor the nonlinear stages)."""
    y0 = torch.tensor([[1.0, 0.5], [0.7, 1.3], [1.4, 0.9]], dtype=torch.float64)[:batch]
    t1 = 2.0
    exact = torch.stack([y0[:, 0] * torch.exp(torch.sin(torch.tensor(t1, dtype=torch.float64))),
                         1.0 / (t1**2 + 1.0 / y0[:, 1])], 1)

    def f(t, y):
        t = t.view(-1, 1) if torch.is_tensor(t) and t.dim() else t
        return torch.cat([torch.cos(t) * y[:, :1], -2.0 * t * y[:, 1:] ** 2], 1)

    return S.ODETerm(f), y0, exact, t1


@pytest.mark.parametrize("solver", ODE_SOLVERS, ids=lambda s: type(s).__name__)
def test_ode_order_nonautonomous_nonlinear(solver):
    term, y0, exact, t1 = _nonautonomous_problem()
    # past the pre-asymptotic range (Dopri5/Tsit5 show ~5.7 on 8..64 steps; reversible Heun's start is rough)
    ns = {4: [8, 16, 32, 64], 5: [32, 64, 128, 256], 3: [32, 64, 128, 256]}.get(solver.order, [64, 128, 256, 512])
    hs, errs = [], []
    for n in ns:
        sol = S.solve(term, solver, 0.0, t1, y0, dt0=t1 / n)
        hs.append(t1 / n)
        errs.append(float((sol.y1 - exact).abs().max()))
    assert abs(fit_slope(hs, errs) - solver.order) < 0.3, (errs, fit_slope(hs, errs))


def test_ode_order_backwards_in_time_and_time_dependent():
    # y' = -t y from t0 = 2 back to t1 = 0: y(0) = y(2) exp(2)
    term = S.ODETerm(lambda t, y: -t.view(-1, 1) * y)
    y2 = torch.ones(3, 1, dtype=torch.float64)
    errs, hs = [], []
    for n in (8, 16, 32):
        sol = S.solve(term, S.RK4(), 2.0, 0.0, y2, dt0=2.0 / n)
        errs.append(float((sol.y1 - torch.exp(torch.tensor(2.0, dtype=torch.float64))).abs().max()))
        hs.append(2.0 / n)
    assert abs(fit_slope(hs, errs) - 4) < 0.25


@pytest.mark.parametrize("solver", [S.Dopri5(), S.Tsit5()], ids=lambda s: type(s).__name__)
def test_dense_output_order(solver):
    # dense output at interior points converges at least at fourth order
    term, y0, _ = _linear_problem()
    ts = torch.tensor([0.3, 0.77, 1.41], dtype=torch.float64)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(t * A).T for t in ts], 1)
    hs, errs = [], []
    for n in (4, 8, 16, 32):
        sol = S.solve(term, solver, 0.0, 2.0, y0, dt0=2.0 / n, saveat=S.SaveAt(ts=ts))
        hs.append(2.0 / n)
        errs.append(float((sol.ys - exact).abs().max()))
    assert fit_slope(hs, errs) > 3.75


# --- SDEs: geometric Brownian motion dY = mu Y dt + sigma Y dW, exact from the same Brownian path ---
MU, SIGMA, PATHS = 0.6, 0.8, 4000


def _gbm_strong_errors(solver, stratonovich: bool, ns=(8, 16, 32, 64, 128)):
    bm = GridBrownian(0.0, 1.0, (PATHS, 1), fine_steps=max(ns), seed=7)
    term = S.SDETerm(lambda t, y: MU * y, lambda t, y: SIGMA * y, noise="diagonal", brownian=bm)
    y0 = torch.ones(PATHS, 1, dtype=torch.float64)
    drift = MU if stratonovich else MU - 0.5 * SIGMA**2
    exact = torch.exp(drift + SIGMA * bm.value(1.0))
    hs, errs = [], []
    for n in ns:
        sol = S.solve(term, solver, 0.0, 1.0, y0, dt0=1.0 / n)
        hs.append(1.0 / n)
        errs.append(float((sol.y1 - exact).abs().mean()))
    return fit_slope(hs, errs)


# (solver, Stratonovich?, expected strong order) on scalar multiplicative noise (also used by
# test_sde_nonautonomous.py): the Stratonovich Heun schemes are strong order 0.5 for general noise but 1.0 for
# commutative (here scalar) noise, which is what GBM exercises
GBM_CASES = dict(
    argnames="solver,strat,expected",
    argvalues=[(S.EulerMaruyama(), False, S.EulerMaruyama.strong_order), (S.Milstein(), False, S.Milstein.strong_order),
               (S.Milstein(derivative_free=True), False, S.Milstein.strong_order),
               (S.EulerHeun(), True, 1.0), (S.ReversibleHeun(), True, 1.0)],
    ids=["EulerMaruyama", "Milstein", "MilsteinDerivativeFree", "EulerHeun", "ReversibleHeun"],
)


@pytest.mark.parametrize(**GBM_CASES)
def test_sde_strong_order_gbm(solver, strat, expected):
    slope = _gbm_strong_errors(solver, strat)
    assert abs(slope - expected) < 0.2, slope


def test_sra1_strong_order_additive():
    # dY = (-Y + sin Y) dt + 0.7 (1 + t) dW (additive noise); reference: SRA1 on the fine grid
    paths, fine = 2000, 1024
    bm = GridBrownian(0.0, 1.0, (paths, 1), fine_steps=fine, seed=11)
    term = S.SDETerm(lambda t, y: -y + torch.sin(y), lambda t, y: 0.7 * (1 + t).view(-1, 1).expand_as(y),
                     noise="additive", brownian=bm)
    y0 = torch.full((paths, 1), 0.5, dtype=torch.float64)
    ref = S.solve(term, S.SRA1(), 0.0, 1.0, y0, dt0=1.0 / fine).y1
    hs, errs = [], []
    for n in (16, 32, 64, 128):  # coarser steps are pre-asymptotic (the drift part is order 2)
        sol = S.solve(term, S.SRA1(), 0.0, 1.0, y0, dt0=1.0 / n)
        hs.append(1.0 / n)
        errs.append(float((sol.y1 - ref).abs().mean()))
    assert abs(fit_slope(hs, errs) - S.SRA1.strong_order) < 0.2, errs
