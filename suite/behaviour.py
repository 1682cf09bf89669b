"""Behaviour policies for the suite's own datasets: train SAC online on a Gymnasium MuJoCo task, keep a
sequence of policy snapshots, then pick the `expert`, `medium` and `medium-replay` policies from them the
way D4RL did, and ship them under `suite/data/policies/<env_id>/` with a manifest each.

    python -m suite.behaviour train Hopper-v5 --steps 100000 --seed 0 --out DIR [--resume]
    python -m suite.behaviour select Hopper-v5 --run runs/behaviour/Hopper-v5

`train_sac` owns seeding, the replay buffer, logging (tensorboard + progress bar), periodic evaluation,
policy snapshots and checkpoints; a checkpoint holds everything the loop needs (agent and optimiser state,
every random generator, the replay buffer and the simulator state), so a resumed run is bit-identical to an
uninterrupted one. `evaluate_policy` is the one evaluation rollout used by both training and selection.

Choice made in `select_levels`: policies are ranked by their return under *stochastic* actions (sampled from
the tanh-Gaussian), because the datasets are collected with stochastic actions, as D4RL did; the
deterministic (tanh-mean) return is recorded beside it in the manifest.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.sac import (
    SAC,
    SACConfig,
    config_dict,
    load_behaviour_policy,
    read_behaviour_metadata,
    save_behaviour_policy,
)

POLICY_ROOT = Path(__file__).resolve().parent / "data" / "policies"
"""Where shipped behaviour policies live: `<POLICY_ROOT>/<env_id>/{expert,medium}.safetensors`, `replay/`."""

from .evaluation import (  # noqa: E402,F401  (re-exported: the behaviour CLI and older callers use them)
    D4RL_REFERENCE_RETURNS,
    d4rl_normalized_score,
    evaluate_policy,
    make_env,
    random_policy_return,
    rollouts,
)

CHECKPOINT_NAME = "checkpoint"  # a suite.checkpoint directory (safetensors + JSON; no pickle)
SNAPSHOT_DIR = "snapshots"


# ---------------------------------------------------------------- environments


def _wrappers(env: gym.Env):
    w = env
    while True:
        yield w
        if not hasattr(w, "env"):
            return
        w = w.env


def _env_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue an episode exactly: the simulator state (MuJoCo's full integration state,
    including the solver warm start, or a classic-control `state`), the time-limit counter and the env's
    RNG."""
    u = env.unwrapped
    state: dict[str, Any] = {"np_random": copy.deepcopy(u.np_random.bit_generator.state)}
    state["elapsed_steps"] = [getattr(w, "_elapsed_steps", None) for w in _wrappers(env)]
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(u.model, spec))
        mujoco.mj_getState(u.model, u.data, buf, spec)
        state["mujoco"] = buf
    elif hasattr(u, "state"):
        state["state"] = copy.deepcopy(u.state)
    else:
        raise TypeError(f"don't know how to checkpoint the state of {type(u).__name__}")
    return state


def _set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    u = env.unwrapped
    u.np_random.bit_generator.state = state["np_random"]
    for w, elapsed in zip(_wrappers(env), state["elapsed_steps"], strict=True):
        if elapsed is not None:
            w._elapsed_steps = elapsed
    if "mujoco" in state:
        import mujoco

        mujoco.mj_setState(u.model, u.data, state["mujoco"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(u.model, u.data)
    else:
        u.state = copy.deepcopy(state["state"])


# ---------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Preallocated float32 transition arrays (keys as in `agents.base.BATCH_KEYS`), a ring of `capacity`."""

    KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")

    def __init__(self, obs_dim: int, action_dim: int, capacity: int):
        self.capacity = capacity
        self.arrays = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, action_dim), np.float32),
            "rewards": np.zeros((capacity,), np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros((capacity,), np.float32),
        }
        self.size = 0
        self.ptr = 0

    def add(self, obs, action, reward: float, next_obs, terminal: bool) -> None:
        i = self.ptr
        a = self.arrays
        a["observations"][i] = obs
        a["actions"][i] = action
        a["rewards"][i] = reward
        a["next_observations"][i] = next_obs
        a["terminals"][i] = float(terminal)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {k: torch.from_numpy(v[idx]) for k, v in self.arrays.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "ptr": self.ptr,
            "capacity": self.capacity,
            **{k: v[: self.size].copy() for k, v in self.arrays.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size, ptr = state["size"], state["ptr"]
        # checkpoints without "capacity" (the first runs): the ring was full exactly when ptr wrapped to 0
        old_capacity = state.get("capacity", size if ptr == 0 else None)
        wrapped = size == old_capacity
        if old_capacity == self.capacity or (not wrapped and size <= self.capacity):
            # same layout (sampling stays exact) or a ring that never wrapped
            self.size = size
            self.ptr = ptr if old_capacity == self.capacity else size % self.capacity
            for k in self.KEYS:
                self.arrays[k][:size] = state[k]
            return
        # another capacity (a run extended to a longer budget): oldest-first order, keep the newest
        order = (np.arange(size) + ptr) % size if wrapped else np.arange(size)
        order = order[-self.capacity :]
        self.size = len(order)
        self.ptr = self.size % self.capacity
        for k in self.KEYS:
            self.arrays[k][: self.size] = state[k][order]


# ---------------------------------------------------------------- evaluation


# ---------------------------------------------------------------- training


class _Progress:
    """tqdm when installed; otherwise a plain line every `every` steps (works under nohup)."""

    def __init__(self, total: int, initial: int, enabled: bool, every: int = 5000):
        self.bar = None
        self.enabled, self.every, self.n, self.total = enabled, every, initial, total
        self.t0, self.n0 = time.time(), initial
        self.postfix: dict[str, str] = {}
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", mininterval=10, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.n % self.every == 0:
            rate = (self.n - self.n0) / max(time.time() - self.t0, 1e-9)
            extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
            print(f"step {self.n}/{self.total} {rate:.1f} steps/s {extra}", file=sys.stderr, flush=True)

    def set_postfix(self, **kv: Any) -> None:
        self.postfix = {k: str(v) for k, v in kv.items()}
        if self.bar is not None:
            self.bar.set_postfix(kv, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from .checkpoint import save_checkpoint

    save_checkpoint(path, state)  # atomic (temporary directory renamed into place)


def _has_ck(path: Path) -> bool:
    from .checkpoint import has_checkpoint

    return has_checkpoint(path)


def _load_ck(path: Path) -> dict[str, Any]:
    from .checkpoint import load_checkpoint

    return load_checkpoint(path)


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{step:07d}.safetensors"


def train_sac(
    env_id: str,
    total_steps: int,
    seed: int,
    out_dir: str | Path,
    *,
    config: SACConfig = SACConfig(),
    start_steps: int = 5000,
    eval_every: int = 10_000,
    eval_episodes: int = 10,
    snapshot_every: int = 10_000,
    checkpoint_every: int = 20_000,
    log_every: int = 1000,
    buffer_size: int = 1_000_000,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> SAC:
    """Train SAC on `env_id` for `total_steps` environment steps (one update per step once `start_steps`
    uniform-random steps have been collected). Writes under `out_dir`: `run.json` (arguments, config,
    command), `tb/` (tensorboard scalars), `snapshots/step_XXXXXXX.safetensors` (actor only, every
    `snapshot_every` steps), `checkpoint/` (every `checkpoint_every` steps and at the end; safetensors + JSON, written
    atomically). With `resume=True` the run continues from `checkpoint/` and reproduces the uninterrupted
    run exactly; `total_steps` may then be larger than the original budget to extend a finished run.
    SIGTERM or SIGINT stops the run after the current step with a checkpoint written.

    Seeding: torch's global generator (network init and the policy's action noise) from `seed`, the replay
    sampler from `seed`, the env by `reset(seed=seed)` once (later resets continue its generator) and the
    action space (the uniform warm-up actions) by `action_space.seed(seed)`. Time-limit truncations are not
    stored as terminals."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME

    env = make_env(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    action_dim = int(np.prod(env.action_space.shape))

    torch.manual_seed(seed)
    agent = SAC(config, obs_dim, action_dim)
    buffer = ReplayBuffer(obs_dim, action_dim, min(buffer_size, max(total_steps, 1)))
    sample_rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    step = 0
    episode = {"return": 0.0, "length": 0, "count": 0, "last_return": float("nan")}
    last_eval = float("nan")

    run_info = {
        "env_id": env_id,
        "seed": seed,
        "total_steps": total_steps,
        "start_steps": start_steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "snapshot_every": snapshot_every,
        "checkpoint_every": checkpoint_every,
        "buffer_size": buffer_size,
        "config": config_dict(config),
        "implementation": SAC.IMPLEMENTATION,
        "command": command or " ".join([os.path.basename(sys.executable), *sys.argv]),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
    }

    from .checkpoint import has_checkpoint, load_checkpoint

    if resume and has_checkpoint(ckpt_path):
        ck = load_checkpoint(ckpt_path)
        if ck["env_id"] != env_id or ck["seed"] != seed:
            raise ValueError(
                f"checkpoint {ckpt_path} is for {ck['env_id']} seed {ck['seed']}, not {env_id} seed {seed}"
            )
        if ck["step"] > total_steps:
            raise ValueError(f"checkpoint is at step {ck['step']}, beyond total_steps={total_steps}")
        agent.load_state_dict(ck["agent"])
        if buffer.capacity < ck["buffer"]["size"]:
            buffer = ReplayBuffer(obs_dim, action_dim, min(buffer_size, total_steps))
        buffer.load_state_dict(ck["buffer"])
        torch.set_rng_state(ck["torch_rng"])
        sample_rng.bit_generator.state = ck["sample_rng"]
        env.action_space.np_random.bit_generator.state = ck["action_space_rng"]
        _set_env_state(env, ck["env"])
        obs = ck["obs"]
        step, episode, last_eval = ck["step"], ck["episode"], ck["last_eval"]
        info_path = out / "run.json"
        if info_path.exists():  # keep the original command; note each resume
            previous = json.loads(info_path.read_text())
            if previous.get("implementation") != SAC.IMPLEMENTATION:
                raise ValueError(
                    f"{out} was trained by {previous.get('implementation', 'an earlier SAC (sac/1)')}, this "
                    f"code is {SAC.IMPLEMENTATION}: a resumed run would mix two numerics; start a new --out"
                )
            previous.setdefault("resumes", []).append(
                {"from_step": step, "total_steps": total_steps, "command": run_info["command"]}
            )
            previous["total_steps"] = total_steps
            run_info = previous
    elif not resume and has_checkpoint(ckpt_path):
        raise FileExistsError(
            f"{ckpt_path} exists: pass resume=True to continue it or choose another out_dir"
        )
    (out / "run.json").write_text(json.dumps(run_info, indent=2, sort_keys=True))

    writer = SummaryWriter(str(out / "tb"), purge_step=step if step > 0 else None)
    bar = _Progress(total_steps, step, progress)
    metrics: dict[str, torch.Tensor] = {}
    t_last, step_last = time.time(), step

    def checkpoint() -> None:
        _save_checkpoint(
            ckpt_path,
            {
                "env_id": env_id,
                "seed": seed,
                "step": step,
                "agent": agent.state_dict(),
                "buffer": buffer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "sample_rng": copy.deepcopy(sample_rng.bit_generator.state),
                "action_space_rng": copy.deepcopy(env.action_space.np_random.bit_generator.state),
                "env": _env_state(env),
                "obs": np.array(obs, copy=True),
                "episode": dict(episode),
                "last_eval": last_eval,
            },
        )

    # SIGTERM / SIGINT: finish the current step, write a checkpoint, stop (so a later `resume` loses nothing)
    stop_requested: list[int] = []
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[sig] = signal.signal(sig, lambda signum, frame: stop_requested.append(signum))

    try:
        while step < total_steps:
            if step < start_steps:
                action = env.action_space.sample()
            else:
                x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
                action = agent.sample_action(x)[0].numpy()
            next_obs, reward, terminated, truncated, _ = env.step(action.astype(np.float64))
            buffer.add(obs, action, reward, next_obs, terminated)  # truncation is not a terminal
            episode["return"] += float(reward)
            episode["length"] += 1
            if terminated or truncated:
                episode["count"] += 1
                episode["last_return"] = episode["return"]
                writer.add_scalar("train/episode_return", episode["return"], step + 1)
                writer.add_scalar("train/episode_length", episode["length"], step + 1)
                episode["return"], episode["length"] = 0.0, 0
                obs, _ = env.reset()
            else:
                obs = next_obs
            if step >= start_steps:
                metrics = agent.update(buffer.sample(sample_rng, config.batch_size))
            step += 1
            bar.update(1)

            if step % log_every == 0:
                now = time.time()
                sps = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                writer.add_scalar("time/steps_per_second", sps, step)
                for k, v in metrics.items():  # the only host synchronisation of the loop
                    writer.add_scalar(f"train/{k}", float(v), step)
                bar.set_postfix(
                    ret=f"{episode['last_return']:.0f}", eval=f"{last_eval:.0f}", sps=f"{sps:.0f}"
                )
            if eval_every and step % eval_every == 0:
                result = evaluate_policy(
                    agent.actor, env_id, eval_episodes, seed=10_000 + seed, deterministic=True
                )
                last_eval = result["mean"]
                writer.add_scalar("eval/return_deterministic", result["mean"], step)
                score = d4rl_normalized_score(env_id, result["mean"])
                if score is not None:
                    writer.add_scalar("eval/d4rl_normalized_score", score, step)
            if snapshot_every and step % snapshot_every == 0:
                save_behaviour_policy(
                    agent.actor,
                    snapshot_path(out, step),
                    {"env_id": env_id, "env_steps": str(step), "seed": str(seed), "algorithm": "sac"},
                )
            if (checkpoint_every and step % checkpoint_every == 0) or step == total_steps:
                checkpoint()
            elif stop_requested:
                checkpoint()
            if stop_requested:
                print(
                    f"stopped by signal {stop_requested[0]} at step {step}; checkpoint written",
                    file=sys.stderr,
                )
                break
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        writer.close()
        bar.close()
        env.close()
    return agent


# ---------------------------------------------------------------- level selection


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _summary(env_id: str, result: dict[str, Any]) -> dict[str, Any]:
    score = d4rl_normalized_score(env_id, result["mean"])
    return {
        "return_mean": round(result["mean"], 3),
        "return_std": round(result["std"], 3),
        "episodes": result["episodes"],
        "seed": result["seed"],
        "actions": "deterministic" if result["deterministic"] else "stochastic",
        "d4rl_normalized_score": None if score is None else round(score, 3),
    }


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
    over `final_episodes` episodes)."""
    run = Path(run_dir)
    info = json.loads((run / "run.json").read_text())
    env_id = env_id or info["env_id"]
    if env_id != info["env_id"]:
        raise ValueError(f"run {run} trained {info['env_id']}, not {env_id}")
    snaps = sorted((run / SNAPSHOT_DIR).glob("step_*.safetensors"))
    if not snaps:
        raise FileNotFoundError(f"no snapshots under {run / SNAPSHOT_DIR}")
    step_of = {p: int(read_behaviour_metadata(p)["env_steps"]) for p in snaps}
    last_step = max(step_of.values())
    ckpt = run / CHECKPOINT_NAME
    steps_reached = (
        max(last_step, int(_load_ck(ckpt)["step"])) if _has_ck(ckpt) else last_step
    )

    def log(msg: str) -> None:
        if progress:
            print(f"[select {env_id}] {msg}", file=sys.stderr, flush=True)

    def evaluate(path: Path, episodes: int, deterministic: bool = False) -> dict[str, Any]:
        return evaluate_policy(load_behaviour_policy(path), env_id, episodes, eval_seed, deterministic)

    screen = {}
    for p in snaps:
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
    before = [p for p in snaps if step_of[p] <= step_of[expert]]
    near = sorted(before, key=lambda p: abs(screen[p] - target))[:n_candidates]
    medium = min(near, key=lambda p: abs(final_eval(p)["mean"] - target))
    upto = [p for p in snaps if step_of[p] <= step_of[medium]]
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

    def ship(
        src: Path, dst: Path, level: str, stochastic: dict[str, Any], extra: dict[str, Any]
    ) -> dict[str, Any]:
        shutil.copyfile(src, dst)
        manifest = {
            "env_id": env_id,
            "level": level,
            "file": dst.name,
            "sha256": _sha256(dst),
            "env_steps": step_of[src],
            "training": {
                "algorithm": "SAC (agents/sac.py)",
                "implementation": info.get("implementation", "sac/1 (before 2026-12-02)"),
                "command": info["command"],
                "seed": info["seed"],
                "config": info["config"],
                "steps_reached": steps_reached,
                "planned_total_steps": planned,
                "resumes": info.get("resumes", []),
            },
            "evaluation": _summary(env_id, stochastic),
            "ranking": "stochastic-action return (datasets are collected with stochastic actions, like D4RL)",
            **extra,
        }
        dst.with_suffix(".json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest

    det = {p: evaluate(p, deterministic_episodes, deterministic=True) for p in (expert, medium)}
    out: dict[str, Any] = {}
    out["expert"] = ship(
        expert,
        dest / "expert.safetensors",
        "expert",
        final[expert],
        {"evaluation_deterministic": _summary(env_id, det[expert]), "note": budget_note},
    )
    out["medium"] = ship(
        medium,
        dest / "medium.safetensors",
        "medium",
        final[medium],
        {
            "evaluation_deterministic": _summary(env_id, det[medium]),
            "target_return": round(target, 3),
            "note": f"medium = snapshot whose return is closest to 1/3 of this expert's ({budget_note})",
        },
    )
    replay = []
    for p in upto:
        res = final[p] if p in final and replay_episodes == final_episodes else evaluate(p, replay_episodes)
        replay.append(
            ship(
                p,
                dest / "replay" / p.name,
                "medium-replay",
                res,
                {"note": "one of the snapshots from the start of training up to `medium` (inclusive)"},
            )
        )
        log(f"replay {p.name}: {res['mean']:.1f}")
    (dest / "replay" / "index.json").write_text(
        json.dumps(
            {
                "env_id": env_id,
                "files": [m["file"] for m in replay],
                "env_steps": [m["env_steps"] for m in replay],
                "medium_env_steps": step_of[medium],
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
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
    (dest / "reference.json").write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
    out["reference"] = reference
    log(
        f"expert {expert.name} {expert_return:.1f}, medium {medium.name} {final[medium]['mean']:.1f}, "
        f"random {rand['mean']:.1f}, {len(replay)} replay snapshots"
    )
    return out


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m suite.behaviour", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train SAC and write snapshots/checkpoints")
    t.add_argument("env")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--start-steps", type=int, default=5000)
    t.add_argument("--eval-every", type=int, default=10_000)
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--snapshot-every", type=int, default=10_000)
    t.add_argument("--checkpoint-every", type=int, default=20_000)
    t.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    t.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("select", help="pick expert/medium/medium-replay policies from a run's snapshots")
    s.add_argument("env")
    s.add_argument("--run", required=True)
    s.add_argument("--dest", default=str(POLICY_ROOT))
    s.add_argument("--screen-episodes", type=int, default=5)
    s.add_argument("--final-episodes", type=int, default=100)
    s.add_argument("--replay-episodes", type=int, default=20)
    s.add_argument("--deterministic-episodes", type=int, default=20)
    s.add_argument("--candidates", type=int, default=2)
    s.add_argument("--max-replay", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cmd == "train":
        cmd = (
            f"python -m suite.behaviour train {args.env} --steps {args.steps} --seed {args.seed} "
            f"--out {args.out} --start-steps {args.start_steps} --eval-every {args.eval_every} "
            f"--eval-episodes {args.eval_episodes} --snapshot-every {args.snapshot_every} "
            f"--checkpoint-every {args.checkpoint_every}"
        )
        train_sac(
            args.env,
            args.steps,
            args.seed,
            args.out,
            start_steps=args.start_steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            snapshot_every=args.snapshot_every,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            progress=not args.no_progress,
            command=cmd,
        )
    else:
        result = select_levels(
            args.run,
            args.env,
            dest_root=args.dest,
            screen_episodes=args.screen_episodes,
            final_episodes=args.final_episodes,
            replay_episodes=args.replay_episodes,
            deterministic_episodes=args.deterministic_episodes,
            n_candidates=args.candidates,
            max_replay=args.max_replay,
        )
        summary = {k: v["evaluation"] for k, v in result.items() if k in ("expert", "medium")}
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
