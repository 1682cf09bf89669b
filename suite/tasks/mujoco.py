"""The suite's own offline-RL and imitation tasks on Gymnasium MuJoCo v5 (Hopper, HalfCheetah, Walker2d).

Datasets follow D4RL's recipes (random, medium, medium-replay, expert, medium-expert) but are rebuilt by the
suite from behaviour policies shipped in `suite/data/policies/` (see `suite.data.build`). They are *not*
D4RL's data: scores on them are labelled `suite` and never mixed with D4RL's in a table.

Reference returns (normalised score 0 and 100): where `suite/data/policies/<EnvId>/reference.json` exists, the
random and expert returns measured over 100 episodes with the shipped policies (as Minari does); otherwise
D4RL's published reference returns, labelled as such in every record.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import DatasetSpec, References, TaskSpec, register
from .references import D4RL_REFERENCE_RETURNS

POLICY_DIR = Path(__file__).resolve().parent.parent / "data" / "policies"

ENVS = {  # short name -> (Gymnasium id, D4RL random/expert reference returns)
    env: (gym_id, *D4RL_REFERENCE_RETURNS[env])
    for env, gym_id in (("hopper", "Hopper-v5"), ("halfcheetah", "HalfCheetah-v5"), ("walker2d", "Walker2d-v5"))
}

LEVELS = {  # level -> behaviour policies, in collection order (see suite.data.build)
    "random": ("random",),
    "medium": ("medium",),
    "medium-replay": ("replay",),
    "expert": ("expert",),
    "medium-expert": ("medium", "expert"),
}


def policy_dir(gym_id: str) -> Path:
    """Where the behaviour policies of a Gymnasium environment are shipped (written by suite.behaviour)."""
    return POLICY_DIR / gym_id


def references(env: str, version: int = 0) -> References:
    gym_id, rmin, rmax = ENVS[env]
    path = policy_dir(gym_id) / ("" if version == 0 else f"v{version}") / "reference.json"
    if path.exists():
        ref = json.loads(path.read_text())

        def _mean(v):
            return float(v["mean"]) if isinstance(v, dict) else float(v)

        tag = "" if version == 0 else f" v{version}"
        return References(
            _mean(ref["random_return"]),
            _mean(ref["expert_return"]),
            f"suite-measured: random and shipped{tag} expert policy, 100 episodes on {gym_id}"
            + ("" if version == 0 else f" (D4RL's reference returns: random {rmin}, expert {rmax})"),
        )
    return References(rmin, rmax, "d4rl-v2 reference returns (mujoco-py v3 environments)")


def _register_all() -> None:
    for env, (gym_id, _, _) in ENVS.items():
        refs = references(env)
        for level, policies in LEVELS.items():
            ds = DatasetSpec(dataset_id=f"suite/{env}/{level}-v0", env_id=gym_id, policies=policies)
            register(
                TaskSpec(
                    id=f"{env}-{level}-v0",
                    kind="offline-rl",
                    description=f"{gym_id}, D4RL-style '{level}' dataset rebuilt by the suite",
                    dataset=ds,
                    env_id=gym_id,
                    references=refs,
                )
            )
        expert = DatasetSpec(dataset_id=f"suite/{env}/expert-v0", env_id=gym_id, policies=("expert",))
        for n in (1,):
            register(
                TaskSpec(
                    id=f"{env}-expert-{n}traj-v0",
                    kind="offline-il",
                    description=f"{gym_id}, offline imitation from {n} expert trajectory (rewards removed)",
                    dataset=DatasetSpec(**{**expert.__dict__, "n_trajectories": n, "remove_rewards": True}),
                    env_id=gym_id,
                    references=refs,
                    train_steps=500_000,
                )
            )



def v1_envs() -> list[str]:
    """Environments whose v1 behaviour policies are shipped (``<policies>/<EnvId>/v1/``; D4RL-strength SAC)."""
    return [env for env, (gym_id, _, _) in ENVS.items() if (policy_dir(gym_id) / "v1" / "expert.json").exists()]


def _register_v1() -> None:
    """v1: the same recipes from D4RL-strength policies (expert >= 90 D4RL-normalised with stochastic
    actions); v0 stays registered so old records still validate. Registered per environment as its v1 policies
    are shipped."""
    for env in v1_envs():
        gym_id = ENVS[env][0]
        refs = references(env, version=1)
        for level, policies in LEVELS.items():
            pol = tuple(p if p == "random" else f"v1/{p}" for p in policies)
            register(TaskSpec(
                id=f"{env}-{level}-v1", kind="offline-rl",
                description=f"{gym_id}, D4RL-style '{level}' dataset from the v1 (D4RL-strength) policies",
                dataset=DatasetSpec(dataset_id=f"suite/{env}/{level}-v1", env_id=gym_id, policies=pol),
                env_id=gym_id, references=refs))
        expert = DatasetSpec(dataset_id=f"suite/{env}/expert-v1", env_id=gym_id, policies=("v1/expert",))
        register(TaskSpec(
            id=f"{env}-expert-1traj-v1", kind="offline-il",
            description=f"{gym_id}, offline imitation from 1 v1 expert trajectory (rewards removed)",
            dataset=DatasetSpec(**{**expert.__dict__, "n_trajectories": 1, "remove_rewards": True}),
            env_id=gym_id, references=refs, train_steps=500_000))


_register_all()
_register_v1()
