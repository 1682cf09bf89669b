"""The agent interface every offline-RL / imitation agent implements, and the data preparation they share.

An agent is built from a frozen config dataclass plus the dimensions of the task:

    agent = AgentClass(config, obs_dim, action_dim, obs_mean=..., obs_std=..., device="cpu")
    metrics = agent.update(batch)      # batch: dict of float32 tensors, see BATCH_KEYS
    action = agent.act(obs)            # obs: raw environment observations (B, obs_dim) -> actions (B, act_dim)
    agent.state_dict() / agent.load_state_dict(sd)

`update` returns a dict of *detached 0-d tensors* (never floats): turning them into Python numbers forces a
host synchronisation, so the runner does that only when it logs. Actions live in [-1, 1] (the MuJoCo tasks'
bounds); `act` is deterministic. Agents do no seeding, logging, environment or file I/O: the runner owns those
and seeds torch's global generator, which agents draw from.

Observation normalisation and reward transforms are part of an agent's config (`normalize_observations`,
`reward_transform`) because the papers tie them to the method; `prepare_data` applies them once to the whole
dataset, and the agent keeps the observation statistics (in its state dict) to normalise at `act` time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch

from .nets import ObsNormalizer

BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")
"""Keys of a training batch: (B, obs_dim), (B, act_dim), (B,), (B, obs_dim), (B,) float32; terminals are 1.0
only for true environment terminations (time-limit truncations are not terminals)."""

REWARD_TRANSFORMS = ("none", "return_range", "antmaze", "zero")
"""`return_range`: r * 1000 / (max episode return - min episode return) (IQL, O-DICE on MuJoCo);
`antmaze`: r - 1 (IQL) ; `zero`: rewards removed (offline imitation)."""


class Agent(Protocol):
    config: Any

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def act(self, obs: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateful:
    """`state_dict` / `load_state_dict` from declared attribute names, one spelling for every agent (and SAC):
    ``STATE_PARTS`` have their own state dict (modules, optimisers, the observation normaliser),
    ``STATE_TENSORS`` are bare tensors (log-temperatures; loaded by an in-place copy, so optimisers keep
    pointing at them) and ``STATE_INTS`` are Python counters. Loaded optimiser states are deep-copied, so two
    agents loaded from one state never share Adam moments."""

    STATE_PARTS: tuple[str, ...] = ()
    STATE_TENSORS: tuple[str, ...] = ()
    STATE_INTS: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {n: getattr(self, n).state_dict() for n in self.STATE_PARTS}
        state.update({n: getattr(self, n).detach().clone() for n in self.STATE_TENSORS})
        state.update({n: getattr(self, n) for n in self.STATE_INTS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n in self.STATE_PARTS:
            part = getattr(self, n)
            part.load_state_dict(copy.deepcopy(state[n]) if isinstance(part, torch.optim.Optimizer) else state[n])
        with torch.no_grad():
            for n in self.STATE_TENSORS:
                getattr(self, n).copy_(state[n])
        for n in self.STATE_INTS:
            setattr(self, n, int(state[n]))


class OfflineAgent(Stateful):
    """What every offline agent here shares: its config, the task's dimensions, the device and the dataset's
    observation statistics (an `ObsNormalizer`, saved in the state dict). Subclasses build their networks
    after calling this constructor and implement `update`, `act`, `state_dict`, `load_state_dict`.

    `NUMERICS` numbers the agent's arithmetic: bump it in a change that moves the agent's numbers on purpose (a
    formula written differently, a fixed bug) — `tests/suite/test_pinned_records.py` fails until the pin is
    regenerated. Records carry it (provenance "numerics"), and `suite audit` demands bit-identical curves only
    from a record with the same machine class *and* the same NUMERICS; across a bump it compares within the
    cross-machine tolerance and says why."""

    NUMERICS = 1

    def __init__(self, config, obs_dim: int, action_dim: int, *, obs_mean=None, obs_std=None,
                 device: str | torch.device = "cpu"):
        self.config = config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.device = torch.device(device)
        self.obs_norm = ObsNormalizer(obs_dim, obs_mean, obs_std).to(self.device)

    def policy_input(self, obs) -> torch.Tensor:
        """Raw environment observations as the policy sees them: a tensor on the agent's device, normalised
        with the dataset statistics when the config says `normalize_observations`."""
        obs = torch.as_tensor(obs, dtype=self.obs_norm.mean.dtype, device=self.device)
        return self.obs_norm(obs) if self.config.normalize_observations else obs


@dataclass(frozen=True)
class PreparedData:
    """Transition arrays after the agent's data preparation (float32 numpy), plus observation statistics."""

    arrays: dict[str, np.ndarray]
    obs_mean: np.ndarray | None
    obs_std: np.ndarray | None


def episode_returns(rewards: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """Undiscounted returns of the episodes delimited by `episode_ends` (terminal or timeout flags)."""
    ends = np.flatnonzero(episode_ends)
    if len(ends) == 0 or ends[-1] != len(rewards) - 1:  # a trailing unfinished episode still counts
        ends = np.append(ends, len(rewards) - 1)
    sums = np.add.reduceat(rewards.astype(np.float64), np.concatenate([[0], ends[:-1] + 1]))
    return sums


def prepare_data(
    arrays: dict[str, np.ndarray],
    *,
    normalize_observations: bool,
    reward_transform: str,
    episode_ends: np.ndarray | None = None,
    eps: float = 1e-3,
) -> PreparedData:
    """Apply an agent's observation normalisation and reward transform to a whole dataset, once."""
    if reward_transform not in REWARD_TRANSFORMS:
        raise ValueError(f"unknown reward_transform {reward_transform!r}; expected one of {REWARD_TRANSFORMS}")
    out = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    rewards = out["rewards"]
    if reward_transform == "return_range":
        if episode_ends is None:
            raise ValueError("reward_transform='return_range' needs episode_ends")
        rets = episode_returns(rewards, episode_ends)
        spread = float(rets.max() - rets.min())
        if spread <= 0:
            raise ValueError("reward_transform='return_range': all episodes have the same return")
        out["rewards"] = (rewards * (1000.0 / spread)).astype(np.float32)
    elif reward_transform == "antmaze":
        out["rewards"] = (rewards - 1.0).astype(np.float32)
    elif reward_transform == "zero":
        out["rewards"] = np.zeros_like(rewards)
    mean = std = None
    if normalize_observations:
        mean = out["observations"].mean(0)
        std = out["observations"].std(0) + eps
        out["observations"] = ((out["observations"] - mean) / std).astype(np.float32)
        out["next_observations"] = ((out["next_observations"] - mean) / std).astype(np.float32)
    return PreparedData(out, mean, std)


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, rejecting unknown keys with the list of valid ones."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise KeyError(f"unknown config key(s) {unknown} for {cls.__name__}; valid keys: {sorted(valid)}")
    return cls(**values)
