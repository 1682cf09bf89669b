"""Strong orders of every SDE method on non-autonomous problems with exact solutions.

The GBM order tests (test_order.py) have constant coefficients, so a method that evaluated its drift or
diffusion at the wrong time (or never advanced t) passed them. Here both coefficients depend on t, and the
exact solution is built from the same Brownian path (its value and time integral over [0, T], as the path
hands them to the solvers), so no fine-grid reference solve is involved. Solvers are used through the
public API only (``solvers.solve``, the terms, the method classes).

With b(t) = B0 + B1 t (integration by parts, K_T = ∫_0^T W ds):
    ∫_0^T b dW = b(T) W_T − B1 K_T,     ∫_0^T b² ds = B0² T + B0 B1 T² + B1² T³ / 3.
"""

import math

import pytest
import torch

import solvers as S

from .conftest import GridBrownian, fit_slope
from .test_order import GBM_CASES

T, B0, B1, PATHS = 1.0, 0.3, 0.5, 4000
NS = (8, 16, 32, 64, 128)  # every step end is a node of the path's grid (128 cells)


def _b(t):
    return (B0 + B1 * t).view(-1, 1)


def _path(seed):
    bm = GridBrownian(0.0, T, (PATHS, 1), fine_steps=max(NS), seed=seed)
    w, k = bm.increment(torch.zeros(PATHS, dtype=torch.float64), torch.full((PATHS,), T, dtype=torch.float64),
                        levy=True)  # W_T and K_T = ∫_0^T W ds (W_0 = 0)
    stoch_int = (B0 + B1 * T) * w - B1 * k  # ∫ b dW, exact on this path
    return bm, stoch_int


def _strong_errors(term, solver, y0, exact, ns=NS):
    hs, errs = [], []
    for n in ns:
        sol = S.solve(term, solver, 0.0, T, y0, dt0=T / n)
        assert int(sol.num_steps[0]) == n
        hs.append(T / n)
        errs.append(float((sol.y1 - exact).abs().mean()))
    return hs, errs


# --- multiplicative: dX = cos(t) X dt + b(t) X dW --------------------------------------------------------
# Ito:           X_T = X_0 exp(sin T − ½ ∫ b² ds + ∫ b dW)
# Stratonovich:  X_T = X_0 exp(sin T + ∫ b ∘ dW), and ∫ b ∘ dW = ∫ b dW for deterministic b
# Scalar noise is commutative, so the Stratonovich Heun schemes reach strong order 1 here (0.5 in general).
@pytest.mark.parametrize(**GBM_CASES)
def test_strong_order_time_dependent_gbm(solver, strat, expected):
    bm, stoch_int = _path(seed=3)
    term = S.SDETerm(lambda t, y: torch.cos(t).view(-1, 1) * y, lambda t, y: _b(t) * y, noise="diagonal",
                     brownian=bm)
    y0 = torch.full((PATHS, 1), 1.2, dtype=torch.float64)
    int_b2 = B0**2 * T + B0 * B1 * T**2 + B1**2 * T**3 / 3
    ito = y0 * torch.exp(math.sin(T) + stoch_int - 0.5 * int_b2)
    strat_sol = y0 * torch.exp(math.sin(T) + stoch_int)
    exact, other = (strat_sol, ito) if strat else (ito, strat_sol)
    hs, errs = _strong_errors(term, solver, y0, exact)
    slope = fit_slope(hs, errs)
    assert abs(slope - expected) < 0.2, (slope, errs)
    # and to this solution, not the other calculus' (½∫b² ≈ 0.15 apart in log X): a fitted slope alone
    # also holds for a method converging to the wrong limit at first
    assert errs[-1] < 0.3 * float((exact - other).abs().mean()), errs


# --- additive: dX = cos(t) dt + b(t) dW --------------------------------------------------------------------
# X_T = X_0 + sin T + b(T) W_T − B1 K_T. Euler–Maruyama, Milstein (no correction for additive noise) and the
# Heun schemes take b at the step's nodes and miss B1 ∫ (s − t_n) dW (variance ~ h³ per step), so they are
# strong order 1. SRA1's diffusion part b(t+h)(ΔW − U/h) + b(t) U/h = b(t) ΔW + B1 (h ΔW − U) is *exact* for
# b linear in t, and its drift part (nodes 0, 3/4; weights 1/3, 2/3) integrates cos at order 2: the whole
# error is that quadrature error, slope 2. A wrong diffusion node or weight leaves a random O(h) error,
# a wrong drift node or weight an O(h) one.
ADDITIVE = [
    pytest.param(S.EulerMaruyama(), 1.0, id="EulerMaruyama"),
    # Milstein with additive noise: the correction vanishes (this raised in autograd before the fix)
    pytest.param(S.Milstein(), 1.0, id="Milstein"),
    pytest.param(S.Milstein(derivative_free=True), 1.0, id="MilsteinDerivativeFree"),
    pytest.param(S.EulerHeun(), 1.0, id="EulerHeun"),
    pytest.param(S.ReversibleHeun(), 1.0, id="ReversibleHeun"),
    pytest.param(S.SRA1(), S.SRA1.order, id="SRA1"),
]


@pytest.mark.parametrize("solver,expected", ADDITIVE)
def test_strong_order_time_dependent_additive(solver, expected):
    bm, stoch_int = _path(seed=5)
    term = S.SDETerm(lambda t, y: torch.cos(t).view(-1, 1).expand_as(y), lambda t, y: _b(t).expand_as(y),
                     noise="additive", brownian=bm)
    y0 = torch.full((PATHS, 1), 0.4, dtype=torch.float64)
    exact = y0 + math.sin(T) + stoch_int
    hs, errs = _strong_errors(term, solver, y0, exact)
    slope = fit_slope(hs, errs)
    assert abs(slope - expected) < 0.2, (slope, errs)
    if isinstance(solver, S.SRA1):
        # the error is the deterministic quadrature error of ∫ cos (the same on every path): compare it with
        # the closed form of SRA1's drift rule on cos, summed over the grid
        for n, err in zip(NS, errs, strict=True):
            h = T / n
            t = torch.arange(n, dtype=torch.float64) * h
            quad = float((h * (torch.cos(t) / 3 + 2 * torch.cos(t + 0.75 * h) / 3)).sum())
            assert err == pytest.approx(abs(quad - math.sin(T)), rel=1e-6, abs=1e-12), (n, err, quad)
