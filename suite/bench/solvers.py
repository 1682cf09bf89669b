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


def _interleaved_ms(fns: dict, repeats: int, warmup: int = 1, cpu: bool = False) -> dict:
    """Median time (ms) of each callable; repeats are interleaved so that all contenders see the same machine
    load (the reference machine is a shared 2-core box). ``cpu=True``: process CPU time instead of wall time
    (at one thread it does not count the time other processes hold the core). A callable that returns a
    ``(wall_ms, cpu_ms)`` tuple reports its own timing (the diffrax worker, timed in its own process)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            r = fn()
            wall, used = (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3
            if isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, float) for x in r):
                wall, used = r
            times[k].append(used if cpu else wall)
    return {k: statistics.median(v) for k, v in times.items()}


def _vdp(t, y):
    y1, y2 = y[..., 0], y[..., 1]
    return torch.stack([y2, MU * (1 - y1 * y1) * y2 - y1], dim=-1)


def _reference_vdp(y0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """float64 reference: scipy's DOP853 at rtol = atol = 1e-13, sample by sample (independent of every contender)."""
    import numpy as np
    from scipy.integrate import solve_ivp

    def f(t, y):
        return [y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]]

    out = [solve_ivp(f, (t0, t1), row, method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1] for row in y0.double().numpy()]
    return torch.as_tensor(np.stack(out))


class _Diffrax:
    """diffrax in its own process (suite.bench.diffrax_worker): compiled once, then timed one round at a time."""

    def __init__(self, case: dict):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "suite.bench.diffrax_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.info = self._ask(json.dumps(case))

    def _ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the diffrax worker stopped (is the bench-jax extra installed?)")
        return json.loads(answer)

    def time_ms(self) -> tuple[float, float]:
        r = self._ask("run")
        return r["ms"], r["cpu_ms"]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def _jax_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("jax") is not None and importlib.util.find_spec("diffrax") is not None


def bench_vdp(repeats: int, threads: int = 1) -> dict:
    """Van der Pol, B = 256, dopri5, tol 1e-5, float32, per-sample steps: ``solvers`` eager and compiled against
    torchdiffeq, torchode and diffrax (its own process, rounds interleaved with the torch contenders). Per-step
    time is wall time over loop iterations (accepted + rejected steps of the slowest sample: every contender
    with per-sample steps runs its loop until the last sample is done). Accuracy: max |y(t1) - reference|."""
    import solvers as S

    g = torch.Generator().manual_seed(0)
    y0 = torch.tensor([2.0, 0.0]) + 0.1 * torch.randn(256, 2, generator=g)
    t0, t1, tol = 0.0, 6.6, 1e-5
    out: dict = {"case": "vdp_dopri5", "batch": 256, "mu": MU, "rtol": tol, "atol": tol, "dtype": "float32"}
    ref = _reference_vdp(y0, t0, t1)
    term = S.ODETerm(_vdp)
    ctrl = S.PIDController(rtol=tol, atol=tol)

    def ours(compiled):
        def fn():
            with torch.no_grad():
                return S.solve(term, S.Dopri5(), t0, t1, y0, controller=ctrl, compile=compiled)
        return fn

    t = time.perf_counter()
    ours(True)()
    first = time.perf_counter() - t
    fns = {"solvers": ours(False), "solvers_compiled": ours(True)}
    iters: dict = {}
    for name in fns:
        sol = fns[name]()
        iters[name] = int((sol.num_steps + sol.num_rejected).max())
        out[f"{name}_steps_max"] = int(sol.num_steps.max())
        out[f"{name}_max_err"] = float((sol.y1.double() - ref).abs().max())
    try:
        import torchdiffeq

        ts = torch.tensor([t0, t1])

        def tdq():
            with torch.no_grad():
                return torchdiffeq.odeint(_vdp, y0, ts, method="dopri5", rtol=tol, atol=tol)

        fns["torchdiffeq"] = tdq
        out["torchdiffeq_max_err"] = float((tdq()[-1].double() - ref).abs().max())
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
        sol = tod()
        out["torchode_max_err"] = float((sol.ys[:, -1].double() - ref).abs().max())
    except ImportError:
        pass
    dfx = None
    if _jax_available():
        dfx = _Diffrax({"mu": MU, "t0": t0, "t1": t1, "rtol": tol, "atol": tol, "max_steps": 4096,
                        "dtype": "float32", "threads": threads, "y0": y0.tolist()})
        info = dfx.info
        out.update(jax=info["jax"], diffrax=info["diffrax"], diffrax_compile_s=info["compile_s"])
        acc, rej = torch.tensor(info["accepted"]), torch.tensor(info["rejected"])
        iters["diffrax"] = int((acc + rej).max())
        out["diffrax_steps_max"] = int(acc.max())
        out["diffrax_max_err"] = float((torch.tensor(info["y1"], dtype=torch.float64) - ref).abs().max())
        fns["diffrax"] = dfx.time_ms  # returns its own in-process time (no pipe latency)
    try:
        ms = _interleaved_ms(fns, repeats, cpu=True)  # at 1 thread, CPU time is robust to other processes' load
        wall = _interleaved_ms(fns, max(1, repeats // 3))
    finally:
        if dfx is not None:
            dfx.close()
    out["timing"] = "process CPU time (medians; *_wall_ms: wall clock)" if threads == 1 else "wall clock"
    if threads != 1:
        ms = wall
    for k in fns:
        out[f"{k}_wall_ms"] = wall[k]
    out["solvers_compile_s"] = first - ms["solvers_compiled"] / 1e3
    for k in fns:
        out[f"{k}_ms"] = ms[k]
        if k in iters:
            out[f"{k}_us_per_step"] = ms[k] / iters[k] * 1e3
    c = ms["solvers_compiled"]
    out["compiled_vs_eager"] = c / ms["solvers"]
    out["ratio_vs_torchdiffeq"] = c / ms["torchdiffeq"] if "torchdiffeq" in ms else None
    out["ratio_vs_torchode"] = c / ms["torchode"] if "torchode" in ms else None
    out["per_step_ratio_vs_diffrax"] = (
        out["solvers_compiled_us_per_step"] / out["diffrax_us_per_step"] if "diffrax" in ms else None
    )
    out["goal"] = "compiled: per step <= 3x diffrax, <= 0.1x torchdiffeq"
    out["goal_met"] = bool(out["per_step_ratio_vs_diffrax"] is not None and out["per_step_ratio_vs_diffrax"] <= 3
                           and out["ratio_vs_torchdiffeq"] is not None and out["ratio_vs_torchdiffeq"] <= 0.1)
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


def bench_pf_ode(repeats: int) -> dict:
    """The probability-flow ODE sampler (score-SDE's ``ode_sample``: Dopri5 + PID through ``solvers``) with a real
    score network -- the digits U-Net (ch 32, 8x8, one residual block per level, attention at 4x4; random weights:
    the timing does not depend on training), VP-SDE, batch 64, tol 1e-3 -- eager against compiled
    (``SOLVERS_COMPILE=1``). Network evaluations of the batch per second (CPU time) and the first compile."""
    import os

    from generative.models import NoisePredictionScoreModel, build_net
    from generative.samplers.score_sde import ode_sample
    from generative.sdes import VPSDE

    torch.manual_seed(0)
    net = build_net("unet", image_size=8, in_channels=1, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                    attn_resolutions=(4,), dropout=0.0).eval()
    sde = VPSDE()
    model = NoisePredictionScoreModel(net, sde).eval()
    old = os.environ.get("SOLVERS_COMPILE")
    nfe: dict = {}

    def sampler(compiled):
        def fn():
            os.environ["SOLVERS_COMPILE"] = "1" if compiled else "0"
            r = ode_sample(model, sde, (64, 1, 8, 8), rtol=1e-3, atol=1e-3)
            nfe[compiled] = r.nfe
        return fn

    try:
        t = time.perf_counter()
        sampler(True)()
        first = time.perf_counter() - t
        ms = _interleaved_ms({"eager": sampler(False), "compiled": sampler(True)}, repeats, cpu=True)
    finally:
        if old is None:
            os.environ.pop("SOLVERS_COMPILE", None)
        else:
            os.environ["SOLVERS_COMPILE"] = old
    out = {"case": "pf_ode_unet_digits", "batch": 64, "nfe": nfe[False], "nfe_compiled": nfe[True],
           "eager_ms": ms["eager"], "compiled_ms": ms["compiled"],
           "eager_nfe_per_s": nfe[False] / ms["eager"] * 1e3, "compiled_nfe_per_s": nfe[True] / ms["compiled"] * 1e3,
           "compile_s": first - ms["compiled"] / 1e3, "timing": "process CPU time (medians)"}
    out["speedup"] = out["compiled_nfe_per_s"] / out["eager_nfe_per_s"]
    return out


def run(quick: bool = False, threads: int = 1) -> list[dict]:
    """Both cases at ``threads`` torch threads (default 1: the suite's default, and the only count that is
    meaningful beside other jobs on a 2-core machine; ``python -m suite.bench.solvers --threads 2``)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        repeats = 3 if quick else 9
        results = [bench_vdp(repeats, threads), bench_em(repeats)]
        if not quick:  # compiling the U-Net inside the while_loop takes minutes
            results.append(bench_pf_ode(repeats))
    finally:
        torch.set_num_threads(old)
    for r in results:
        r["torch"] = torch.__version__
        r["threads"] = threads
        r["repeats"] = repeats
    return results


if __name__ == "__main__":
    import sys

    n = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    for row in run(quick="--quick" in sys.argv, threads=n):
        print(json.dumps(row))
