"""diffrax's side of ``suite bench solvers``, in its own process (JAX and torch do not share one well: each
sizes its own thread pool, and JAX preallocates).

The parent writes the case as one JSON line on stdin; the worker builds the same Van der Pol problem
(``y0`` sent by the parent, so both solve the same batch), ``jax.jit(jax.vmap(diffeqsolve))`` with Dopri5 and
a PID controller (per-sample step sizes, as ``solvers``), compiles it, and answers one JSON line with the
compile time, the per-sample accepted/rejected steps and the final states. Then, for every ``run`` line,
it times one solve (``block_until_ready``) and answers ``{"ms": ...}``; the parent interleaves these rounds
with its torch contenders. ``quit`` (or end of input) stops it.

Run by the benchmark only: ``python -m suite.bench.diffrax_worker`` (needs the ``bench-jax`` extra).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    case = json.loads(sys.stdin.readline())
    threads = int(case.get("threads", 1))
    if threads == 1:  # XLA's CPU client otherwise spreads a tiny problem over every core
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", case.get("dtype") == "float64")
    dtype = jnp.float64 if case.get("dtype") == "float64" else jnp.float32
    mu, t0, t1, rtol, atol = case["mu"], case["t0"], case["t1"], case["rtol"], case["atol"]

    def vdp(t, y, args):
        return jnp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    term = diffrax.ODETerm(vdp)
    solver = diffrax.Dopri5()
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol)

    def one(y0):
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y0, stepsize_controller=ctrl, max_steps=case["max_steps"])
        return sol.ys[-1], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

    fn = jax.jit(jax.vmap(one))
    y0 = jnp.asarray(np.asarray(case["y0"]), dtype=dtype)
    t = time.perf_counter()
    y1, acc, rej = jax.block_until_ready(fn(y0))
    first = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(fn(y0))
    steady = time.perf_counter() - t
    print(json.dumps({"jax": jax.__version__, "diffrax": diffrax.__version__, "compile_s": first - steady,
                      "accepted": np.asarray(acc).tolist(), "rejected": np.asarray(rej).tolist(),
                      "y1": np.asarray(y1, dtype=np.float64).tolist()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(y0))
        print(json.dumps({"ms": (time.perf_counter() - t) * 1e3, "cpu_ms": (time.process_time() - c) * 1e3}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
