"""Brownian paths: reproducibility in any query order, per-sample seeds, variance and independence."""

import math

import torch

import solvers as S

F64 = dict(dtype=torch.float64)


def _bi(b=6, seed=5, depth=12, t0=0.0, t1=2.0, shape=(3,)):
    return S.BrownianInterval(t0, t1, (b, *shape), seed=seed, depth=depth, dtype=torch.float64)


def test_same_seed_same_values_in_any_query_order():
    times = torch.tensor([0.3, 1.7, 0.05, 1.0, 1.2345, 2.0], **F64)
    a = _bi()
    forward = [a.evaluate(torch.full((6,), float(t), **F64)) for t in times]
    b = _bi()  # fresh object, reversed order, different dt pairs
    backward = [b.evaluate(torch.full((6,), float(t), **F64)) for t in reversed(times)][::-1]
    for x, y in zip(forward, backward, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # increments are differences of the same path, in any order and direction
    dw = b.increment(torch.full((6,), 1.7, **F64), torch.full((6,), -1.4, **F64))
    torch.testing.assert_close(dw, forward[0] - forward[1], rtol=0, atol=1e-12)  # 1.7 - 1.4 != 0.3 in floats
    assert not torch.equal(_bi(seed=6).evaluate(torch.full((6,), 1.0, **F64)), forward[3])


def test_per_sample_paths_depend_only_on_their_seed():
    seeds = torch.tensor([11, 12, 13, 14])
    t = torch.tensor([0.4, 0.9, 1.3, 0.2], **F64)
    full = S.BrownianInterval(0.0, 2.0, (4, 2), seed=seeds, depth=10, dtype=torch.float64).evaluate(t)
    sub = S.BrownianInterval(0.0, 2.0, (2, 2), seed=seeds[[2, 0]], depth=10, dtype=torch.float64).evaluate(t[[2, 0]])
    torch.testing.assert_close(sub, full[[2, 0]], rtol=0, atol=0)
    # per-sample time spans too: sample i's span does not affect sample j
    t1 = torch.tensor([2.0, 2.0, 5.0, 2.0], **F64)
    other = S.BrownianInterval(0.0, t1, (4, 2), seed=seeds, depth=10, dtype=torch.float64).evaluate(t)
    torch.testing.assert_close(other[[0, 1, 3]], full[[0, 1, 3]], rtol=0, atol=0)


def test_increment_variance_independence_and_levy_area():
    n = 20000
    bi = S.BrownianInterval(0.0, 1.0, (n, 1), seed=2024, depth=10, dtype=torch.float64)
    s = torch.full((n,), 0.125, **F64)
    h = torch.full((n,), 0.5, **F64)
    dw1, u1 = bi.increment(s, h, levy=True)
    dw2 = bi.increment(s + h, torch.full((n,), 0.375, **F64))
    dw0 = bi.increment(torch.zeros(n, **F64), s)
    # 4 standard errors each: a Gaussian sample variance / its value has SE sqrt(2 / n); a correlation of
    # independent Gaussians SE 1 / sqrt(n); E[U dW] / Cov(U, dW) with correlation rho = sqrt(3) / 2 has SE
    # sqrt((1 + rho^2) / n) / rho
    var_tol, corr_tol = 4 * math.sqrt(2 / n), 4 / math.sqrt(n)
    rho = math.sqrt(3) / 2
    cov_tol = 4 * math.sqrt((1 + rho**2) / n) / rho
    assert abs(float(dw1.var()) / 0.5 - 1) < var_tol
    assert abs(float(dw2.var()) / 0.375 - 1) < var_tol
    assert abs(float(dw0.var()) / 0.125 - 1) < var_tol
    for a, b, va, vb in ((dw1, dw2, 0.5, 0.375), (dw0, dw1, 0.125, 0.5), (dw0, dw2, 0.125, 0.375)):
        corr = float((a * b).mean()) / math.sqrt(va * vb)
        assert abs(corr) < corr_tol
    # U = ∫ (W_r - W_s) dr = h (H + dW/2): Var U = h^3/3, Cov(U, dW) = h^2/2
    assert abs(float(u1.var()) / (0.5**3 / 3) - 1) < var_tol
    assert abs(float((u1 * dw1).mean()) / (0.5**2 / 2) - 1) < cov_tol
    # increments over disjoint intervals sum to the total
    torch.testing.assert_close(dw0 + dw1 + dw2, bi.evaluate(torch.ones(n, **F64)), rtol=0, atol=1e-12)


def test_brownian_increments_use_only_the_given_generator():
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = S.BrownianIncrements((3, 2), g1, dtype=torch.float64)
    b = S.BrownianIncrements((3, 2), g2, dtype=torch.float64)
    torch.manual_seed(0)
    x = a.increment(torch.zeros(3, **F64), torch.full((3,), 0.25, **F64))
    torch.manual_seed(1)  # the global RNG is irrelevant
    y = b.increment(torch.zeros(3, **F64), torch.full((3,), 0.25, **F64))
    torch.testing.assert_close(x, y, rtol=0, atol=0)
    z = a.increment(torch.zeros(3, **F64), torch.zeros(3, **F64))
    assert torch.equal(z, torch.zeros_like(z))  # finished samples (dt = 0) get no noise


def test_sde_solve_with_interval_is_reproducible_and_step_independent():
    # EM on dy = dW reproduces W(t1) exactly for any step size (additive, zero drift)
    bi = S.BrownianInterval(0.0, 1.0, (8, 2), seed=1, depth=12, dtype=torch.float64)
    term = S.SDETerm(lambda t, y: torch.zeros_like(y), lambda t, y: torch.ones_like(y), noise="additive", brownian=bi)
    y0 = torch.zeros(8, 2, **F64)
    a = S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.1).y1
    b = S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=1 / 64).y1
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, bi.evaluate(torch.ones(8, **F64)), rtol=0, atol=1e-12)
