"""The low-overhead adaptive loop (``solvers._fast``, used without autograd) against the generic loop."""

import pytest
import torch

import solvers as S
import solvers._fast as fast

F64 = dict(dtype=torch.float64)


def vdp(mu):
    def f(t, y):
        return torch.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], 1)

    return f


def _both(monkeypatch, *args, **kw):
    out = []
    for enabled in (False, True):
        monkeypatch.setattr(fast, "ENABLED", enabled)
        calls = []
        orig = fast.run

        def spy(*a, _calls=calls, _orig=orig, **k):
            _calls.append(1)
            return _orig(*a, **k)

        monkeypatch.setattr(fast, "run", spy)
        with torch.no_grad():
            out.append(S.solve(*args, **kw))
        monkeypatch.setattr(fast, "run", orig)
        assert bool(calls) == enabled
    return out


def _same(a, b, atol=1e-10):  # the error estimate cancels: rounding shows in dt
    for name in ("num_steps", "num_rejected", "num_fevals", "status"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    torch.testing.assert_close(a.ts, b.ts, rtol=1e-9, atol=atol)
    torch.testing.assert_close(a.ys, b.ys, rtol=1e-9, atol=atol)
    if a.ys_valid is not None:
        assert a.ys_valid.tolist() == b.ys_valid.tolist()


@pytest.mark.parametrize("solver", [S.Dopri5(), S.Tsit5(), S.Bosh3(), S.Heun()], ids=lambda s: type(s).__name__)
def test_fast_loop_matches_generic(monkeypatch, solver):
    g = torch.Generator().manual_seed(0)
    y0 = torch.tensor([2.0, 0.0], **F64) + 0.3 * torch.randn(16, 2, generator=g, **F64)
    ts = torch.linspace(0, 3, 7, **F64)
    a, b = _both(
        monkeypatch,
        S.ODETerm(vdp(2.0)),
        solver,
        0.0,
        3.0,
        y0,
        controller=S.PIDController(rtol=1e-6, atol=1e-6),
        saveat=S.SaveAt(t0=True, ts=ts),
    )
    _same(a, b)


def test_fast_loop_per_sample_times_backwards_and_equal_ends(monkeypatch):
    t0 = torch.tensor([0.0, 1.0, 2.0, 0.5], **F64)
    t1 = torch.tensor([1.0, 0.0, -1.0, 0.5], **F64)
    y0 = torch.ones(4, 2, **F64)
    a, b = _both(
        monkeypatch,
        S.ODETerm(lambda t, y: y * torch.cos(t).unsqueeze(1)),
        S.Tsit5(),
        t0,
        t1,
        y0,
        controller=S.PIDController(rtol=1e-8, atol=1e-8),
    )
    _same(a, b)
    assert int(b.num_steps[3]) == 0 and int(b.status[3]) == S.Status.SUCCESS


def test_fast_loop_scalar_backwards_steps_and_shapes(monkeypatch):
    y0 = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(1), **F64)
    f = lambda t, y: -y + torch.sin(t).view(-1, 1, 1)  # noqa: E731
    a, b = _both(
        monkeypatch,
        S.ODETerm(f),
        S.Dopri5(),
        2.0,
        -1.0,
        y0,
        controller=S.PIDController(rtol=1e-7, atol=1e-9),
        saveat=S.SaveAt(steps=True),
    )
    _same(a, b)
    y1 = torch.randn(6, 1, **F64)
    a, b = _both(
        monkeypatch,
        S.ODETerm(lambda t, y: -y * t.unsqueeze(1)),
        S.Heun(),
        0.0,
        2.0,
        y1,
        controller=S.PIDController(rtol=1e-5, atol=1e-7),
    )
    _same(a, b)


def test_fast_loop_statuses_and_pid_history(monkeypatch):
    y0 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], **F64)
    a, b = _both(
        monkeypatch,
        S.ODETerm(vdp(5.0)),
        S.Dopri5(),
        0.0,
        20.0,
        y0,
        controller=S.PIDController(rtol=1e-8, atol=1e-8),
        max_steps=30,
    )
    _same(a, b)
    assert (b.status == S.Status.MAX_STEPS_REACHED).all()
    # y' = y^2 blows up at t = 1: the step size collapses below dtmin
    a, b = _both(
        monkeypatch,
        S.ODETerm(lambda t, y: y * y),
        S.Dopri5(),
        0.0,
        2.0,
        torch.ones(2, 1, **F64),
        controller=S.PIDController(rtol=1e-6, atol=1e-6, dtmin=1e-4, dtmax=0.1),
    )
    _same(a, b)
    assert (b.status == S.Status.STEP_SIZE_TOO_SMALL).all()
    ctrl = S.PIDController(rtol=1e-6, atol=1e-6, pcoeff=0.2, icoeff=0.5, dcoeff=0.1, factormax=5.0, safety=0.8)
    a, b = _both(monkeypatch, S.ODETerm(vdp(2.0)), S.Tsit5(), 0.0, 4.0, y0, controller=ctrl)
    _same(a, b)


def test_fast_loop_nan_rejects_and_float32(monkeypatch):
    # NaN wherever y > 1.5: the step is rejected and shrunk (the generic loop maps a NaN error to inf)
    f = lambda t, y: torch.where(y > 1.5, torch.full_like(y, float("nan")), torch.ones_like(y))  # noqa: E731
    y0 = torch.tensor([[0.0], [1.0]], **F64)
    a, b = _both(
        monkeypatch,
        S.ODETerm(f),
        S.Bosh3(),
        0.0,
        1.0,
        y0,
        controller=S.PIDController(rtol=1e-6, atol=1e-6),
        max_steps=50,
    )
    _same(a, b)
    y0 = torch.tensor([2.0, 0.0]) + 0.1 * torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    a, b = _both(
        monkeypatch, S.ODETerm(vdp(2.0)), S.Dopri5(), 0.0, 6.6, y0, controller=S.PIDController(rtol=1e-5, atol=1e-5)
    )
    torch.testing.assert_close(a.ys, b.ys, rtol=0, atol=1e-4)
    assert (a.num_steps - b.num_steps).abs().max() <= 1
