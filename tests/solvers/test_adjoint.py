"""Every gradient method agrees with backpropagation through the solver."""

import pytest
import torch

import solvers as S

F64 = dict(dtype=torch.float64)


class Field(torch.nn.Module):
    def __init__(self, d=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)  # parameter init only; solves never touch the global RNG
        self.lin = torch.nn.Linear(d, d).double()

    def forward(self, t, y):
        return torch.tanh(self.lin(y)) - 0.3 * y + 0.1 * t.view(-1, 1)


def _grads(make_solve, field, y0):
    y0 = y0.clone().requires_grad_(True)
    sol = make_solve(y0)
    loss = (sol.ys**2).sum() + sol.ys[:, -1, 0].sin().sum()
    gs = torch.autograd.grad(loss, [y0, *field.parameters()])
    return sol, gs


def _assert_grads_close(a, b, rtol, atol):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("adaptive", [False, True])
def test_checkpoint_adjoint_equals_backprop(adaptive):
    field = Field()
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), **F64)
    ctrl = S.PIDController(1e-6, 1e-6) if adaptive else S.ConstantStepSize()
    kw = dict(dt0=None if adaptive else 0.05, controller=ctrl, saveat=S.SaveAt(ts=torch.tensor([0.5, 1.0, 2.0], **F64)))
    ref = _grads(lambda y: S.solve(S.ODETerm(field), S.Dopri5(), 0.0, 2.0, y, **kw), field, y0)[1]
    adj = S.CheckpointAdjoint(every=5)
    got = _grads(lambda y: S.solve(S.ODETerm(field), S.Dopri5(), 0.0, 2.0, y, adjoint=adj, **kw), field, y0)[1]
    _assert_grads_close(got, ref, 1e-10, 1e-12)


@pytest.mark.parametrize("saveat", ["t1", "ts"])
def test_backsolve_adjoint_matches_backprop_at_tight_tolerance(saveat):
    field = Field()
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), **F64)
    t1 = torch.tensor([1.5, 2.0, 1.0], **F64)  # per-sample end times
    sv = S.SaveAt() if saveat == "t1" else S.SaveAt(ts=torch.tensor([0.3, 0.9], **F64), t1=True)
    ctrl = S.PIDController(1e-10, 1e-10)
    ref = _grads(lambda y: S.solve(S.ODETerm(field), S.Tsit5(), 0.0, t1, y, controller=ctrl, saveat=sv), field, y0)[1]
    got = _grads(lambda y: S.solve(S.ODETerm(field), S.Tsit5(), 0.0, t1, y, controller=ctrl, saveat=sv,
                                   adjoint=S.BacksolveAdjoint()), field, y0)[1]
    _assert_grads_close(got, ref, 1e-6, 1e-7)


def test_backsolve_adjoint_fixed_step_converges_to_backprop():
    field = Field()
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), **F64)
    ref = _grads(lambda y: S.solve(S.ODETerm(field), S.RK4(), 0.0, 1.0, y, dt0=0.01), field, y0)[1]
    got = _grads(lambda y: S.solve(S.ODETerm(field), S.RK4(), 0.0, 1.0, y, dt0=0.01, adjoint=S.BacksolveAdjoint()),
                 field, y0)[1]
    _assert_grads_close(got, ref, 1e-7, 1e-8)


class Diffusion(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([0.3, 0.5, 0.2], **F64))

    def forward(self, t, y):
        return self.scale * torch.cos(y)


@pytest.mark.parametrize("brownian", ["interval", "increments"])
def test_reversible_heun_adjoint_is_exact(brownian):
    drift, diffusion = Field(), Diffusion()
    y0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), **F64)

    def term():
        if brownian == "interval":
            bm = S.BrownianInterval(0.0, 1.0, (5, 3), seed=3, depth=10, dtype=torch.float64)
        else:
            bm = S.BrownianIncrements((5, 3), torch.Generator().manual_seed(3), dtype=torch.float64)
        return S.SDETerm(drift, diffusion, noise="diagonal", brownian=bm)

    def run(adjoint):
        y = y0.clone().requires_grad_(True)
        sol = S.solve(term(), S.ReversibleHeun(), 0.0, 1.0, y, dt0=1 / 64, adjoint=adjoint)
        loss = (sol.y1**3).sum()
        return sol.y1, torch.autograd.grad(loss, [y, *drift.parameters(), *diffusion.parameters()])

    y_ref, ref = run(None)
    y_rev, got = run(S.ReversibleAdjoint())
    torch.testing.assert_close(y_rev, y_ref, rtol=0, atol=1e-13)
    _assert_grads_close(got, ref, 1e-9, 1e-11)


def test_reversible_heun_adjoint_ode():
    field = Field()
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), **F64)
    ref = _grads(lambda y: S.solve(S.ODETerm(field), S.ReversibleHeun(), 0.0, 2.0, y, dt0=0.1), field, y0)[1]
    got = _grads(lambda y: S.solve(S.ODETerm(field), S.ReversibleHeun(), 0.0, 2.0, y, dt0=0.1,
                                   adjoint=S.ReversibleAdjoint()), field, y0)[1]
    _assert_grads_close(got, ref, 1e-10, 1e-12)


def test_adjoint_configuration_errors():
    field = Field()
    y0 = torch.zeros(2, 3, **F64)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(S.ODETerm(field), S.RK4(), 0.0, 1.0, y0, dt0=0.1, adjoint=S.ReversibleAdjoint())
    bm = S.BrownianIncrements((2, 3), torch.Generator(), dtype=torch.float64)
    sde = S.SDETerm(field, lambda t, y: torch.ones_like(y), noise="additive", brownian=bm)
    with pytest.raises(S.TermSolverMismatchError):
        S.solve(sde, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.1, adjoint=S.BacksolveAdjoint())
    with pytest.raises(S.SolveConfigError):
        S.solve(sde, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.1, adjoint=S.CheckpointAdjoint())
