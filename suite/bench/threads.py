"""`python -m suite bench threads`: O-DICE updates/s (HalfCheetah dims, batch 256) at 1 and 2 torch threads,
with OpenMP's passive and active (spinning) wait policy, on this machine as it is and with one busy process
beside it (a pure-Python spin loop on a core of its own, as a second job would be).

Each setting runs in its own subprocess (the thread count and the wait policy must be set before torch
loads); settings are interleaved and repeated, and the median of the repeats is reported. This is the
measurement behind `suite run`'s default of one thread (README, "Speed on CPU": 1 thread 34 updates/s idle and
33 beside one busy process; 2 spinning threads 56 idle but 16 beside it).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, torch
threads, n = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
from agents.odice import ODICE, ODICEConfig
from suite.allocator import keep_freed_memory
from suite.bench.timing import random_batches, time_block
keep_freed_memory()
agent = ODICE(ODICEConfig(), 17, 6)
batches = random_batches(16, 17, 6)
time_block(agent.update, batches, 20)  # warm-up
print(json.dumps({"updates_per_s": 1 / time_block(agent.update, batches, n)[0]}))
"""

_SPIN = "while True:\n    pass\n"


def _one(threads: int, policy: str, n: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(threads), str(n)], env=env, capture_output=True,
                         text=True, timeout=600, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["updates_per_s"]


def run(quick: bool = False, loads=("as-is", "one-busy-process")):
    n, repeats = (150, 2) if quick else (400, 3)
    settings = [(1, "PASSIVE"), (2, "PASSIVE"), (2, "ACTIVE")]
    for load in loads:
        spinner = None
        if load == "one-busy-process":
            spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
        try:
            results = {s: [] for s in settings}
            for _ in range(repeats):
                for s in settings:
                    results[s].append(_one(s[0], s[1], n))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        base = statistics.median(results[(1, "PASSIVE")])
        for (threads, policy), vals in results.items():
            med = statistics.median(vals)
            yield {"benchmark": "threads", "agent": "odice", "load": load, "threads": threads,
                   "omp_wait_policy": policy, "updates_per_s": round(med, 1), "repeats": [round(v, 1) for v in vals],
                   "ratio_vs_1_thread": round(med / base, 2), "cpus": os.cpu_count()}


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row), flush=True)
