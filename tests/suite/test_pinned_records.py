"""Pinned records: one short run per method (hopper-random-v0, seed 0, 40 updates, two evaluations of two
episodes) must give the numbers in `tests/reference/pinned_records.json` — bit for bit on the machine class that
wrote the file (same CPU model, CPU capability and torch version), and to float rounding elsewhere.

This is the guard the suite/ redesign asks for ("the same seed gives bit-identical records before and after"):
a refactor that moves a number by one ulp fails here. When a change of numbers is intended (a new formula, a
fixed bug), bump the agent's ``NUMERICS`` (so that `suite audit` compares older records within tolerance
instead of bit for bit), regenerate the file and say so in the commit:

    SUITE_PIN_WRITE=1 python -m pytest tests/suite/test_pinned_records.py

(the test then rewrites the file and fails, so that a regeneration is never silently green)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest
import torch

from suite.runner import RunOptions, run

PINNED = Path(__file__).resolve().parents[1] / "reference" / "pinned_records.json"
FAST = dict(seed=0, steps=40, eval_every=20, eval_episodes=2, progress=False, tensorboard=False)
SMALL = {"batch_size": "32", "hidden": "[32, 32]"}
OVERRIDES = {  # name (method[-variant]) -> overrides; BC twice, for its MSE and its Gaussian-NLL policy
    "bc": SMALL,
    "bc-gaussian": {**SMALL, "policy": "gaussian"},
    "td3bc": SMALL,
    "iql": SMALL,
    "cql": {"batch_size": "32", "actor_hidden": "[32, 32]", "critic_hidden": "[32, 32]", "bc_steps": "10"},
    "odice": {"batch_size": "32", "value_hidden": "[32, 32]", "policy_hidden": "[32, 32]"},
}


def machine_class() -> dict[str, str]:
    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"machine": platform.machine(), "cpu": model or platform.processor(),
            "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def _numbers(rec) -> dict:
    return {"status": rec.status, "numerics": rec.provenance["numerics"],
            "curve": [[p.step, p.returns] for p in rec.curve],
            "metrics": dict(sorted(rec.metrics.items()))}


@pytest.fixture(scope="module")
def pinned_runs(hopper_random_built, tmp_path_factory):
    out = tmp_path_factory.mktemp("pinned")
    return {name: _numbers(run(name.split("-")[0], "hopper-random-v0", RunOptions(out=out / name, overrides=o, **FAST)))
            for name, o in OVERRIDES.items()}


def test_pinned_records(pinned_runs):
    if os.environ.get("SUITE_PIN_WRITE"):
        PINNED.write_text(json.dumps({"machine_class": machine_class(), "runs": pinned_runs}, indent=1) + "\n")
        pytest.fail(f"rewrote {PINNED}; run again without SUITE_PIN_WRITE")
    want = json.loads(PINNED.read_text())
    assert set(pinned_runs) == set(want["runs"])
    same_machine = want["machine_class"] == machine_class()
    for method, got in pinned_runs.items():
        ref = want["runs"][method]
        assert got["status"] == ref["status"] == "ok", method
        assert got["numerics"] == ref["numerics"], f"{method}: NUMERICS bumped; regenerate the pin (see above)"
        if same_machine:
            assert got == ref, (f"{method}: numbers moved on the machine class that pinned them; if on purpose, "
                                "bump the agent's NUMERICS (agents.base.OfflineAgent) and regenerate the pin")
            continue
        assert [s for s, _ in got["curve"]] == [s for s, _ in ref["curve"]]
        for (_, g), (_, r) in zip(got["curve"], ref["curve"], strict=True):
            assert g == pytest.approx(r, rel=1e-2, abs=1e-2), method  # episodes amplify rounding a little
        assert got["metrics"] == pytest.approx(ref["metrics"], rel=1e-3, abs=1e-5), method
