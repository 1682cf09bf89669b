"""Flat transition arrays from a Minari dataset, and uniform batch sampling as torch tensors on a device.

Terminals are true environment terminations only: time-limit truncations are not terminals (the value of
s' is bootstrapped there). `episode_ends` marks the last transition of every episode (terminated or
truncated), which agents use e.g. for return-range reward scaling.
"""

from __future__ import annotations

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
