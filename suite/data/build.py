"""Rebuild D4RL-style datasets from behaviour policies, deterministically, as Minari datasets.

Recipe (`DatasetSpec`): for each behaviour policy in `spec.policies`, run it on `n_envs` copies of the
environment stepped in lockstep (`gymnasium.vector`, policy batched over the copies) until `steps`
transitions are collected. Actions are sampled stochastically from the policy (as D4RL did): uniform for
`random`, tanh-Gaussian for the shipped SAC policies, with noise from an explicit torch generator. Every
episode is reset with its own explicit seed derived from (dataset seed, policy name, env slot, episode
number), so the same command gives identical arrays on the same machine.

- `medium-expert` runs `medium` then `expert` with `steps` each and concatenates them (2x steps, as D4RL's
  2M-transition medium-expert): its arrays equal the medium dataset's followed by the expert dataset's.
- `medium-replay` (`replay`) rolls out the sequence of SAC snapshots from the start of training up to the
  medium policy, `steps / len(snapshots)` transitions each, in training order. D4RL stored the replay buffer
  itself (every transition the learner saw, with its exploration noise); ours re-collects from the saved
  snapshots, so it has the same spread of quality but fewer distinct policies and no start-up
  uniform-random phase.

Episodes cut by the step budget at the end are kept and marked truncated.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import MissingDatasetError
from ..tasks import DatasetSpec
from ..tasks.mujoco import POLICY_DIR
from . import store


def episode_seed(seed: int, policy: str, slot: int, episode: int) -> int:
    ss = np.random.SeedSequence([seed, zlib.crc32(policy.encode()), slot, episode])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def policy_files(env: str, name: str) -> list[Path]:
    """Safetensors files of a shipped behaviour policy ('replay' is the snapshot sequence, in order)."""
    if name == "replay":
        files = sorted((POLICY_DIR / env / "replay").glob("*.safetensors"))
    else:
        f = POLICY_DIR / env / f"{name}.safetensors"
        files = [f] if f.exists() else []
    if not files:
        raise MissingDatasetError(
            f"behaviour policy {env}/{name} is not shipped in {POLICY_DIR}; train it with "
            f"`python -m suite.behaviour train` and `select` (see README, 'Behaviour policies')"
        )
    return files


class _Actor:
    """Batched stochastic action source: uniform for 'random', tanh-Gaussian SAC policies otherwise."""

    def __init__(self, file: Path | None, action_space, generator_seed: int):
        self.low, self.high = action_space.low, action_space.high
        self.gen = torch.Generator().manual_seed(generator_seed)
        self.policy = None
        if file is not None:
            from agents.sac import load_behaviour_policy

            self.policy = load_behaviour_policy(file)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.policy is None:
            u = torch.rand((obs.shape[0], self.low.shape[-1]), generator=self.gen, dtype=torch.float64).numpy()
            return (self.low + u * (self.high - self.low)).astype(np.float32)
        dist = self.policy.dist(torch.as_tensor(obs, dtype=torch.float32))
        noise = torch.randn(dist.mean.shape, generator=self.gen)
        a = torch.tanh(dist.mean + dist.stddev * noise).numpy()
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)


def collect(
    env_id: str,
    act: Callable[[np.ndarray], np.ndarray],
    steps: int,
    *,
    seed: int,
    policy_name: str,
    n_envs: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Roll out `act` on `n_envs` lockstep copies until exactly `steps` transitions; returns Minari episodes."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})
    try:
        episode_count = np.zeros(n_envs, dtype=np.int64)
        seeds = [episode_seed(seed, policy_name, j, 0) for j in range(n_envs)]
        obs, _ = envs.reset(seed=seeds)
        cur = [{"seed": s, "observations": [o], "actions": [], "rewards": [], "terminations": [], "truncations": []}
               for s, o in zip(seeds, obs)]
        finished: list[tuple[int, int, dict]] = []  # (collection step, slot, episode) for a stable order
        collected, t = 0, 0
        while collected < steps:
            actions = act(obs)
            nobs, rew, term, trunc, _ = envs.step(actions)
            active = min(n_envs, steps - collected)  # the last lockstep may use only some slots
            for j in range(active):
                ep = cur[j]
                ep["actions"].append(actions[j]), ep["rewards"].append(float(rew[j]))
                ep["terminations"].append(bool(term[j])), ep["truncations"].append(bool(trunc[j]))
                ep["observations"].append(nobs[j])
            collected += active
            done = (term | trunc)[:active]
            if collected >= steps:
                for j in range(active):
                    if not done[j]:
                        cur[j]["truncations"][-1] = True  # cut by the budget
                    finished.append((t, j, cur[j]))
                for j in range(active, n_envs):  # unfinished episodes with no step in budget are dropped
                    if cur[j]["actions"]:
                        cur[j]["truncations"][-1] = True
                        finished.append((t, j, cur[j]))
                break
            if done.any():
                mask = np.zeros(n_envs, dtype=bool)
                mask[:active] = done
                new_seeds = []
                for j in range(n_envs):
                    if mask[j]:
                        finished.append((t, j, cur[j]))
                        episode_count[j] += 1
                    new_seeds.append(episode_seed(seed, policy_name, j, int(episode_count[j])))
                nobs, _ = envs.reset(seed=new_seeds, options={"reset_mask": mask})
                for j in np.flatnonzero(mask):
                    cur[j] = {"seed": new_seeds[j], "observations": [nobs[j]], "actions": [], "rewards": [],
                              "terminations": [], "truncations": []}
            obs = nobs
            t += 1
            if progress is not None:
                progress(active)
    finally:
        envs.close()
    finished.sort(key=lambda x: (x[0], x[1]))
    out = []
    for _, _, ep in finished:
        out.append({
            "seed": ep["seed"],
            "observations": np.asarray(ep["observations"], dtype=np.float64),
            "actions": np.asarray(ep["actions"], dtype=np.float32),
            "rewards": np.asarray(ep["rewards"], dtype=np.float64),
            "terminations": np.asarray(ep["terminations"], dtype=bool),
            "truncations": np.asarray(ep["truncations"], dtype=bool),
        })
    return out


def _package_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for pkg in ("gymnasium", "mujoco", "minari", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "unknown"
    return out


def build(
    spec: DatasetSpec,
    *,
    steps: int | None = None,
    n_envs: int = 8,
    references: tuple[float, float] | None = None,
    overwrite: bool = True,
    progress: bool = True,
):
    """Build the dataset of `spec` into Minari storage and return the loaded `MinariDataset`."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer
    from tqdm.auto import tqdm

    if spec.source != "recipe":
        raise MissingDatasetError(f"dataset {spec.dataset_id!r} is not built by the suite (source: {spec.source})")
    steps = steps or spec.default_steps
    env = spec.dataset_id.split("/")[1]
    plan: list[tuple[str, Path | None, int]] = []  # (policy name, file, steps)
    for name in spec.policies:
        if name == "random":
            plan.append(("random", None, steps))
        else:
            files = policy_files(env, name)
            per = [steps // len(files) + (1 if i < steps % len(files) else 0) for i in range(len(files))]
            plan += [(f"{name}/{f.stem}" if name == "replay" else name, f, n) for f, n in zip(files, per)]

    action_space = gym.make(spec.env_id).action_space
    episodes: list[dict] = []
    total = sum(n for _, _, n in plan)
    bar = tqdm(total=total, desc=f"build {spec.dataset_id}", unit="step", disable=not progress, smoothing=0.1)
    try:
        for name, file, n in plan:
            actor = _Actor(file, action_space, episode_seed(spec.seed, name, -1 % 2**31, 0))
            episodes += collect(spec.env_id, actor, n, seed=spec.seed, policy_name=name, n_envs=n_envs,
                                progress=bar.update)
    finally:
        bar.close()

    digest = store.checksum_episodes(episodes)
    if store.exists(spec.dataset_id):
        if not overwrite:
            return store.load(spec.dataset_id)
        shutil.rmtree(store.dataset_path(spec.dataset_id))
    buffers = [
        EpisodeBuffer(id=i, seed=ep["seed"], observations=ep["observations"], actions=ep["actions"],
                      rewards=ep["rewards"], terminations=ep["terminations"], truncations=ep["truncations"])
        for i, ep in enumerate(episodes)
    ]
    recipe = {
        "policies": [
            {"name": name, "file": str(file.relative_to(POLICY_DIR)) if file else None,
             "sha256": _sha256(file) if file else None, "steps": n}
            for name, file, n in plan
        ],
        "seed": spec.seed,
        "n_envs": n_envs,
        "steps": total,
        "env_id": spec.env_id,
        "versions": _package_versions(),
        "builder": "suite.data.build",
    }
    kwargs = {}
    if references is not None:
        kwargs = {"ref_min_score": float(references[0]), "ref_max_score": float(references[1])}
    ds = minari.create_dataset_from_buffers(
        dataset_id=spec.dataset_id,
        buffer=buffers,
        env=spec.env_id,
        algorithm_name="suite recipe: " + "+".join(spec.policies),
        author={"odice-suite"},
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        data_format="hdf5",
        **kwargs,
    )
    store.update_metadata(ds, {"suite_recipe": recipe, "suite_checksum": digest})
    return ds


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
