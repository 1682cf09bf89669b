"""suite/allocator.py: with `keep_freed_memory()` the updates of an agent page-fault far less."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOOP = r"""
import json, resource
import torch
from suite.allocator import keep_freed_memory
applied = keep_freed_memory()
torch.set_num_threads(1)
from agents.odice import ODICE, ODICEConfig
from suite.bench.timing import random_batch
torch.manual_seed(0)
agent = ODICE(ODICEConfig(), 11, 3)  # hopper-sized O-DICE: temporaries of 0.25-4 MiB per update
batch = random_batch(11, 3, 256, torch.Generator().manual_seed(0))
for _ in range(10):  # warm-up: Adam state, the heap's working size
    agent.update(batch)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    agent.update(batch)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 20
digest = sum(float(p.double().sum()) for p in agent.policy.parameters()) + sum(
    float(p.double().sum()) for p in agent.value.parameters())
print(json.dumps({"applied": applied, "faults": faults, "digest": repr(digest)}))
"""


def _measure(malloc: str) -> dict:
    env = {**os.environ, "SUITE_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, check=True, timeout=120,
                         cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_cuts_page_faults():
    default, tuned = _measure("default"), _measure("keep-freed")
    assert default["applied"] is False  # SUITE_MALLOC=default opts out
    assert tuned["digest"] == default["digest"]  # same numbers either way
    if not tuned["applied"]:
        pytest.skip("this libc has no mallopt")
    if default["faults"] < 50:
        pytest.skip(f"this libc does not page-fault on freed temporaries ({default['faults']:.0f} per step)")
    assert tuned["faults"] < 0.3 * default["faults"], (default, tuned)
