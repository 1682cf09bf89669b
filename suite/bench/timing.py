"""The one timing helper of the agent benchmarks: random batches, a timed block of updates, and `compare`,
which alternates timing blocks of two update functions in one process so that load from other processes
hits both alike, and reports wall-clock and process-CPU medians and the speed-up."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def random_batch(obs_dim: int, act_dim: int, batch_size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One batch with the keys of `agents.base.BATCH_KEYS`: normal observations and rewards, uniform
    actions in [-1, 1], 1% terminals."""
    return {
        "observations": torch.randn(batch_size, obs_dim, generator=gen),
        "actions": torch.rand(batch_size, act_dim, generator=gen) * 2 - 1,
        "rewards": torch.randn(batch_size, generator=gen),
        "next_observations": torch.randn(batch_size, obs_dim, generator=gen),
        "terminals": (torch.rand(batch_size, generator=gen) < 0.01).float(),
    }


def random_batches(n: int, obs_dim: int = 11, act_dim: int = 3, batch_size: int = 256,
                   seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`n` batches from one generator seeded with `seed` (default: hopper dimensions, batch 256)."""
    gen = torch.Generator().manual_seed(seed)
    return [random_batch(obs_dim, act_dim, batch_size, gen) for _ in range(n)]


def time_block(update, batches: list[dict[str, torch.Tensor]], n: int | None = None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per update over `n` updates cycling through `batches` (default:
    each batch once)."""
    n = len(batches) if n is None else n
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        update(batches[i % len(batches)])
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def compare(fast_update, ref_update, *, blocks: int, per_block: int, warmup: int = 20,
            batches: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Alternate timing blocks of the two update functions (which goes first alternates too); seconds per
    update (median over blocks), the speed-up (median of the per-block ratios) and the same in process CPU
    time (all threads), which other processes disturb less than wall time."""
    batches = batches if batches is not None else random_batches(8)
    time_block(fast_update, batches, warmup)
    time_block(ref_update, batches, warmup)
    fast, ref = [], []
    for b in range(blocks):
        order = [(fast_update, fast), (ref_update, ref)]
        for fn, out in order if b % 2 == 0 else order[::-1]:
            out.append(time_block(fn, batches, per_block))
    wall_f, wall_r = [t[0] for t in fast], [t[0] for t in ref]
    cpu_f, cpu_r = [t[1] for t in fast], [t[1] for t in ref]
    ratios = [r / f for f, r in zip(wall_f, wall_r, strict=True)]
    return {
        "updates_per_s": 1.0 / statistics.median(wall_f),
        "reference_updates_per_s": 1.0 / statistics.median(wall_r),
        "ms_per_update": 1e3 * statistics.median(wall_f),
        "reference_ms_per_update": 1e3 * statistics.median(wall_r),
        "speedup": statistics.median(ratios),
        "speedup_min_max": [min(ratios), max(ratios)],
        # the fastest block of each: the least disturbed by other processes on a shared machine
        "best_updates_per_s": 1.0 / min(wall_f),
        "reference_best_updates_per_s": 1.0 / min(wall_r),
        "speedup_of_best": min(wall_r) / min(wall_f),
        "cpu_ms_per_update": 1e3 * statistics.median(cpu_f),
        "reference_cpu_ms_per_update": 1e3 * statistics.median(cpu_r),
        "cpu_speedup": statistics.median(r / max(f, 1e-12) for f, r in zip(cpu_f, cpu_r, strict=True)),
        "blocks": blocks,
        "updates_per_block": per_block,
    }
