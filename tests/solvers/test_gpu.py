"""CUDA checks: fixed-step solves capture into a CUDA graph (no host sync) and compile. Skipped without CUDA."""

import pytest
import torch

import solvers as S

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _term(b, d, gen):
    return S.SDETerm(lambda t, y: -y, lambda t, y: 0.5 * torch.ones_like(y), noise="diagonal",
                     brownian=S.BrownianIncrements((b, d), gen, dtype=torch.float32, device="cuda"))


def test_fixed_step_solve_captures_in_a_cuda_graph():
    b, d = 64, 8
    y0 = torch.ones(b, d, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    term = _term(b, d, gen)
    torch.cuda.set_sync_debug_mode("error")  # any host sync in the loop raises
    try:
        S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=0.01)  # warm-up
        ode = S.ODETerm(lambda t, y: -y * t.view(-1, 1))
        S.solve(ode, S.Dopri5(), 0.0, 1.0, y0, dt0=0.05)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = S.solve(ode, S.Dopri5(), 0.0, 1.0, y0, dt0=0.05).y1
    graph.replay()
    torch.cuda.synchronize()
    ref = y0 * torch.exp(torch.tensor(-0.5, device="cuda"))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_compiled_fixed_step_matches_eager():
    y0 = torch.randn(32, 4, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    ode = S.ODETerm(lambda t, y: torch.sin(y) - y)
    eager = S.solve(ode, S.RK4(), 0.0, 1.0, y0, dt0=0.1)
    compiled = S.solve(ode, S.RK4(), 0.0, 1.0, y0, dt0=0.1, compile=True)
    import solvers._loop as L

    assert _ran_compiled(L._fixed_step)
    torch.testing.assert_close(compiled.y1, eager.y1, rtol=1e-5, atol=1e-5)


def test_adaptive_solve_on_cuda_per_sample():
    y0 = torch.ones(4, 2, device="cuda", dtype=torch.float64)
    lam = torch.tensor([1.0, 2.0, 30.0, 0.5], device="cuda", dtype=torch.float64).view(-1, 1)
    sol = S.solve(S.ODETerm(lambda t, y: -lam * y), S.Tsit5(), 0.0, 1.0, y0, controller=S.PIDController(1e-8, 1e-8))
    torch.testing.assert_close(sol.y1, torch.exp(-lam).expand(4, 2), rtol=1e-6, atol=0)
    assert int(sol.num_steps[2]) > int(sol.num_steps[3])


def _ran_compiled(fn):
    import solvers._loop as L

    return any(k[0] is fn and k[6] == "cuda" and k not in L._COMPILE_FAILED for k in L._COMPILED)


def test_compiled_adaptive_while_loop_on_cuda_matches_eager():
    import warnings

    import solvers._loop as L

    y0 = torch.randn(64, 2, device="cuda", dtype=torch.float64, generator=torch.Generator(device="cuda").manual_seed(0))
    f = lambda t, y: torch.stack([y[:, 1], 2.0 * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], 1)  # noqa: E731
    out = []
    for compiled in (False, True):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
            out.append(S.solve(S.ODETerm(f), S.Dopri5(), 0.0, 3.0, y0, controller=S.PIDController(1e-7, 1e-7),
                               compile=compiled))
    assert _ran_compiled(L._adaptive_while)  # the compiled path ran (not the eager fallback)
    a, b = out
    assert a.num_steps.tolist() == b.num_steps.tolist() and a.num_rejected.tolist() == b.num_rejected.tolist()
    torch.testing.assert_close(a.ys, b.ys, rtol=1e-9, atol=1e-10)
