"""Benchmark of the solver core against torchdiffeq, torchode, torchsde and a hand-written loop.

Two cases from issue 6, measured in one process on CPU with ``torch.set_num_threads(2)`` (warm-up,
then the median of several repeats):

* Van der Pol (mu = 2), batch 256, t in [0, 6.6], dopri5, rtol = atol = 1e-5: ``solvers`` (per-sample
  step sizes) vs torchdiffeq and torchode. Goal: <= 0.33x torchdiffeq and <= 0.5x torchode.
* Euler–Maruyama, 1000 steps, batch 256 x 64, dy = -y dt + 0.5 dW: ``solvers`` vs torchsde and a
  hand-written loop. Goal: <= 1.2x the hand-written loop.

``run(quick=True)`` uses fewer repeats. ``python -m suite.bench.solvers`` prints one JSON line per case.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

MU = 2.0


def _interleaved_ms(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall time (ms) of each callable; repeats are interleaved so that all contenders see the
    same machine load (the reference machine is a shared 2-core box)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _vdp(t, y):
    y1, y2 = y[..., 0], y[..., 1]
    return torch.stack([y2, MU * (1 - y1 * y1) * y2 - y1], dim=-1)


def bench_vdp(repeats: int) -> dict:
    import solvers as S

    g = torch.Generator().manual_seed(0)
    y0 = torch.tensor([2.0, 0.0]) + 0.1 * torch.randn(256, 2, generator=g)
    t0, t1, tol = 0.0, 6.6, 1e-5
    out: dict = {"case": "vdp_dopri5", "batch": 256, "mu": MU, "rtol": tol, "atol": tol}
    term = S.ODETerm(_vdp)
    ctrl = S.PIDController(rtol=tol, atol=tol)

    def ours():
        with torch.no_grad():
            return S.solve(term, S.Dopri5(), t0, t1, y0, controller=ctrl)

    fns = {"solvers": ours}
    sol = ours()
    out["solvers_max_fevals_per_sample"] = int(sol.num_fevals.max())
    out["solvers_mean_fevals_per_sample"] = float(sol.num_fevals.double().mean())
    try:
        import torchdiffeq

        ts = torch.tensor([t0, t1])

        def tdq():
            with torch.no_grad():
                return torchdiffeq.odeint(_vdp, y0, ts, method="dopri5", rtol=tol, atol=tol)

        fns["torchdiffeq"] = tdq
        out["max_abs_diff_vs_torchdiffeq"] = float((tdq()[-1] - sol.y1).abs().max())
    except ImportError:
        pass
    try:
        import torchode as to

        tterm = to.ODETerm(_vdp)
        tsolver = to.AutoDiffAdjoint(to.Dopri5(term=tterm), to.IntegralController(atol=tol, rtol=tol, term=tterm))
        prob = to.InitialValueProblem(y0=y0, t_start=torch.full((256,), t0), t_end=torch.full((256,), t1))

        def tod():
            with torch.no_grad():
                return tsolver.solve(prob)

        fns["torchode"] = tod
    except ImportError:
        pass
    ms = _interleaved_ms(fns, repeats)
    for k in ("solvers", "torchdiffeq", "torchode"):
        out[f"{k}_ms"] = ms.get(k)
    r_tdq = ms["solvers"] / ms["torchdiffeq"] if "torchdiffeq" in ms else None
    r_tod = ms["solvers"] / ms["torchode"] if "torchode" in ms else None
    out["ratio_vs_torchdiffeq"] = r_tdq
    out["ratio_vs_torchode"] = r_tod
    out["goal"] = "<= 0.33x torchdiffeq and <= 0.5x torchode"
    out["goal_met"] = bool(r_tdq is not None and r_tod is not None and r_tdq <= 0.33 and r_tod <= 0.5)
    return out


def bench_em(repeats: int) -> dict:
    import solvers as S

    shape, n, dt = (256, 64), 1000, 1e-3
    out: dict = {"case": "euler_maruyama_ou", "shape": list(shape), "steps": n}
    y0 = torch.ones(shape)
    sq = dt**0.5

    def hand():
        g = torch.Generator().manual_seed(0)
        y = y0
        for _ in range(n):
            y = y + (-y) * dt + 0.5 * (torch.randn(shape, generator=g) * sq)
        return y

    def ours():
        g = torch.Generator().manual_seed(0)
        term = S.SDETerm(lambda t, y: -y, lambda t, y: 0.5, noise="additive", brownian=S.BrownianIncrements(shape, g))
        with torch.no_grad():
            return S.solve(term, S.EulerMaruyama(), 0.0, 1.0, y0, dt0=dt)

    out["max_abs_diff_vs_hand_loop"] = float((ours().y1 - hand()).abs().max())
    fns = {"hand_loop": hand, "solvers": ours}
    try:
        import torchsde

        class OU(torch.nn.Module):
            noise_type, sde_type = "diagonal", "ito"

            def f(self, t, y):
                return -y

            def g(self, t, y):
                return torch.full_like(y, 0.5)

        sde, ts = OU(), torch.tensor([0.0, 1.0])

        def tsde():
            with torch.no_grad():
                return torchsde.sdeint(sde, y0, ts, method="euler", dt=dt)

        tsde()
        t = time.perf_counter()
        tsde()  # ~10x slower than the others: timed once, not interleaved
        out["torchsde_ms"] = (time.perf_counter() - t) * 1e3
    except ImportError:
        out["torchsde_ms"] = None
    ms = _interleaved_ms(fns, repeats)
    out["hand_loop_ms"], out["solvers_ms"] = ms["hand_loop"], ms["solvers"]
    out["ratio_vs_hand_loop"] = out["solvers_ms"] / out["hand_loop_ms"]
    out["ratio_vs_torchsde"] = out["solvers_ms"] / out["torchsde_ms"] if out["torchsde_ms"] else None
    out["goal"] = "<= 1.2x hand-written loop"
    out["goal_met"] = bool(out["ratio_vs_hand_loop"] <= 1.2)
    return out


def run(quick: bool = False) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        repeats = 3 if quick else 9
        results = [bench_vdp(repeats), bench_em(repeats)]
    finally:
        torch.set_num_threads(threads)
    for r in results:
        r["torch"] = torch.__version__
        r["threads"] = 2
        r["repeats"] = repeats
    return results


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
