"""Pick the `expert`, `medium` and `medium-replay` behaviour policies from a training run's snapshots, the way
D4RL did, and ship them with a manifest each (files and manifests: `layout`).

Choice made here: policies are ranked by their return under *stochastic* actions (sampled from the
tanh-Gaussian), because the datasets are collected with stochastic actions, as D4RL did; the deterministic
(tanh-mean) return is recorded beside it in the manifest."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.sac import load_behaviour_policy, read_behaviour_metadata

from ..checkpoint import has_checkpoint, load_checkpoint
from ..errors import RunMismatchError
from ..evaluation import D4RL_REFERENCE_RETURNS, evaluate_policy, random_policy_return
from .layout import (
    CHECKPOINT_NAME,
    POLICY_ROOT,
    SNAPSHOT_DIR,
    evaluation_summary,
    ship_policy,
    training_summary,
    write_json,
)


def select_levels(
    run_dir: str | Path,
    env_id: str | None = None,
    *,
    dest_root: str | Path = POLICY_ROOT,
    screen_episodes: int = 5,
    final_episodes: int = 100,
    replay_episodes: int = 20,
    deterministic_episodes: int = 20,
    n_candidates: int = 2,
    max_replay: int = 5,
    eval_seed: int = 100_000,
    progress: bool = True,
    medium_run: str | Path | None = None,
) -> dict[str, Any]:
    """Pick the behaviour policies from a training run's snapshots and ship them with manifests.

    1. screen every snapshot with `screen_episodes` stochastic-action episodes;
    2. `expert`: of the `n_candidates` best screened snapshots, the best over `final_episodes` episodes;
    3. `medium`: of the `n_candidates` snapshots (up to the expert's step) screened closest to one third of
       the expert's return, the closest over `final_episodes` episodes (D4RL: "about 1/3 of expert");
    4. `medium-replay`: at most `max_replay` snapshots evenly spread from the first up to `medium`
       (inclusive), each evaluated over `replay_episodes` episodes.
    Expert and medium also get a deterministic (tanh-mean) evaluation over `deterministic_episodes` episodes,
    recorded in their manifests as `evaluation_deterministic`. Episode counts are small by default where the
    numbers are informational only, because a CPU evaluation of 100 1000-step episodes takes minutes.
    Writes `<dest_root>/<env_id>/{expert,medium}.{safetensors,json}`, `replay/step_XXXXXXX.{safetensors,json}`
    (one manifest per policy), `replay/index.json` and `reference.json` (uniform-random and expert returns
    over `final_episodes` episodes).

    `medium_run`: take `medium` and `medium-replay` from another run's snapshots (D4RL's medium is an
    early-stopped SAC run, its medium-replay that run's buffer up to then). This is how a continued expert (a run
    started from a shipped policy, `train_sac(init_actor=...)`, whose snapshots are all near expert level) gets
    its lower levels: from a short run of the same environment with fine snapshot spacing."""
    run = Path(run_dir)
    info = json.loads((run / "run.json").read_text())
    env_id = env_id or info["env_id"]
    if env_id != info["env_id"]:
        raise RunMismatchError(f"run {run} trained {info['env_id']}, not {env_id}")
    snaps = sorted((run / SNAPSHOT_DIR).glob("step_*.safetensors"))
    if not snaps:
        raise FileNotFoundError(f"no snapshots under {run / SNAPSHOT_DIR}")
    step_of = {p: int(read_behaviour_metadata(p)["env_steps"]) for p in snaps}
    low_run, low_info = run, info
    low_snaps = snaps
    if medium_run is not None:
        low_run = Path(medium_run)
        low_info = json.loads((low_run / "run.json").read_text())
        if low_info["env_id"] != env_id:
            raise RunMismatchError(f"--medium-run {low_run} trained {low_info['env_id']}, not {env_id}")
        low_snaps = sorted((low_run / SNAPSHOT_DIR).glob("step_*.safetensors"))
        if not low_snaps:
            raise FileNotFoundError(f"no snapshots under {low_run / SNAPSHOT_DIR}")
        step_of.update({p: int(read_behaviour_metadata(p)["env_steps"]) for p in low_snaps})
    steps_reached = _steps_reached(run, [step_of[p] for p in snaps])

    def log(msg: str) -> None:
        if progress:
            print(f"[select {env_id}] {msg}", file=sys.stderr, flush=True)

    def evaluate(path: Path, episodes: int, deterministic: bool = False) -> dict[str, Any]:
        return evaluate_policy(load_behaviour_policy(path), env_id, episodes, eval_seed, deterministic)

    screen = {}
    for p in dict.fromkeys(snaps + low_snaps):
        screen[p] = evaluate(p, screen_episodes)["mean"]
        log(f"screen {p.name}: {screen[p]:.1f}")

    final: dict[Path, dict[str, Any]] = {}

    def final_eval(p: Path) -> dict[str, Any]:
        if p not in final:
            final[p] = evaluate(p, final_episodes)
            log(f"final {p.name}: {final[p]['mean']:.1f} ± {final[p]['std']:.1f}")
        return final[p]

    top = sorted(snaps, key=lambda p: -screen[p])[:n_candidates]
    expert = max(top, key=lambda p: final_eval(p)["mean"])
    expert_return = final[expert]["mean"]
    target = expert_return / 3.0
    before = [p for p in low_snaps if medium_run is not None or step_of[p] <= step_of[expert]]
    near = sorted(before, key=lambda p: abs(screen[p] - target))[:n_candidates]
    medium = min(near, key=lambda p: abs(final_eval(p)["mean"] - target))
    upto = [p for p in low_snaps if step_of[p] <= step_of[medium]]
    if len(upto) > max_replay:
        picks = np.unique(np.round(np.linspace(0, len(upto) - 1, max_replay)).astype(int))
        upto = [upto[i] for i in picks]

    dest = Path(dest_root) / env_id
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "replay").mkdir(parents=True)
    budget_note = (
        f"expert = best policy reached within a budget of {steps_reached} env steps "
        f"(seed {info['seed']}; best of the snapshots taken every {info.get('snapshot_every')} steps), "
        "not D4RL's expert"
    )
    planned = info.get("total_steps")
    if planned is not None and steps_reached < planned:
        budget_note += f"; training was planned for {planned} steps and stopped at {steps_reached}"
    training = training_summary(info, steps_reached)
    low_training = training if medium_run is None else training_summary(
        low_info, _steps_reached(low_run, [step_of[p] for p in low_snaps]))

    def ship(src: Path, dst: Path, level: str, stochastic: dict[str, Any], extra: dict[str, Any]):
        return ship_policy(src, dst, env_id=env_id, level=level, env_steps=step_of[src],
                           training=training if level == "expert" else low_training,
                           evaluation=evaluation_summary(env_id, stochastic), extra=extra)

    det = {p: evaluate(p, deterministic_episodes, deterministic=True) for p in (expert, medium)}
    out: dict[str, Any] = {}
    out["expert"] = ship(
        expert,
        dest / "expert.safetensors",
        "expert",
        final[expert],
        {"evaluation_deterministic": evaluation_summary(env_id, det[expert]), "note": budget_note},
    )
    out["medium"] = ship(
        medium,
        dest / "medium.safetensors",
        "medium",
        final[medium],
        {
            "evaluation_deterministic": evaluation_summary(env_id, det[medium]),
            "target_return": round(target, 3),
            "note": f"medium = snapshot whose return is closest to 1/3 of this expert's ({budget_note})"
            + ("" if medium_run is None else f"; medium and medium-replay from the snapshots of {low_run}"),
        },
    )
    replay = []
    for p in upto:
        res = final[p] if p in final and replay_episodes == final_episodes else evaluate(p, replay_episodes)
        note = "one of the snapshots from the start of training up to `medium` (inclusive)"
        replay.append(ship(p, dest / "replay" / p.name, "medium-replay", res, {"note": note}))
        log(f"replay {p.name}: {res['mean']:.1f}")
    write_json(dest / "replay" / "index.json", {
        "env_id": env_id,
        "files": [m["file"] for m in replay],
        "env_steps": [m["env_steps"] for m in replay],
        "medium_env_steps": step_of[medium],
    })
    out["replay"] = replay

    rand = random_policy_return(env_id, final_episodes, eval_seed)
    base = env_id.split("/")[-1].split("-")[0].lower()
    reference = {
        "env_id": env_id,
        "random_return": rand["mean"],
        "random_return_std": rand["std"],
        "random_policy": "uniform in [-1, 1]^action_dim",
        "expert_return": expert_return,
        "expert_return_std": final[expert]["std"],
        "expert_policy": "expert.safetensors, stochastic actions",
        "episodes": final_episodes,
        "seed": eval_seed,
        "d4rl_reference_returns": dict(
            zip(("random", "expert"), D4RL_REFERENCE_RETURNS.get(base, (None, None)), strict=True)
        ),
        "note": "the suite's own normalisation references for datasets built from these policies; "
        + budget_note,
    }
    write_json(dest / "reference.json", reference)
    out["reference"] = reference
    log(
        f"expert {expert.name} {expert_return:.1f}, medium {medium.name} {final[medium]['mean']:.1f}, "
        f"random {rand['mean']:.1f}, {len(replay)} replay snapshots"
    )
    return out


def _steps_reached(run: Path, snapshot_steps: list[int]) -> int:
    """How far a training run got: its last snapshot, or its checkpoint's step where that is later."""
    ckpt = run / CHECKPOINT_NAME
    last = max(snapshot_steps)
    return max(last, int(load_checkpoint(ckpt)["step"])) if has_checkpoint(ckpt) else last
