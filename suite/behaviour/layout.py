"""Where behaviour-policy files live and what their manifests say.

A training run (`train.train_sac`) writes under its `--out` directory: `run.json`, `tb/`,
`snapshots/step_XXXXXXX.safetensors` (actor only) and `checkpoint/` (a `suite.checkpoint` directory).
Selection (`select.select_levels`) ships policies under `<POLICY_ROOT>/<env_id>/`: `expert` and `medium`
(`.safetensors` + a `.json` manifest each), `replay/step_XXXXXXX.{safetensors,json}` with `replay/index.json`,
and `reference.json` (the suite's normalisation references for datasets built from these policies)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..data.store import sha256_file
from ..tasks.mujoco import POLICY_DIR
from ..tasks.references import d4rl_normalized_score

POLICY_ROOT = POLICY_DIR
"""Where shipped behaviour policies live: `<POLICY_ROOT>/<env_id>/{expert,medium}.safetensors`, `replay/`."""

CHECKPOINT_NAME = "checkpoint"  # a suite.checkpoint directory (safetensors + JSON; no pickle)
SNAPSHOT_DIR = "snapshots"


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{step:07d}.safetensors"


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Manifests and indices: indented, sorted keys, a final newline (they are committed and diffed)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def evaluation_summary(env_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """A manifest's `evaluation` entry from an `evaluation.evaluate_policy` result."""
    score = d4rl_normalized_score(env_id, result["mean"])
    return {
        "return_mean": round(result["mean"], 3),
        "return_std": round(result["std"], 3),
        "episodes": result["episodes"],
        "seed": result["seed"],
        "actions": "deterministic" if result["deterministic"] else "stochastic",
        "d4rl_normalized_score": None if score is None else round(score, 3),
    }


def training_summary(info: dict[str, Any], steps_reached: int) -> dict[str, Any]:
    """A manifest's `training` entry: how the run that produced the snapshot was made (from its run.json)."""
    out = {
        "algorithm": "SAC (agents/sac.py)",
        "implementation": info.get("implementation", "sac/1 (before 2026-12-02)"),
        "command": info["command"],
        "torch_threads": info.get("torch_threads"),
        "seed": info["seed"],
        "config": info["config"],
        "steps_reached": steps_reached,
        "planned_total_steps": info.get("total_steps"),
        "resumes": info.get("resumes", []),
    }
    if "init_actor" in info:  # a continuation: the policy file it started from, and its critic warm-up
        out["init_actor"] = info["init_actor"]
        out["critic_warmup"] = info.get("critic_warmup", 0)
    return out


def ship_policy(
    src: Path,
    dst: Path,
    *,
    env_id: str,
    level: str,
    env_steps: int,
    training: dict[str, Any],
    evaluation: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Copy a snapshot to `dst` and write its manifest beside it (`dst` with suffix .json); return the
    manifest. The manifest's sha256 is what `suite.data.build` checks before it uses the file."""
    shutil.copyfile(src, dst)
    manifest = {
        "env_id": env_id,
        "level": level,
        "file": dst.name,
        "sha256": sha256_file(dst),
        "env_steps": env_steps,
        "training": training,
        "evaluation": evaluation,
        "ranking": "stochastic-action return (datasets are collected with stochastic actions, like D4RL)",
        **extra,
    }
    write_json(dst.with_suffix(".json"), manifest)
    return manifest
