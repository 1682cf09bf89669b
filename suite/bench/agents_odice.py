"""Speed of `agents.odice.ODICE.update` against a faithful re-creation of the official O-DICE update step
(`tests/reference/odice_official.py`, the tests' oracle too; run from a checkout).

`run(quick)` times both on random hopper-shaped batches (obs 11, act 3, batch 256, the paper's networks) in
the same process with `torch.set_num_threads(2)` (and again with 1 thread), alternating timing blocks
(`timing.compare`) so that load from other processes hits both alike, and reports updates/s, process CPU time
per update and the ratios. `python -m suite.bench.agents_odice [--quick]` prints one JSON line per case, once
per allocator setting (see `run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from agents.odice import ODICE, ODICEConfig
from tests.reference.odice_official import OfficialODICE, load_official_into

from ..allocator import keep_freed_memory
from .timing import compare, random_batches

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests.reference is importable from there


def time_case(gradient: str, threads: int, batches, blocks: int) -> dict:
    torch.set_num_threads(threads)
    obs_dim, act_dim = batches[0]["observations"].shape[1], batches[0]["actions"].shape[1]
    config = ODICEConfig(gradient=gradient)
    torch.manual_seed(0)
    official = OfficialODICE(config, obs_dim, act_dim)
    ours = ODICE(config, obs_dim, act_dim)
    load_official_into(ours, official)
    t = compare(ours.update, official.update, blocks=blocks, per_block=len(batches), warmup=3, batches=batches)
    return {
        "benchmark": "agents.odice.update", "gradient": gradient, "threads": threads,
        "batch_size": batches[0]["rewards"].shape[0], "obs_dim": obs_dim, "act_dim": act_dim,
        "official_ms": round(t["reference_ms_per_update"], 2), "ours_ms": round(t["ms_per_update"], 2),
        "official_updates_per_s": round(t["reference_updates_per_s"], 1),
        "ours_updates_per_s": round(t["updates_per_s"], 1),
        "speedup": round(t["speedup"], 2),
        "official_cpu_ms": round(t["reference_cpu_ms_per_update"], 2), "ours_cpu_ms": round(t["cpu_ms_per_update"], 2),
        "cpu_speedup": round(t["cpu_speedup"], 2),
    }


def _run_here(quick: bool) -> list[dict]:
    """All cases in this process, with the allocator setting `suite run` uses unless SUITE_MALLOC=default."""
    malloc = "keep-freed" if keep_freed_memory() else "default"
    threads_before = torch.get_num_threads()
    try:
        blocks, per_block = (3, 10) if quick else (7, 25)
        batches = random_batches(per_block)  # hopper-shaped
        gradients = ("orthogonal",) if quick else ("orthogonal", "semi", "true")
        rows = [time_case(g, threads, batches, blocks) for threads in (2, 1) for g in gradients]
    finally:
        torch.set_num_threads(threads_before)
    return [{**row, "malloc": malloc} for row in rows]


def run(quick: bool = False) -> list[dict]:
    """Headline: 2 threads, wall clock; also 1 thread (CPU time is the robust number on a shared machine).

    Each allocator setting (suite/allocator.py) needs a fresh process, so the cases run twice in
    subprocesses: "keep-freed" (as `suite run` trains) and "default" (glibc's defaults, as the official code
    runs). Within a process both implementations get the same setting; ratios are only ever taken within one
    process (a ratio across two processes minutes apart measured the machine's load, not the code)."""
    rows: list[dict] = []
    for malloc in ("keep-freed", "default"):
        cmd = [sys.executable, "-m", "suite.bench.agents_odice", "--here"] + (["--quick"] if quick else [])
        env = {**os.environ, "SUITE_MALLOC": malloc}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return rows


if __name__ == "__main__":
    for row in (_run_here if "--here" in sys.argv else run)(quick="--quick" in sys.argv):
        print(json.dumps(row))
