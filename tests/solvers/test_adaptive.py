"""Adaptive stepping, saving, per-sample behaviour, status codes, agreement with torchdiffeq/scipy."""

import numpy as np
import pytest
import torch

import solvers as S

F64 = dict(dtype=torch.float64)


def vdp(mu):
    def f(t, y):
        return torch.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], 1)

    return f


@pytest.mark.parametrize("solver", [S.Dopri5(), S.Tsit5(), S.Bosh3()], ids=lambda s: type(s).__name__)
def test_agrees_with_scipy_dop853(solver):
    from scipy.integrate import solve_ivp

    y0 = torch.tensor([[2.0, 0.0], [1.0, -1.0], [0.1, 0.3]], **F64)
    sol = S.solve(S.ODETerm(vdp(1.0)), solver, 0.0, 5.0, y0, controller=S.PIDController(rtol=1e-10, atol=1e-10),
                  max_steps=100000)
    assert bool((sol.status == S.Status.SUCCESS).all())
    for i in range(3):
        ref = solve_ivp(lambda t, y: [y[1], (1 - y[0] ** 2) * y[1] - y[0]], (0, 5), y0[i].numpy(),
                        method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
        np.testing.assert_allclose(sol.y1[i].numpy(), ref, rtol=0, atol=3e-8)


def test_agrees_with_torchdiffeq_dopri5():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    y0 = torch.tensor([[2.0, 0.0], [0.5, 0.5]], **F64)
    f = vdp(2.0)
    ts = torch.linspace(0, 4, 9, **F64)
    ref = torchdiffeq.odeint(f, y0, ts, method="dopri5", rtol=1e-10, atol=1e-10)  # (T, B, 2)
    sol = S.solve(S.ODETerm(f), S.Dopri5(), 0.0, 4.0, y0, controller=S.PIDController(rtol=1e-10, atol=1e-10),
                  saveat=S.SaveAt(ts=ts), max_steps=100000)
    torch.testing.assert_close(sol.ys, ref.transpose(0, 1), rtol=0, atol=1e-7)


def test_per_sample_steps_easy_samples_take_fewer_steps():
    # y' = -lam y + sin(w t): sample 0 smooth, sample 1 stiff-ish and oscillatory
    lam = torch.tensor([0.5, 50.0, 1.0], **F64)
    w = torch.tensor([1.0, 30.0, 1.0], **F64)
    f = lambda t, y: -lam.view(-1, 1) * y + torch.sin(w * t).view(-1, 1)  # noqa: E731
    y0 = torch.ones(3, 1, **F64)
    sol = S.solve(S.ODETerm(f), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-6, atol=1e-8))
    steps = sol.num_steps
    assert int(steps[0]) * 3 < int(steps[1])
    assert int(steps[2]) * 3 < int(steps[1])
    assert bool(sol.num_fevals[0] < sol.num_fevals[1])
    # each sample alone takes exactly the steps it took in the batch
    alone = S.solve(S.ODETerm(lambda t, y: -0.5 * y + torch.sin(t).view(-1, 1)), S.Dopri5(), 0.0, 3.0, y0[:1],
                    controller=S.PIDController(rtol=1e-6, atol=1e-8))
    assert int(alone.num_steps[0]) == int(steps[0])
    torch.testing.assert_close(alone.y1[0], sol.y1[0])


def test_per_sample_times_and_backwards_integration():
    # y' = y, samples integrate over different spans, some backwards in time
    t0 = torch.tensor([0.0, 1.0, 2.0, 0.5], **F64)
    t1 = torch.tensor([1.0, 0.0, -1.0, 0.5], **F64)
    y0 = torch.ones(4, 2, **F64)
    ctrl = S.PIDController(rtol=1e-9, atol=1e-9)
    sol = S.solve(S.ODETerm(lambda t, y: y), S.Tsit5(), t0, t1, y0, controller=ctrl)
    exact = torch.exp(t1 - t0).view(-1, 1).expand(4, 2)
    torch.testing.assert_close(sol.y1, exact, rtol=1e-7, atol=0)
    torch.testing.assert_close(sol.ts[:, -1], t1)
    assert int(sol.num_steps[3]) == 0 and int(sol.status[3]) == S.Status.SUCCESS
    fixed = S.solve(S.ODETerm(lambda t, y: y), S.RK4(), t0, t1, y0, dt0=0.01)
    torch.testing.assert_close(fixed.y1, exact, rtol=1e-8, atol=0)
    assert fixed.num_steps.tolist() == [100, 100, 300, 0]


def test_saveat_ts_dense_and_per_sample():
    f = lambda t, y: torch.cat([y[:, 1:], -y[:, :1]], 1)  # noqa: E731  harmonic oscillator
    y0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], **F64)
    ts = torch.tensor([[0.0, 0.4, 1.3, 2.0], [0.1, 0.2, 0.3, 1.9]], **F64)
    sol = S.solve(S.ODETerm(f), S.Dopri5(), 0.0, 2.0, y0, controller=S.PIDController(rtol=1e-8, atol=1e-8),
                  saveat=S.SaveAt(ts=ts, t1=True))
    exact0 = torch.stack([torch.cos(ts[0]), -torch.sin(ts[0])], -1)
    exact1 = torch.stack([torch.sin(ts[1]), torch.cos(ts[1])], -1)
    assert sol.ys.shape == (2, 5, 2)
    torch.testing.assert_close(sol.ys[0, :4], exact0, atol=1e-6, rtol=0)
    torch.testing.assert_close(sol.ys[1, :4], exact1, atol=1e-6, rtol=0)
    torch.testing.assert_close(sol.ts[:, :4], ts)


def test_saveat_steps_adaptive_and_fixed():
    y0 = torch.ones(2, 1, **F64)
    f = lambda t, y: -torch.tensor([1.0, 20.0], **F64).view(-1, 1) * y  # noqa: E731
    sol = S.solve(S.ODETerm(f), S.Bosh3(), 0.0, 1.0, y0, controller=S.PIDController(rtol=1e-5, atol=1e-7),
                  saveat=S.SaveAt(steps=True))
    for i in range(2):
        n = int(sol.num_steps[i])
        assert int(sol.ys_valid[i].sum()) == n + 1
        ts = sol.ts[i, : n + 1]
        assert bool((ts[1:] > ts[:-1]).all()) and float(ts[-1]) == 1.0
        lam = 1.0 if i == 0 else 20.0
        torch.testing.assert_close(sol.ys[i, : n + 1, 0], torch.exp(-lam * ts), rtol=1e-3, atol=1e-6)
    fixed = S.solve(S.ODETerm(f), S.Euler(), 0.0, 1.0, y0, dt0=0.25, saveat=S.SaveAt(steps=True))
    assert fixed.ts.shape == (2, 5) and fixed.ys.shape == (2, 5, 1)


def test_step_to_grid_shared_and_per_sample():
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.ones(2, 3, **F64)
    grid = torch.tensor([1.0, 0.7, 0.4, 0.2, 0.1, 0.0], **F64)  # decreasing (a diffusion schedule)
    a = S.solve(S.ODETerm(f), S.Heun(), None, None, y0, controller=S.StepTo(grid))
    b = S.solve(S.ODETerm(f), S.Heun(), None, None, y0, controller=S.StepTo(grid.expand(2, 6)))
    torch.testing.assert_close(a.y1, b.y1)
    torch.testing.assert_close(a.y1, torch.full_like(y0, np.e), rtol=2e-2, atol=0)
    # per-sample grids, the second padded with repeated end points (zero-length steps are no-ops)
    grids = torch.tensor([[0.0, 0.5, 1.0, 1.5], [0.0, 0.5, 0.5, 0.5]], **F64)
    c = S.solve(S.ODETerm(f), S.RK4(), None, None, y0, controller=S.StepTo(grids))
    assert c.num_steps.tolist() == [3, 1]
    ref = S.solve(S.ODETerm(f), S.RK4(), 0.0, 0.5, y0[:1], dt0=0.5)
    torch.testing.assert_close(c.y1[1], ref.y1[0])


def test_max_steps_gives_status_not_exception():
    y0 = torch.ones(2, 1, **F64)
    lam = torch.tensor([1.0, 1e4], **F64).view(-1, 1)
    sol = S.solve(S.ODETerm(lambda t, y: -lam * y), S.Dopri5(), 0.0, 10.0, y0,
                  controller=S.PIDController(rtol=1e-6, atol=1e-9), max_steps=200)
    assert sol.status.tolist() == [S.Status.SUCCESS, S.Status.MAX_STEPS_REACHED]
    assert int(sol.num_steps[1] + sol.num_rejected[1]) == 200
    assert float(sol.ts[1, -1]) < 10.0  # saved where it stopped


def test_dtmin_gives_step_size_too_small():
    # finite-time blow-up y' = y^2, y(0) = 1 at t = 1
    y0 = torch.tensor([[1.0], [0.1]], **F64)
    sol = S.solve(S.ODETerm(lambda t, y: y * y), S.Dopri5(), 0.0, 2.0, y0,
                  controller=S.PIDController(rtol=1e-6, atol=1e-6, dtmin=1e-6))
    assert sol.status.tolist() == [S.Status.STEP_SIZE_TOO_SMALL, S.Status.SUCCESS]
    torch.testing.assert_close(sol.y1[1], torch.tensor([0.1 / (1 - 0.2)], **F64))


def test_pid_coefficients_and_first_step():
    y0 = torch.tensor([[2.0, 0.0]], **F64)
    ref = S.solve(S.ODETerm(vdp(1.0)), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-10, atol=1e-10),
                  max_steps=10**5).y1
    for ctrl in (S.IController(1e-6, 1e-6), S.PIDController(1e-6, 1e-6, pcoeff=0.4, icoeff=0.3, dcoeff=0.1)):
        sol = S.solve(S.ODETerm(vdp(1.0)), S.Dopri5(), 0.0, 3.0, y0, controller=ctrl)
        assert float((sol.y1 - ref).abs().max()) < 1e-4
    # explicit dt0 and automatic choice reach the same answer
    sol = S.solve(S.ODETerm(vdp(1.0)), S.Dopri5(), 0.0, 3.0, y0, dt0=1e-3,
                  controller=S.PIDController(1e-8, 1e-8))
    assert float((sol.y1 - ref).abs().max()) < 1e-6


def test_term_solver_mismatch_errors():
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(2, 2, **F64)
    bm = S.BrownianIncrements((2, 2), g, dtype=torch.float64)
    general = S.SDETerm(lambda t, y: y, lambda t, y: torch.ones(2, 2, 2, **F64), noise="general", brownian=bm)
    diag = S.SDETerm(lambda t, y: y, lambda t, y: y, noise="diagonal", brownian=bm)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(general, S.Milstein(), 0.0, 1.0, y, dt0=0.1)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(diag, S.SRA1(), 0.0, 1.0, y, dt0=0.1)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(diag, S.Dopri5(), 0.0, 1.0, y, dt0=0.1)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(S.ODETerm(lambda t, y: y), S.EulerMaruyama(), 0.0, 1.0, y, dt0=0.1)
    with pytest.raises(S.SolveConfigError):
        S.solve(S.ODETerm(lambda t, y: y), S.RK4(), 0.0, 1.0, y, controller=S.PIDController())


def test_general_noise_euler_maruyama_matches_manual_loop():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    b, d, m = 5, 3, 2
    mat = torch.randn(d, m, generator=torch.Generator().manual_seed(0), **F64)
    diff = lambda t, y: mat.expand(y.shape[0], d, m) * y.unsqueeze(-1)  # noqa: E731
    bm = S.BrownianIncrements((b, m), g1, dtype=torch.float64)
    term = S.SDETerm(lambda t, y: -y, diff, noise="general", brownian=bm)
    y0 = torch.ones(b, d, **F64)
    sol = S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.1)
    y = y0
    for _ in range(10):
        dw = torch.randn(b, m, generator=g2, **F64) * 0.1**0.5
        y = y - y * 0.1 + (diff(None, y) @ dw.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(sol.y1, y)


def test_fixed_step_loop_has_no_host_sync(monkeypatch):
    """With Python-number end points the fixed-step path never converts a tensor to a Python value."""
    g = torch.Generator().manual_seed(0)
    term = S.SDETerm(lambda t, y: -y, lambda t, y: 0.5 * torch.ones_like(y), noise="diagonal",
                     brownian=S.BrownianIncrements((4, 3), g, dtype=torch.float64))
    y0 = torch.ones(4, 3, **F64)

    def boom(*a, **k):
        raise AssertionError("host sync in the step loop")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    sol = S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.01, saveat=S.SaveAt(ts=torch.tensor([0.5, 1.0], **F64)))
    sol2 = S.solve(S.ODETerm(lambda t, y: -y), S.Dopri5(), 0.0, 1.0, y0, dt0=0.1)
    monkeypatch.undo()
    assert sol.ys.shape == (4, 2, 3) and torch.isfinite(sol2.y1).all()
