"""Control paths and CDE terms."""

import torch

import solvers as S

F64 = dict(dtype=torch.float64)


def test_linear_and_hermite_paths_interpolate_and_differentiate():
    ts = torch.tensor([0.0, 0.5, 1.5, 2.0, 3.0], **F64)
    xs = torch.stack([torch.sin(ts), ts**2], -1).unsqueeze(0).expand(2, 5, 2)
    for path in (S.LinearInterpolation(ts, xs), S.HermiteCubicInterpolation(ts, xs)):
        for i, t in enumerate(ts):
            torch.testing.assert_close(path.evaluate(torch.full((2,), float(t), **F64)), xs[:, i])
    lin = S.LinearInterpolation(ts, xs)
    torch.testing.assert_close(lin.derivative(torch.full((2,), 1.0, **F64))[0], (xs[0, 2] - xs[0, 1]) / 1.0)
    # Hermite with backward differences is C1 and its derivative at a knot is the backward difference
    h = S.HermiteCubicInterpolation(ts, xs)
    eps = 1e-7
    for t in (0.5, 1.5, 2.0):
        left = h.derivative(torch.full((2,), t - eps, **F64))
        right = h.derivative(torch.full((2,), t + eps, **F64))
        torch.testing.assert_close(left, right, rtol=0, atol=1e-5)
    k = 2  # knot t = 1.5: derivative equals (x_2 - x_1) / (t_2 - t_1)
    torch.testing.assert_close(h.derivative(torch.full((2,), 1.5, **F64))[0], (xs[0, k] - xs[0, k - 1]) / 1.0)
    # causal: changing a future observation leaves earlier intervals unchanged
    xs2 = xs.clone()
    xs2[:, 3] += 1.0
    h2 = S.HermiteCubicInterpolation(ts, xs2)
    t = torch.full((2,), 1.2, **F64)
    torch.testing.assert_close(h2.evaluate(t), h.evaluate(t), rtol=0, atol=0)
    # derivative matches finite differences inside an interval
    t = torch.full((2,), 1.1, **F64)
    fd = (h.evaluate(t + 1e-6) - h.evaluate(t - 1e-6)) / 2e-6
    torch.testing.assert_close(h.derivative(t), fd, rtol=1e-6, atol=1e-8)


def test_cde_with_time_as_control_is_the_ode():
    # X(t) = (t, 2t): dz = A z dX_1 + B z dX_2 = (A + 2B) z dt exactly on a linear path
    A = torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], **F64)
    Bm = torch.tensor([[0.1, 0.0], [0.0, -0.1]], **F64)
    ts = torch.linspace(0, 2, 7, **F64)
    xs = torch.stack([ts, 2 * ts], -1).unsqueeze(0).expand(3, 7, 2)
    f = lambda t, z: torch.stack([z @ A.T, z @ Bm.T], -1)  # noqa: E731  (B, 2, channels)
    z0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), **F64)
    exact = z0 @ torch.linalg.matrix_exp(2.0 * (A + 2 * Bm)).T
    for path in (S.LinearInterpolation(ts, xs), S.HermiteCubicInterpolation(ts, xs)):
        sol = S.solve(S.CDETerm(f, path), S.Dopri5(), 0.0, 2.0, z0, controller=S.PIDController(1e-10, 1e-10))
        torch.testing.assert_close(sol.y1, exact, rtol=1e-8, atol=1e-9)


def test_cde_gradient_through_control_path():
    ts = torch.linspace(0, 1, 5, **F64)
    xs = torch.randn(2, 5, 1, generator=torch.Generator().manual_seed(1), **F64).requires_grad_(True)
    f = lambda t, z: torch.tanh(z).unsqueeze(-1)  # noqa: E731
    sol = S.solve(S.CDETerm(f, S.HermiteCubicInterpolation(ts, xs)), S.RK4(), 0.0, 1.0,
                  torch.ones(2, 3, **F64), dt0=0.05)
    (g,) = torch.autograd.grad(sol.y1.sum(), xs)

    def value(x):
        with torch.no_grad():
            return float(S.solve(S.CDETerm(f, S.HermiteCubicInterpolation(ts, x)), S.RK4(), 0.0, 1.0,
                                 torch.ones(2, 3, **F64), dt0=0.05).y1.sum())

    # central finite differences of the same discrete solve, every control value
    fd = torch.zeros_like(xs)
    h = 1e-6
    for idx in torch.cartesian_prod(torch.arange(2), torch.arange(5), torch.arange(1)).tolist():
        e = torch.zeros_like(xs)
        e[tuple(idx)] = h
        fd[tuple(idx)] = (value(xs.detach() + e) - value(xs.detach() - e)) / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)
    assert float(g.abs().min()) > 1e-6  # every control value matters (the smallest is 2e-5)
