"""Train SAC online on a Gymnasium MuJoCo task for behaviour policies: policy snapshots to select the dataset
levels from (`select`), tensorboard scalars, periodic evaluation, and checkpoints.

`train_sac` owns seeding, the replay buffer, logging (tensorboard + progress bar), periodic evaluation,
policy snapshots and checkpoints; a checkpoint holds everything the loop needs (agent and optimiser state,
every random generator, the replay buffer and the simulator state), so a resumed run is bit-identical to an
uninterrupted one."""

from __future__ import annotations

import copy
import json
import os
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

from ..checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from ..data.buffer import ReplayBuffer
from ..errors import RunMismatchError, SuiteError
from ..evaluation import d4rl_normalized_score, evaluate_policy, make_env
from .envstate import env_state, set_env_state
from .layout import CHECKPOINT_NAME, snapshot_path


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
    init_actor: str | Path | None = None,
    critic_warmup: int = 0,
    prefill_noise: tuple[float, ...] = (),
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
    stored as terminals.

    Continuing from a shipped policy (`init_actor`, a behaviour-policy file of this environment): the actor
    starts from its weights, the `start_steps` warm-up steps are collected with its stochastic actions instead
    of uniform ones, and before the first SAC update `critic_warmup` critic-only updates (`SAC.update_critic`:
    actor and temperature frozen, target EMA on) fit the fresh critics to that actor on its own on-policy data,
    so the first actor steps follow a critic of the policy they improve. `prefill_noise` widens the actions the
    critics see there: warm-up episode k adds Gaussian noise of std `prefill_noise[k % len]` to the policy's
    action (clipped to the action bounds). Without it the critics see only the policy's own narrow actions, and
    the first actor updates chase their extrapolation: measured on HalfCheetah-v5 (2026-12-07), returns fell from
    9.7k to below 0 within 1000 updates and the entropy from -6.8 to -15. This is how a run longer than one
    session is made without its replay buffer (the one part of a checkpoint too large to keep): its actor
    lives on as a shipped policy file. `run.json` records the file, its sha256 and its training steps."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME

    env = make_env(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    action_dim = int(np.prod(env.action_space.shape))

    torch.manual_seed(seed)
    agent = SAC(config, obs_dim, action_dim)
    init_info = None
    if init_actor is not None:
        init_info = _load_init_actor(agent, init_actor, env_id)
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
        "torch_threads": torch.get_num_threads(),  # the float reduction order: a resume must keep it
        "gymnasium": gym.__version__,
    }
    if init_info is not None:
        run_info["init_actor"] = init_info
        run_info["critic_warmup"] = critic_warmup
        run_info["prefill_noise"] = list(prefill_noise)

    if resume and has_checkpoint(ckpt_path):
        ck = load_checkpoint(ckpt_path)
        if ck["env_id"] != env_id or ck["seed"] != seed:
            raise RunMismatchError(
                f"checkpoint {ckpt_path} is for {ck['env_id']} seed {ck['seed']}, not {env_id} seed {seed}"
            )
        if ck["step"] > total_steps:
            raise RunMismatchError(f"checkpoint is at step {ck['step']}, beyond total_steps={total_steps}")
        agent.load_state_dict(ck["agent"])
        if buffer.capacity < ck["buffer"]["size"]:
            buffer = ReplayBuffer(obs_dim, action_dim, min(buffer_size, total_steps))
        buffer.load_state_dict(ck["buffer"])
        torch.set_rng_state(ck["torch_rng"])
        sample_rng.bit_generator.state = ck["sample_rng"]
        env.action_space.np_random.bit_generator.state = ck["action_space_rng"]
        set_env_state(env, ck["env"])
        obs = ck["obs"]
        step, episode, last_eval = ck["step"], ck["episode"], ck["last_eval"]
        info_path = out / "run.json"
        if info_path.exists():  # keep the original command; note each resume
            previous = json.loads(info_path.read_text())
            if previous.get("implementation") != SAC.IMPLEMENTATION:
                raise RunMismatchError(
                    f"{out} was trained by {previous.get('implementation', 'an earlier SAC (sac/1)')}, this "
                    f"code is {SAC.IMPLEMENTATION}: a resumed run would mix two numerics; start a new --out"
                )
            if previous.get("torch_threads", run_info["torch_threads"]) != run_info["torch_threads"]:
                raise RunMismatchError(
                    f"{out} was trained with {previous['torch_threads']} torch thread(s), this process has "
                    f"{run_info['torch_threads']}: resume with --threads {previous['torch_threads']} (the thread "
                    "count changes the float reduction order, so the run would no longer be one run)"
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
        save_checkpoint(  # atomic (temporary directory renamed into place)
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
                "env": env_state(env),
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
            if step < start_steps and init_actor is None:
                action = env.action_space.sample()
            else:
                x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
                action = agent.sample_action(x)[0].numpy()
                if step < start_steps and prefill_noise:  # a continuation's warm-up: wider actions
                    std = prefill_noise[episode["count"] % len(prefill_noise)]
                    if std > 0:
                        noise = env.action_space.np_random.normal(0.0, std, action.shape)
                        action = np.clip(action + noise, -1.0, 1.0).astype(action.dtype)
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
            if step == start_steps and critic_warmup:
                _warm_up_critic(agent, buffer, sample_rng, critic_warmup, writer, step, progress)
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


def _load_init_actor(agent: SAC, path: str | Path, env_id: str) -> dict[str, Any]:
    """Load a behaviour-policy file into the agent's actor (same sizes and environment, else one clear error);
    what run.json records of it."""
    from ..data.store import sha256_file

    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"--init-actor {path}: no such file")
    meta = read_behaviour_metadata(path)
    if meta.get("env_id") not in (None, env_id):
        raise RunMismatchError(f"--init-actor {path} was trained on {meta['env_id']}, not {env_id}")
    policy = load_behaviour_policy(path)
    try:
        agent.actor.load_state_dict(policy.state_dict())
    except RuntimeError as e:
        raise RunMismatchError(f"--init-actor {path} does not fit this SAC actor ({str(e).splitlines()[0]})") from None
    return {"file": str(path), "sha256": sha256_file(path), "env_steps": meta.get("env_steps"),
            "env_id": meta.get("env_id")}


def _warm_up_critic(agent: SAC, buffer: ReplayBuffer, rng: np.random.Generator, n: int, writer: Any, step: int,
                    progress: bool) -> None:
    """`n` critic-only updates on the buffer (policy evaluation of the initial actor), logged under warmup/."""
    t0 = time.time()
    for i in range(1, n + 1):
        m = agent.update_critic(buffer.sample(rng, agent.config.batch_size))
        if i % 1000 == 0 or i == n:
            writer.add_scalar("warmup/critic_loss", float(m["critic_loss"]), i)
            writer.add_scalar("warmup/q_mean", float(m["q_mean"]), i)
            if progress and (i % 10_000 == 0 or i == n):
                print(f"critic warm-up {i}/{n} (at env step {step}): critic_loss {float(m['critic_loss']):.3g} "
                      f"q_mean {float(m['q_mean']):.1f} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
