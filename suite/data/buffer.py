"""Transition buffers: flat arrays from a Minari dataset with uniform batch sampling as torch tensors on a
device (`TransitionBuffer`, offline agents), and the ring an online agent fills as it goes (`ReplayBuffer`,
behaviour-policy SAC).

Terminals are true environment terminations only: time-limit truncations are not terminals (the value of
s' is bootstrapped there). `episode_ends` marks the last transition of every episode (terminated or
truncated), which agents use e.g. for return-range reward scaling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def transitions_from_episodes(episodes, *, n_trajectories: int | None = None, remove_rewards: bool = False):
    """(arrays, episode_ends): arrays has observations, actions, rewards, next_observations, terminals."""
    obs, act, rew, nxt, term, ends = [], [], [], [], [], []
    for i, ep in enumerate(episodes):
        if n_trajectories is not None and i >= n_trajectories:
            break
        o = np.asarray(ep.observations, dtype=np.float32)
        n = len(ep.rewards)
        obs.append(o[:-1]), nxt.append(o[1:])
        act.append(np.asarray(ep.actions, dtype=np.float32))
        rew.append(np.asarray(ep.rewards, dtype=np.float32))
        term.append(np.asarray(ep.terminations, dtype=np.float32))
        e = np.zeros(n, dtype=bool)
        e[-1] = True
        ends.append(e)
    if not obs:
        raise ValueError("dataset has no episodes")
    arrays = {
        "observations": np.concatenate(obs),
        "actions": np.concatenate(act),
        "rewards": np.concatenate(rew),
        "next_observations": np.concatenate(nxt),
        "terminals": np.concatenate(term),
    }
    if remove_rewards:
        arrays["rewards"] = np.zeros_like(arrays["rewards"])
    return arrays, np.concatenate(ends)


class TransitionBuffer:
    """All transitions as tensors on one device; `sample` draws uniform indices from an explicit generator."""

    def __init__(self, arrays: dict[str, np.ndarray], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.tensors = {
            k: torch.as_tensor(np.asarray(v, dtype=np.float32), device=self.device) for k, v in arrays.items()
        }
        self.size = len(self.tensors["rewards"])

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        if idx.device != self.device:
            idx = idx.to(self.device)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}


class ReplayBuffer:
    """Preallocated float32 transition arrays (keys as in `agents.base.BATCH_KEYS`), a ring of `capacity` filled
    online (behaviour-policy SAC); `sample` draws uniform indices from a NumPy generator. Its state goes into a
    `suite.checkpoint`, and a checkpoint resumes into a ring of another capacity keeping the newest transitions."""

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
