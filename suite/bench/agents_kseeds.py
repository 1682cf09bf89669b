"""`python -m suite bench agents` (last group): total updates/s of K seeds trained as one stacked agent
(`agents.stacked`, what `suite run METHOD TASK --seeds ...` does) against the same K seeds as K single agents
updated one after another, for K = 1, 5, 10, every offline agent, at 1 and 2 torch threads.

All contenders live in this one process and are timed in interleaved rounds (a block of updates of each in
turn, repeated), so load from other processes hits them alike; the reported numbers are medians over the
rounds. Shapes: HalfCheetah (obs 17, act 6), batch 256, each agent's default (paper) networks. One JSON line
per (agent, threads, K):

- ``single_updates_per_s``: one seed's updates/s (the K = 1 run: today's single-seed path);
- ``loop_updates_per_s``: K single agents, total updates/s; ``stacked_updates_per_s``: the stacked agent;
- ``speedup_vs_loop`` and ``speedup_vs_one_seed`` (stacked total / one seed's updates/s: the issue's goal is
  K = 5 at >= 3x)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

from agents.stacked import rng_state, stack_agents

from ..allocator import keep_freed_memory

AGENTS = ("odice", "iql", "td3bc", "cql", "bc")
OBS, ACT, BATCH = 17, 6, 256


def _agent_class(name: str):
    import importlib

    module = importlib.import_module(f"agents.{name}")
    cls = {"odice": "ODICE", "iql": "IQL", "td3bc": "TD3BC", "cql": "CQL", "bc": "BC"}[name]
    return getattr(module, cls), getattr(module, cls + "Config")


def _batches(n: int, k: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """n random batches with a leading member dimension k."""
    g = torch.Generator().manual_seed(seed)
    return [{
        "observations": torch.randn(k, BATCH, OBS, generator=g),
        "actions": torch.rand(k, BATCH, ACT, generator=g) * 2 - 1,
        "rewards": torch.randn(k, BATCH, generator=g),
        "next_observations": torch.randn(k, BATCH, OBS, generator=g),
        "terminals": (torch.rand(k, BATCH, generator=g) < 0.01).float(),
    } for _ in range(n)]


def _build(name: str, k: int):
    cls, config_cls = _agent_class(name)
    agents, rngs = [], []
    for s in range(k):
        torch.manual_seed(s)
        agents.append(cls(config_cls(), OBS, ACT))
        rngs.append(rng_state(torch.device("cpu")))
    return agents, rngs


def _time(update, batches) -> float:
    t = time.perf_counter()
    for b in batches:
        update(b)
    return time.perf_counter() - t


def _case(name: str, threads: int, ks: tuple[int, ...], rounds: int, per_block: int) -> list[dict]:
    torch.set_num_threads(threads)
    kmax = max(ks)
    batches = _batches(per_block, kmax, 0)
    single, _ = _build(name, 1)
    loops = {k: _build(name, k)[0] for k in ks if k > 1}
    stacks = {k: stack_agents(*_build(name, k), "cpu") for k in ks if k > 1}

    def one_seed(b):
        single[0].update({key: v[0] for key, v in b.items()})

    def loop_of(k):
        def update(b):
            for i, a in enumerate(loops[k]):
                a.update({key: v[i] for key, v in b.items()})
        return update

    def stacked_of(k):
        def update(b):
            stacks[k].update({key: v[:k] for key, v in b.items()})
        return update

    contenders = {("single", 1): one_seed}
    for k in stacks:
        contenders[("loop", k)] = loop_of(k)
        contenders[("stacked", k)] = stacked_of(k)
    for update in contenders.values():  # warm-up: allocator, Adam state, vmap's first call
        _time(update, batches[:2])
    times: dict = {key: [] for key in contenders}
    for _ in range(rounds):  # interleaved: every contender once per round
        for key, update in contenders.items():
            times[key].append(_time(update, batches))
    ups = {key: per_block * key[1] / statistics.median(v) for key, v in times.items()}
    base = ups[("single", 1)]
    rows = []
    for k in ks:
        row = {"benchmark": "agents.kseeds", "agent": name, "threads": threads, "k": k, "batch_size": BATCH,
               "obs_dim": OBS, "act_dim": ACT, "single_updates_per_s": round(base, 1)}
        if k > 1:
            loop, stacked = ups[("loop", k)], ups[("stacked", k)]
            row.update(loop_updates_per_s=round(loop, 1), stacked_updates_per_s=round(stacked, 1),
                       speedup_vs_loop=round(stacked / loop, 2), speedup_vs_one_seed=round(stacked / base, 2))
        row.update(rounds=rounds, updates_per_block=per_block)
        rows.append(row)
    return rows


def run(quick: bool = False, agents: tuple[str, ...] = AGENTS, threads: tuple[int, ...] = (1, 2)):
    """One JSON-able dict per (agent, threads, K); see the module docstring."""
    malloc = "keep-freed" if keep_freed_memory() else "default"
    rounds, per_block = (2, 2) if quick else (5, 4)
    before = torch.get_num_threads()
    try:
        for t in threads:
            for name in agents:
                for row in _case(name, t, (1, 5, 10), rounds, per_block):
                    yield {**row, "malloc": malloc, "cpus": os.cpu_count()}
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    names = tuple(a for a in sys.argv[1:] if not a.startswith("--")) or AGENTS
    for row in run(quick="--quick" in sys.argv, agents=names):
        print(json.dumps(row), flush=True)
