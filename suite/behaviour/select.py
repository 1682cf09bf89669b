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
    run_dir: str | Path | None,
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
    keep_expert: bool = False,
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
    its lower levels: from a short run of the same environment with fine snapshot spacing.

    `keep_expert` (with `medium_run`, and `run_dir` None): keep the expert and `reference.json` already shipped
    under `<dest_root>/<env_id>/` and select only `medium` and `medium-replay`, against that expert's manifest
    return. This re-selects the lower levels of an expert whose training run is gone (a run's snapshots live in
    `runs/`, which a machine may lose), e.g. with finer snapshot spacing than the first run had."""
    if keep_expert:
        if medium_run is None or env_id is None:
            raise ValueError("keep_expert re-selects medium from --medium-run: give it and the environment id")
        return _reselect_medium(env_id, Path(medium_run), Path(dest_root), screen_episodes, final_episodes,
                                replay_episodes, deterministic_episodes, n_candidates, max_replay, eval_seed,
                                progress)
    if run_dir is None:
        raise ValueError("select_levels needs the training run (run_dir), or keep_expert with a medium_run")
    run = Path(run_dir)
    info, snaps = _load_run(run, env_id, "run")
    env_id = env_id or info["env_id"]
    step_of = {p: int(read_behaviour_metadata(p)["env_steps"]) for p in snaps}
    low_run, low_info, low_snaps = run, info, snaps
    if medium_run is not None:
        low_run = Path(medium_run)
        low_info, low_snaps = _load_run(low_run, env_id, "--medium-run")
        step_of.update({p: int(read_behaviour_metadata(p)["env_steps"]) for p in low_snaps})
    steps_reached = _steps_reached(run, [step_of[p] for p in snaps])
    ev = _Evaluations(env_id, eval_seed, final_episodes, progress)
    ev.screen_all(snaps + low_snaps, screen_episodes)
    top = sorted(snaps, key=lambda p: -ev.screen[p])[:n_candidates]
    expert = max(top, key=lambda p: ev.final(p)["mean"])
    expert_return = ev.final(expert)["mean"]

    dest = Path(dest_root) / env_id
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    budget_note = (
        f"expert = best policy reached within a budget of {steps_reached} env steps "
        f"(seed {info['seed']}; best of the snapshots taken every {info.get('snapshot_every')} steps), "
        "not D4RL's expert"
    )
    planned = info.get("total_steps")
    if planned is not None and steps_reached < planned:
        budget_note += f"; training was planned for {planned} steps and stopped at {steps_reached}"
    training = training_summary(info, steps_reached)
    out: dict[str, Any] = {}
    det = ev.run(expert, deterministic_episodes, deterministic=True)
    out["expert"] = ship_policy(
        expert, dest / "expert.safetensors", env_id=env_id, level="expert", env_steps=step_of[expert],
        training=training, evaluation=evaluation_summary(env_id, ev.final(expert)),
        extra={"evaluation_deterministic": evaluation_summary(env_id, det), "note": budget_note})
    low_training = training if medium_run is None else training_summary(
        low_info, _steps_reached(low_run, [step_of[p] for p in low_snaps]))
    candidates = low_snaps if medium_run is not None else [p for p in snaps if step_of[p] <= step_of[expert]]
    out.update(_ship_lower(
        ev, dest, candidates, step_of, expert_return / 3.0, training=low_training,
        note=f"({budget_note})" + ("" if medium_run is None else
                                   f"; medium and medium-replay from the snapshots of {low_run}"),
        n_candidates=n_candidates, max_replay=max_replay, replay_episodes=replay_episodes,
        deterministic_episodes=deterministic_episodes))

    rand = random_policy_return(env_id, final_episodes, eval_seed)
    base = env_id.split("/")[-1].split("-")[0].lower()
    reference = {
        "env_id": env_id,
        "random_return": rand["mean"],
        "random_return_std": rand["std"],
        "random_policy": "uniform in [-1, 1]^action_dim",
        "expert_return": expert_return,
        "expert_return_std": ev.final(expert)["std"],
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
    ev.log(
        f"expert {expert.name} {expert_return:.1f}, medium {out['medium']['file']} "
        f"{out['medium']['evaluation']['return_mean']:.1f}, random {rand['mean']:.1f}, "
        f"{len(out['replay'])} replay snapshots"
    )
    return out


def _reselect_medium(env_id: str, low_run: Path, dest_root: Path, screen_episodes: int, final_episodes: int,
                     replay_episodes: int, deterministic_episodes: int, n_candidates: int, max_replay: int,
                     eval_seed: int, progress: bool) -> dict[str, Any]:
    """`select_levels(keep_expert=True)`: new `medium` and `medium-replay` beside the shipped expert."""
    dest = dest_root / env_id
    manifest = dest / "expert.json"
    if not manifest.exists():
        raise FileNotFoundError(f"no shipped expert to keep: {manifest} does not exist")
    expert = json.loads(manifest.read_text())
    if expert.get("env_id") != env_id:
        raise RunMismatchError(f"{manifest} is an expert of {expert.get('env_id')}, not {env_id}")
    ev_expert = expert["evaluation"]
    if ev_expert["episodes"] != final_episodes or ev_expert["seed"] != eval_seed:
        raise ValueError(f"the kept expert was evaluated over {ev_expert['episodes']} episodes (seed "
                         f"{ev_expert['seed']}); select with --final-episodes {ev_expert['episodes']} so that "
                         "medium's target is measured the same way")
    low_info, low_snaps = _load_run(low_run, env_id, "--medium-run")
    step_of = {p: int(read_behaviour_metadata(p)["env_steps"]) for p in low_snaps}
    ev = _Evaluations(env_id, eval_seed, final_episodes, progress)
    ev.screen_all(low_snaps, screen_episodes)
    for old in (dest / "medium.safetensors", dest / "medium.json"):
        old.unlink(missing_ok=True)
    shutil.rmtree(dest / "replay", ignore_errors=True)
    training = training_summary(low_info, _steps_reached(low_run, list(step_of.values())))
    note = (f"(expert kept: {expert['file']} sha256 {expert['sha256'][:16]}…, {expert['env_steps']} env steps; "
            f"{expert.get('note', '')}); medium and medium-replay re-selected from the snapshots of {low_run}")
    out = _ship_lower(ev, dest, low_snaps, step_of, ev_expert["return_mean"] / 3.0, training=training, note=note,
                      n_candidates=n_candidates, max_replay=max_replay, replay_episodes=replay_episodes,
                      deterministic_episodes=deterministic_episodes)
    ev.log(f"kept expert {ev_expert['return_mean']:.1f}; medium {out['medium']['env_steps']} steps "
           f"{out['medium']['evaluation']['return_mean']:.1f}, {len(out['replay'])} replay snapshots")
    return out


def _load_run(run: Path, env_id: str | None, what: str) -> tuple[dict[str, Any], list[Path]]:
    """A training run's run.json and its snapshots, in training order."""
    if not (run / "run.json").exists():
        raise FileNotFoundError(f"{what} {run} is not a training run (no run.json)")
    info = json.loads((run / "run.json").read_text())
    if env_id is not None and info["env_id"] != env_id:
        raise RunMismatchError(f"{what} {run} trained {info['env_id']}, not {env_id}")
    snaps = sorted((run / SNAPSHOT_DIR).glob("step_*.safetensors"))
    if not snaps:
        raise FileNotFoundError(f"no snapshots under {run / SNAPSHOT_DIR}")
    return info, snaps


class _Evaluations:
    """Evaluations of snapshots for one selection: a screen of each, and the final (`final_episodes`) one of
    the candidates, each run once."""

    def __init__(self, env_id: str, eval_seed: int, final_episodes: int, progress: bool):
        self.env_id, self.eval_seed, self.final_episodes, self.progress = env_id, eval_seed, final_episodes, progress
        self.screen: dict[Path, float] = {}
        self.finals: dict[Path, dict[str, Any]] = {}

    def log(self, msg: str) -> None:
        if self.progress:
            print(f"[select {self.env_id}] {msg}", file=sys.stderr, flush=True)

    def run(self, path: Path, episodes: int, deterministic: bool = False) -> dict[str, Any]:
        return evaluate_policy(load_behaviour_policy(path), self.env_id, episodes, self.eval_seed, deterministic)

    def screen_all(self, paths: list[Path], episodes: int) -> None:
        for p in dict.fromkeys(paths):
            self.screen[p] = self.run(p, episodes)["mean"]
            self.log(f"screen {p.name}: {self.screen[p]:.1f}")

    def final(self, p: Path) -> dict[str, Any]:
        if p not in self.finals:
            self.finals[p] = self.run(p, self.final_episodes)
            self.log(f"final {p.name}: {self.finals[p]['mean']:.1f} ± {self.finals[p]['std']:.1f}")
        return self.finals[p]


def _ship_lower(ev: _Evaluations, dest: Path, candidates: list[Path], step_of: dict[Path, int], target: float, *,
                training: dict[str, Any], note: str, n_candidates: int, max_replay: int, replay_episodes: int,
                deterministic_episodes: int) -> dict[str, Any]:
    """Pick `medium` among `candidates` (of the `n_candidates` screened closest to `target`, the closest over
    the final evaluation) and `medium-replay` (at most `max_replay` snapshots evenly spread from the first
    candidate up to medium), and ship them into `dest` with their manifests and `replay/index.json`."""
    near = sorted(candidates, key=lambda p: abs(ev.screen[p] - target))[:n_candidates]
    medium = min(near, key=lambda p: abs(ev.final(p)["mean"] - target))
    upto = [p for p in candidates if step_of[p] <= step_of[medium]]
    if len(upto) > max_replay:
        picks = np.unique(np.round(np.linspace(0, len(upto) - 1, max_replay)).astype(int))
        upto = [upto[i] for i in picks]
    (dest / "replay").mkdir(parents=True, exist_ok=True)
    env_id = ev.env_id

    def ship(src: Path, dst: Path, level: str, stochastic: dict[str, Any], extra: dict[str, Any]):
        return ship_policy(src, dst, env_id=env_id, level=level, env_steps=step_of[src], training=training,
                           evaluation=evaluation_summary(env_id, stochastic), extra=extra)

    det = ev.run(medium, deterministic_episodes, deterministic=True)
    out: dict[str, Any] = {"medium": ship(medium, dest / "medium.safetensors", "medium", ev.final(medium), {
        "evaluation_deterministic": evaluation_summary(env_id, det),
        "target_return": round(target, 3),
        "note": f"medium = snapshot whose return is closest to 1/3 of this expert's {note}",
    })}
    replay = []
    for p in upto:
        res = ev.finals[p] if p in ev.finals and replay_episodes == ev.final_episodes else ev.run(p, replay_episodes)
        extra = {"note": "one of the snapshots from the start of training up to `medium` (inclusive)"}
        replay.append(ship(p, dest / "replay" / p.name, "medium-replay", res, extra))
        ev.log(f"replay {p.name}: {res['mean']:.1f}")
    write_json(dest / "replay" / "index.json", {
        "env_id": env_id,
        "files": [m["file"] for m in replay],
        "env_steps": [m["env_steps"] for m in replay],
        "medium_env_steps": step_of[medium],
    })
    out["replay"] = replay
    return out


def _steps_reached(run: Path, snapshot_steps: list[int]) -> int:
    """How far a training run got: its last snapshot, or its checkpoint's step where that is later."""
    ckpt = run / CHECKPOINT_NAME
    last = max(snapshot_steps)
    return max(last, int(load_checkpoint(ckpt)["step"])) if has_checkpoint(ckpt) else last
