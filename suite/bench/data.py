"""Dataset-build throughput: transitions per second of `suite.data.build.collect` on Hopper-v5, in-process
(1 worker) and with 2 worker processes, plus the raw simulation rate of a bare Gymnasium loop with random
actions as the baseline in the same process. The issue's goal: 1M Hopper transitions in at most 5 minutes
(>= 3,333 transitions/s) on a 2-core machine."""

from __future__ import annotations

import time

import numpy as np


def _bare_loop(env_id: str, steps: int) -> float:
    import gymnasium as gym

    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def run(quick: bool = False, policy: str | None = None) -> list[dict]:
    from pathlib import Path

    from suite.data.build import collect

    steps = 20_000 if quick else 200_000
    rows = []
    bare = _bare_loop("Hopper-v5", steps // 4)
    file = Path(policy) if policy else None
    for workers in (1, 2):
        t = time.perf_counter()
        collect("Hopper-v5", file, steps, seed=0, policy_name="bench", n_envs=8, workers=workers)
        rate = steps / (time.perf_counter() - t)
        rows.append(
            {
                "benchmark": "data_build",
                "env": "Hopper-v5",
                "policy": policy or "random",
                "workers": workers,
                "transitions": steps,
                "transitions_per_s": round(rate, 1),
                "bare_single_env_steps_per_s": round(bare, 1),
                "projected_1M_minutes": round(1e6 / rate / 60, 2),
                "goal_met": 1e6 / rate <= 300,
            }
        )
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
