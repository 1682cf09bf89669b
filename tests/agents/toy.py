"""A tiny, fast control problem with a known answer, for agent learning tests.

PointGoal: a point in [-2, 2]^2 moves by 0.1 * action (action in [-1, 1]^2) towards a fixed goal at (1, 1);
reward = -distance to the goal after the move; 40 steps, no terminals. The optimal policy heads straight for
the goal. `make_dataset` mixes expert episodes (noisy goal-seeking) with uniform-random ones, so plain BC is
pulled towards the random half while value-weighted methods can pick out the good actions.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

GOAL = np.array([1.0, 1.0], dtype=np.float32)
HORIZON = 40
OBS_DIM, ACT_DIM = 2, 2


def step(pos: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nxt = np.clip(pos + 0.1 * np.clip(action, -1, 1), -2, 2).astype(np.float32)
    return nxt, -np.linalg.norm(nxt - GOAL, axis=-1).astype(np.float32)


def expert_action(pos: np.ndarray, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    direction = (GOAL - pos) / 0.1
    return np.clip(direction + noise * rng.standard_normal(pos.shape), -1, 1).astype(np.float32)


def make_dataset(n_expert: int, n_random: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Transition arrays (BATCH_KEYS) and per-transition episode-end flags."""
    rng = np.random.default_rng(seed)
    obs, act, rew, nxt, ends = [], [], [], [], []
    for kind in ["expert"] * n_expert + ["random"] * n_random:
        pos = rng.uniform(-1, 1, 2).astype(np.float32)
        for t in range(HORIZON):
            a = expert_action(pos, rng) if kind == "expert" else rng.uniform(-1, 1, 2).astype(np.float32)
            new, r = step(pos, a)
            obs.append(pos), act.append(a), rew.append(r), nxt.append(new), ends.append(t == HORIZON - 1)
            pos = new
    arrays = {
        "observations": np.stack(obs),
        "actions": np.stack(act),
        "rewards": np.array(rew, dtype=np.float32),
        "next_observations": np.stack(nxt),
        "terminals": np.zeros(len(rew), dtype=np.float32),
    }
    return arrays, np.array(ends)


def evaluate(act, episodes: int = 20, seed: int = 123) -> float:
    """Mean undiscounted return of `act(obs_tensor) -> action_tensor` from fixed start states."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1, 1, (episodes, 2)).astype(np.float32)
    total = np.zeros(episodes)
    for _ in range(HORIZON):
        with torch.no_grad():
            a = act(torch.as_tensor(pos)).cpu().numpy()
        pos, r = step(pos, a)
        total += r
    return float(total.mean())


def random_return(episodes: int = 20, seed: int = 123) -> float:
    rng = np.random.default_rng(seed + 1)
    return evaluate(lambda o: torch.as_tensor(rng.uniform(-1, 1, o.shape).astype(np.float32)), episodes, seed)


def expert_return(episodes: int = 20, seed: int = 123) -> float:
    rng = np.random.default_rng(seed + 2)
    return evaluate(lambda o: torch.as_tensor(expert_action(o.numpy(), rng, noise=0.0)), episodes, seed)


def train(agent, arrays: dict[str, np.ndarray], steps: int, batch_size: int = 256, seed: int = 0) -> None:
    """Plain uniform-sampling training loop (the suite's runner does the same with more bookkeeping)."""
    torch.manual_seed(seed)
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    n = len(tensors["rewards"])
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=g)
        agent.update({k: v[idx] for k, v in tensors.items()})


def random_batch(obs_dim: int, act_dim: int, n: int = 32, seed: int = 0, dtype: torch.dtype | None = None,
                 action_low: float = -1.0, action_high: float = 1.0, terminal_prob: float = 0.2,
                 terminal_every: int | None = None) -> dict[str, torch.Tensor]:
    """A random transition batch (BATCH_KEYS) from its own generator: Gaussian observations and rewards,
    actions uniform in [action_low, action_high); terminals with probability `terminal_prob`, or (no draw)
    every `terminal_every`-th transition. dtype None: the default dtype. Draw order: observations, actions,
    rewards, next observations, terminals."""
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.get_default_dtype()
    batch = {
        "observations": torch.randn(n, obs_dim, generator=g, dtype=dtype),
        "actions": torch.rand(n, act_dim, generator=g, dtype=dtype) * (action_high - action_low) + action_low,
        "rewards": torch.randn(n, generator=g, dtype=dtype),
        "next_observations": torch.randn(n, obs_dim, generator=g, dtype=dtype),
    }
    if terminal_every is None:
        batch["terminals"] = (torch.rand(n, generator=g) < terminal_prob).to(dtype)
    else:
        batch["terminals"] = (torch.arange(n) % terminal_every == 0).to(dtype)
    return batch


def round_trip(state: dict) -> dict:
    """A state dict through torch.save / torch.load (what a checkpoint does to it)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def assert_continues_identically(a, b, batches, modules=(), torch_seed: int = 50) -> None:
    """`b` (loaded from `a`'s state dict) acts like `a` and, on the same `batches` with the global generator
    reset to the same seed before each update, returns the same metrics; afterwards the named `modules`
    (e.g. target networks, which `act` does not show) hold the same tensors and both still act alike."""
    obs = torch.randn(6, a.obs_dim)
    assert torch.equal(a.act(obs), b.act(obs))
    for t, batch in enumerate(batches):
        torch.manual_seed(torch_seed + t)
        ma = a.update(batch)
        torch.manual_seed(torch_seed + t)
        mb = b.update(batch)
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), k
    for name in modules:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
    assert torch.equal(a.act(obs), b.act(obs))


def per_task_configs(method: str, config_cls) -> list[tuple[str, object]]:
    """(task id without version, resolved config) for every committed `agents/configs/<method>/**/*.json`
    (keys starting with '_' are comments); resolving raises on unknown keys or invalid values."""
    from agents.base import config_from_dict

    root = Path(__file__).resolve().parents[2] / "agents" / "configs" / method
    out = []
    for f in sorted(root.rglob("*.json")):
        values = {k: v for k, v in json.loads(f.read_text()).items() if not k.startswith("_")}
        out.append((f.relative_to(root).with_suffix("").as_posix(), config_from_dict(config_cls, values)))
    return out


def fit(agent_cls, cfg, n_expert: int, n_random: int, steps: int, *, batch_size: int = 128,
        normalize_observations: bool = True, reward_transform: str | None = None, seed: int = 0):
    """An agent trained on a PointGoal dataset (`make_dataset(n_expert, n_random)`) prepared as the agent's
    config says (observation normalisation as given, `reward_transform` or the config's), global seed 0."""
    from agents.base import prepare_data

    arrays, ends = make_dataset(n_expert, n_random, seed=seed)
    prep = prepare_data(arrays, normalize_observations=normalize_observations,
                        reward_transform=reward_transform or cfg.reward_transform, episode_ends=ends)
    torch.manual_seed(seed)
    agent = agent_cls(cfg, OBS_DIM, ACT_DIM, obs_mean=prep.obs_mean, obs_std=prep.obs_std)
    train(agent, prep.arrays, steps, batch_size=batch_size, seed=seed)
    return agent
