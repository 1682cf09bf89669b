"""Every rollout of the suite, in one place: the runner's periodic evaluation of an agent (``Evaluator``:
vectorised copies, the same reset seeds at every call), behaviour-policy screening and level selection
(``evaluate_policy``, ``random_policy_return`` over ``rollouts``), the library API's ``Task.evaluate``, and the
action rescaling from a policy's [-1, 1] to an environment's bounds (``rescale_action``; dataset collection in
``suite.data.build`` uses it too). D4RL's reference returns live in ``suite.tasks.references``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.nets import TanhGaussianPolicy

from .tasks.references import D4RL_REFERENCE_RETURNS, d4rl_normalized_score

__all__ = ["rescale_action", "make_env", "Evaluator", "rollouts", "evaluate_policy", "random_policy_return",
           "D4RL_REFERENCE_RETURNS", "d4rl_normalized_score"]


def rescale_action(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [low, high], elementwise (the policies' tanh range to the environment's bounds)."""
    return low + (a + 1.0) * 0.5 * (high - low)


def make_env(env_id: str) -> gym.Env:
    """A Gymnasium env whose action space is [-1, 1]^d (rescaled if the task's bounds differ), so that the
    tanh policies' actions are valid as they are. The D4RL MuJoCo tasks already have [-1, 1] bounds."""
    env = gym.make(env_id)
    space = env.action_space
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
    return env


class Evaluator:
    """Deterministic-policy returns on `episodes` vectorised copies of the task's environment, same reset
    seeds at every call."""

    def __init__(self, env_id: str, episodes: int, seed: int):
        import gymnasium as gym

        # default (next-step) autoreset: an env that finished starts a new episode, which is ignored
        self.envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
        self.seeds = [1_000_000 + 1000 * seed + i for i in range(episodes)]
        space = self.envs.single_action_space
        self.low, self.high = space.low, space.high

    def __call__(self, act, device: torch.device) -> list[float]:
        obs, _ = self.envs.reset(seed=self.seeds)
        n = len(self.seeds)
        returns = np.zeros(n)
        done = np.zeros(n, dtype=bool)
        while not done.all():
            with torch.no_grad():
                a = act(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            a = rescale_action(np.clip(a, -1, 1), self.low, self.high)
            obs, rew, term, trunc, _ = self.envs.step(a)
            returns += np.where(done, 0.0, rew)
            done |= term | trunc
        return returns.tolist()

    def close(self):
        self.envs.close()


def rollouts(env_id: str, episodes: int, seed: int, num_envs: int, act) -> tuple[list[float], list[int]]:
    """Run `episodes` episodes (episode i from reset(seed=seed + i)), `num_envs` at a time, calling
    `act(obs_batch) -> action_batch` on the still-running ones only (finished episodes cost nothing)."""
    returns: list[float] = []
    lengths: list[int] = []
    for start in range(0, episodes, num_envs):
        n = min(num_envs, episodes - start)
        envs = [make_env(env_id) for _ in range(n)]
        obs = np.stack([e.reset(seed=seed + start + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
        ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
        active = np.arange(n)
        while active.size:
            actions = act(obs[active])
            finished = []
            for j, i in enumerate(active):
                o, r, term, trunc, _ = envs[i].step(actions[j])
                obs[i] = o
                ret[i] += float(r)
                length[i] += 1
                if term or trunc:
                    finished.append(i)
            if finished:
                active = np.setdiff1d(active, finished)
        for e in envs:
            e.close()
        returns += ret.tolist()
        lengths += length.tolist()
    return returns, lengths


@torch.no_grad()
def evaluate_policy(
    policy: TanhGaussianPolicy,
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    deterministic: bool = True,
    num_envs: int | None = None,
) -> dict[str, Any]:
    """Undiscounted returns of `episodes` episodes, episode i started from `reset(seed=seed + i)`.

    Stochastic actions are drawn under a forked torch RNG seeded with `seed`, so the result is reproducible
    and the caller's random stream is left untouched. Returns mean, std, and the per-episode returns and
    lengths."""
    was_training = policy.training
    policy.eval()

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs)
        action = policy.act(x) if deterministic else policy.sample(x)[0]
        return action.numpy().astype(np.float64)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        returns, lengths = rollouts(env_id, episodes, seed, min(episodes, num_envs or episodes), act)
    policy.train(was_training)
    arr = np.array(returns)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "episodes": episodes,
        "seed": seed,
        "deterministic": deterministic,
        "returns": returns,
        "lengths": lengths,
    }


def random_policy_return(env_id: str, episodes: int = 100, seed: int = 0) -> dict[str, Any]:
    """Return of the uniform-random policy (actions uniform in [-1, 1]^d), episode i from reset(seed+i)."""
    rng = np.random.default_rng(seed)
    act_dim = int(np.prod(make_env(env_id).action_space.shape))
    returns, _ = rollouts(
        env_id, episodes, seed, episodes, lambda obs: rng.uniform(-1, 1, (len(obs), act_dim))
    )
    arr = np.array(returns)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "episodes": episodes, "seed": seed}
