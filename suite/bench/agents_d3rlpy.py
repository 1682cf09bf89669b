"""`python -m suite bench agents`: our IQL update against d3rlpy's (https://github.com/takuseno/d3rlpy,
`algos/qlearning/torch/iql_impl.py`) in one process, interleaved rounds, at 1 and 2 torch threads.

Both get the same work: HalfCheetah shapes (obs 17, act 6), batch 256, twin Q + V + Gaussian policy of
256-256 MLPs, Adam 3e-4, expectile 0.7, temperature 3, weights clipped at 100, and batches already on the
device as tensors (d3rlpy: its `TorchMiniBatch`, built outside the timed loop; its `impl.update` is what its
`fit` loop calls per step). d3rlpy runs eagerly (`compile_graph=False`, its default on CPU).

d3rlpy is not an extra of this package: d3rlpy 2.8.1 pins gymnasium==1.0.0, and the suite's tasks need
gymnasium's v5 MuJoCo environments, so installing it into the suite's environment would downgrade gymnasium.
To measure it, install it beside, without its dependencies, and point SUITE_D3RLPY_PATH there:

    pip install --no-deps --target /tmp/d3site d3rlpy==2.8.1 gym==0.26.2 gym-notices structlog \
        dataclasses-json marshmallow
    SUITE_D3RLPY_PATH=/tmp/d3site python -m suite bench agents

Without it, one line says the contender is not available."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

from ..allocator import keep_freed_memory

OBS, ACT, BATCH = 17, 6, 256


def _import_d3rlpy():
    path = os.environ.get("SUITE_D3RLPY_PATH")
    if path and path not in sys.path:
        sys.path.append(path)  # appended: our own packages (gymnasium, torch) keep precedence
    import d3rlpy  # noqa: F401

    return d3rlpy


def _d3rlpy_iql(d3rlpy, max_steps: int):
    config = d3rlpy.algos.IQLConfig(batch_size=BATCH, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                                    expectile=0.7, weight_temp=3.0, max_weight=100.0, n_critics=2)
    algo = config.create(device="cpu:0")
    algo.create_impl((OBS,), ACT)
    return algo


def _batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{
        "observations": torch.randn(BATCH, OBS, generator=g),
        "actions": torch.rand(BATCH, ACT, generator=g) * 2 - 1,
        "rewards": torch.randn(BATCH, generator=g),
        "next_observations": torch.randn(BATCH, OBS, generator=g),
        "terminals": (torch.rand(BATCH, generator=g) < 0.01).float(),
    } for _ in range(n)]


def _to_d3rlpy(d3rlpy, b: dict[str, torch.Tensor]):
    from d3rlpy.torch_utility import TorchMiniBatch

    col = (BATCH, 1)
    return TorchMiniBatch(
        observations=b["observations"], actions=b["actions"], rewards=b["rewards"].reshape(col),
        next_observations=b["next_observations"], next_actions=torch.zeros_like(b["actions"]),
        returns_to_go=torch.zeros(col), terminals=b["terminals"].reshape(col), intervals=torch.ones(col),
        device="cpu:0")


def _stepper(algo):
    """d3rlpy's per-step update with its grad-step counter, as its `fit` loop calls it."""
    step = [0]

    def update(tb):
        algo.impl.update(tb, step[0])
        step[0] += 1

    return update


def _time(update, batches) -> float:
    t = time.perf_counter()
    for b in batches:
        update(b)
    return (time.perf_counter() - t) / len(batches)


def run(quick: bool = False, threads: tuple[int, ...] = (1, 2)):
    try:
        d3rlpy = _import_d3rlpy()
    except ImportError as e:
        yield {"benchmark": "agents.iql_vs_d3rlpy", "error": f"d3rlpy not available ({e}); see "
               "suite/bench/agents_d3rlpy.py for how to install it beside the suite"}
        return
    from agents.iql import IQL, IQLConfig

    malloc = "keep-freed" if keep_freed_memory() else "default"
    rounds, per_block = (3, 10) if quick else (7, 25)
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            torch.manual_seed(0)
            ours = IQL(IQLConfig(normalize_observations=False), OBS, ACT)
            theirs = _d3rlpy_iql(d3rlpy, rounds * per_block)
            batches = _batches(per_block, 0)
            theirs_batches = [_to_d3rlpy(d3rlpy, b) for b in batches]
            their_update = _stepper(theirs)

            _time(ours.update, batches[:3])
            _time(their_update, theirs_batches[:3])
            t_ours, t_theirs = [], []
            for _ in range(rounds):
                t_ours.append(_time(ours.update, batches))
                t_theirs.append(_time(their_update, theirs_batches))
            mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
            yield {"benchmark": "agents.iql_vs_d3rlpy", "threads": t, "batch_size": BATCH, "obs_dim": OBS,
                   "act_dim": ACT, "d3rlpy_version": d3rlpy.__version__,
                   "ours_updates_per_s": round(1 / mo, 1), "d3rlpy_updates_per_s": round(1 / mt, 1),
                   "speedup": round(mt / mo, 2), "rounds": rounds, "updates_per_block": per_block,
                   "malloc": malloc}
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row), flush=True)
