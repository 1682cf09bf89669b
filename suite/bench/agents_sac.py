"""SAC update speed: `agents.sac.SAC.update` against CleanRL's `sac_continuous_action.py` update, re-created
in `tests/reference/cleanrl_sac.py` (run from a checkout) and timed in this process (same batch, same
dimensions, same thread count) in interleaved blocks (`timing.compare`). Dimensions: HalfCheetah (obs 17,
action 6), batch 256.

    python -m suite.bench.agents_sac [--quick] [--one]     (also part of `suite bench agents`)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import torch

from agents.sac import SAC, SACConfig
from tests.reference.cleanrl_sac import CleanRLSAC

from .timing import compare, random_batches

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256


def run(quick: bool = False, threads: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """One row per thread count: our SAC update against CleanRL's, interleaved blocks, HalfCheetah dims."""
    before = torch.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            torch.manual_seed(0)
            ours = SAC(SACConfig(), OBS_DIM, ACT_DIM)
            ref = CleanRLSAC(OBS_DIM, ACT_DIM)
            blocks, per_block = (4, 20) if quick else (10, 100)
            row = {"agent": "sac", "reference": "cleanrl sac_continuous_action.py", "batch": BATCH,
                   "obs_dim": OBS_DIM, "act_dim": ACT_DIM, "threads": n, "load_avg_before": os.getloadavg()[0]}
            row.update(compare(ours.update, ref.update, blocks=blocks, per_block=per_block,
                               batches=random_batches(8, OBS_DIM, ACT_DIM)))
            row["load_avg_after"] = os.getloadavg()[0]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    for r in run(quick="--quick" in sys.argv[1:], threads=(1,) if "--one" in sys.argv[1:] else (1, 2)):
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}))
