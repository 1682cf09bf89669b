"""Speed of the TD3+BC, IQL and CQL agents' `update` against faithful re-creations of CORL's update steps
(`tests/reference/corl.py`, the tests' oracles too; run from a checkout).

`run(quick)` times each agent and its reference on random hopper-shaped batches (obs 11, act 3, batch 256,
CORL's networks) in the same process with `torch.set_num_threads(2)`, alternating timing blocks
(`timing.compare`) so that load from other processes hits both alike; it reports updates/s (median over
blocks) and the speed-up (median of the per-block ratios). `python -m suite.bench.agents_baselines [--quick]`
prints one JSON line per agent.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from agents.cql import CQL, CQLConfig
from agents.iql import IQL, IQLConfig
from agents.td3bc import TD3BC, TD3BCConfig
from tests.reference.corl import CorlCQL, CorlIQL, CorlTD3BC

from .timing import compare

OBS_DIM, ACT_DIM, BATCH = 11, 3, 256  # hopper


def run(quick: bool = False) -> list[dict]:
    """Time TD3+BC, IQL and CQL against their CORL-style references (see the module docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        blocks, per_block = (4, 10) if quick else (10, 50)
        results = []
        cases = [
            ("iql", IQL(IQLConfig(), OBS_DIM, ACT_DIM), CorlIQL(OBS_DIM, ACT_DIM), "corl iql.py"),
            ("td3bc", TD3BC(TD3BCConfig(), OBS_DIM, ACT_DIM), CorlTD3BC(OBS_DIM, ACT_DIM), "corl td3_bc.py"),
            ("cql", CQL(CQLConfig(), OBS_DIM, ACT_DIM), CorlCQL(OBS_DIM, ACT_DIM), "corl cql.py"),
        ]
        for name, agent, ref, ref_name in cases:
            # CQL is several times slower per update: fewer updates per block keep the run short
            pb = max(per_block // 4, 3) if name == "cql" else per_block
            row = {
                "agent": name,
                "reference": ref_name,
                "batch": BATCH,
                "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM,
                "threads": torch.get_num_threads(),
                "load_avg_before": os.getloadavg()[0],  # other processes' load distorts timings: report it
            }
            row.update(compare(agent.update, ref.update, blocks=blocks, per_block=pb))
            row["load_avg_after"] = os.getloadavg()[0]
            results.append(row)
        return results
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(json.dumps(row))
