"""The compiled path (``solve(..., compile=True)``) against the eager one: the same functions run in both, so they
must agree to float rounding (float64: identical step counts and statuses, states within ~1e-10), and the
compiled path must really have run -- a compile failure falls back to eager with a ``RuntimeWarning``, which
these tests turn into an error.

Compiling costs seconds per problem kind, so the fast group keeps two cases (the compiled ``while_loop`` without
autograd and the compiled chunks with autograd); the rest, and the order tests on the compiled path, are slow."""

import warnings

import pytest
import torch

import solvers as S
import solvers._loop as L

from .conftest import fit_slope
from .test_order import ODE_SOLVERS, _nonautonomous_problem

F64 = dict(dtype=torch.float64)


def vdp(mu):
    def f(t, y):
        return torch.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], 1)

    return f


def _compiled_keys(fn):
    return [k for k in L._COMPILED if k[0] is fn and k not in L._COMPILE_FAILED]


def _both(*args, grad=False, loop=None, **kw):
    out = []
    for compiled in (False, True):
        before = len(_compiled_keys(loop)) if loop is not None else 0
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
            with torch.set_grad_enabled(grad):
                out.append(S.solve(*args, compile=compiled, **kw))
        if compiled and loop is not None:  # the compiled function of that loop exists and did not fail
            assert len(_compiled_keys(loop)) >= max(before, 1)
    return out


def _same(a, b, atol=1e-10):
    for name in ("num_steps", "num_rejected", "num_fevals", "status"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    torch.testing.assert_close(a.ts, b.ts, rtol=1e-9, atol=atol)
    torch.testing.assert_close(a.ys, b.ys, rtol=1e-9, atol=atol)


def test_compiled_while_loop_matches_eager():
    g = torch.Generator().manual_seed(0)
    y0 = torch.tensor([2.0, 0.0], **F64) + 0.3 * torch.randn(16, 2, generator=g, **F64)
    ts = torch.linspace(0, 3, 7, **F64)
    a, b = _both(S.ODETerm(vdp(2.0)), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-6, atol=1e-6),
                 saveat=S.SaveAt(t0=True, ts=ts), loop=L._adaptive_while)
    _same(a, b)
    assert int(a.num_rejected.sum()) > 0  # the case exercises rejections


def test_compiled_chunks_with_autograd_match_eager():
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5], [0.3, -1.0]], **F64, requires_grad=True)
    grads, sols = [], []
    for compiled in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            ctrl = S.PIDController(rtol=1e-7, atol=1e-7)
            sol = S.solve(S.ODETerm(vdp(1.5)), S.Tsit5(), 0.0, 2.0, y0, controller=ctrl, compile=compiled)
        (g,) = torch.autograd.grad(sol.y1.square().sum(), y0)
        grads.append(g)
        sols.append(sol)
    assert _compiled_keys(L._adaptive_chunk)
    _same(*sols)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("solver", [S.Tsit5(), S.Bosh3(), S.Heun()], ids=lambda s: type(s).__name__)
def test_compiled_other_methods_match_eager(solver):
    y0 = torch.tensor([2.0, 0.0], **F64) + 0.3 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1), **F64)
    a, b = _both(S.ODETerm(vdp(2.0)), solver, 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-6, atol=1e-6),
                 loop=L._adaptive_while)
    _same(a, b)


@pytest.mark.slow
def test_compiled_per_sample_times_backwards_statuses_history_and_nan():
    t0 = torch.tensor([0.0, 1.0, 2.0, 0.5], **F64)
    t1 = torch.tensor([1.0, 0.0, -1.0, 0.5], **F64)
    a, b = _both(S.ODETerm(lambda t, y: y * torch.cos(t).unsqueeze(1)), S.Tsit5(), t0, t1, torch.ones(4, 2, **F64),
                 controller=S.PIDController(rtol=1e-8, atol=1e-8), loop=L._adaptive_while)
    _same(a, b)
    assert int(b.num_steps[3]) == 0 and int(b.status[3]) == S.Status.SUCCESS
    y0 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], **F64)
    a, b = _both(S.ODETerm(vdp(5.0)), S.Dopri5(), 0.0, 20.0, y0, controller=S.PIDController(rtol=1e-8, atol=1e-8),
                 max_steps=30)
    _same(a, b)
    assert (b.status == S.Status.MAX_STEPS_REACHED).all()
    # y' = y^2 blows up at t = 1: the step size collapses below dtmin
    a, b = _both(S.ODETerm(lambda t, y: y * y), S.Dopri5(), 0.0, 2.0, torch.ones(2, 1, **F64),
                 controller=S.PIDController(rtol=1e-6, atol=1e-6, dtmin=1e-4, dtmax=0.1))
    _same(a, b)
    assert (b.status == S.Status.STEP_SIZE_TOO_SMALL).all()
    ctrl = S.PIDController(rtol=1e-6, atol=1e-6, pcoeff=0.2, icoeff=0.5, dcoeff=0.1, factormax=5.0, safety=0.8)
    a, b = _both(S.ODETerm(vdp(2.0)), S.Tsit5(), 0.0, 4.0, y0, controller=ctrl)
    _same(a, b)
    # NaN wherever y > 1.5: the step is rejected and shrunk (a NaN error norm counts as inf)
    f = lambda t, y: torch.where(y > 1.5, torch.full_like(y, float("nan")), torch.ones_like(y))  # noqa: E731
    a, b = _both(S.ODETerm(f), S.Bosh3(), 0.0, 1.0, torch.tensor([[0.0], [1.0]], **F64),
                 controller=S.PIDController(rtol=1e-6, atol=1e-6), max_steps=50)
    _same(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ODE_SOLVERS, ids=lambda s: type(s).__name__)
def test_ode_order_on_compiled_path(solver):
    """The non-autonomous nonlinear order test of test_order.py, on fixed grids with the compiled step (every ODE
    method, reversible Heun included)."""
    term, y0, exact, t1 = _nonautonomous_problem()
    ns = {4: [8, 16, 32, 64], 5: [32, 64, 128, 256], 3: [32, 64, 128, 256]}.get(solver.order, [64, 128, 256, 512])
    hs, errs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for n in ns:
            sol = S.solve(term, solver, 0.0, t1, y0, dt0=t1 / n, compile=True)
            eager = S.solve(term, solver, 0.0, t1, y0, dt0=t1 / n)
            torch.testing.assert_close(sol.y1, eager.y1, rtol=1e-12, atol=1e-13)
            hs.append(t1 / n)
            errs.append(float((sol.y1 - exact).abs().max()))
    assert _compiled_keys(L._fixed_step)
    assert abs(fit_slope(hs, errs) - solver.order) < 0.3, (errs, fit_slope(hs, errs))


def test_solvers_compile_env_switches_the_default(monkeypatch):
    """``compile=None`` (the default) reads SOLVERS_COMPILE: unset/0 eager, 1 compiled (the switch that turns the
    compiled path on for every sampler built on ``solve``)."""
    calls = []
    orig = L._try_compiled

    def spy(key, *args):
        calls.append(key[0])
        return orig(key, *args)

    monkeypatch.setattr(L, "_try_compiled", spy)
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5]], **F64)
    with torch.no_grad():
        for env, expect in (("0", []), ("1", [L._adaptive_while])):
            monkeypatch.setenv("SOLVERS_COMPILE", env)
            calls.clear()
            S.solve(S.ODETerm(vdp(2.0)), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-6, atol=1e-6))
            assert calls == expect, env
        monkeypatch.delenv("SOLVERS_COMPILE")
        calls.clear()
        S.solve(S.ODETerm(vdp(2.0)), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(rtol=1e-6, atol=1e-6))
        assert calls == []


@pytest.mark.slow
@pytest.mark.parametrize("adjoint", ["direct", "checkpoint", "backsolve"])
def test_gradients_on_the_compiled_path_match_eager(adjoint):
    """Autograd through compiled chunks, CheckpointAdjoint (which runs its chunks eagerly: checkpoint's
    recomputation cannot stop inside a compiled region) and BacksolveAdjoint (its forward solve is the compiled
    while_loop; the backward solve with its step hook runs eagerly) give the eager gradients."""
    from .test_adjoint import Field

    field = Field()
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), **F64)
    adj = {"direct": None, "checkpoint": S.CheckpointAdjoint(every=5), "backsolve": S.BacksolveAdjoint()}[adjoint]
    grads = []
    for compiled in (False, True):
        y = y0.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            sol = S.solve(S.ODETerm(field), S.Dopri5(), 0.0, 2.0, y, controller=S.PIDController(1e-8, 1e-8),
                          adjoint=adj, compile=compiled)
        loss = (sol.y1**2).sum()
        grads.append(torch.autograd.grad(loss, [y, *field.parameters()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
