"""Tasks over data the suite does not build: D4RL files a user imports, and Minari's remote datasets.

- ``d4rl/<env>-<level>-v2``: a D4RL v2 hdf5 file imported with `python -m suite data import-d4rl`; evaluated on
  Gymnasium's ``<Env>-v4`` (D4RL's MuJoCo models on the new bindings) with D4RL's reference returns.
- ``minari/mujoco/<env>/<level>-v0``: Minari's own MuJoCo datasets (regenerated on v5 with new policies and
  their own reference scores; not D4RL data), downloaded through Minari when online; normalised with the
  reference scores stored in the dataset's metadata.
Scores on these three families (suite, d4rl, minari) are never mixed in one table column.
"""

from __future__ import annotations

from . import DatasetSpec, References, TaskSpec, register
from .references import D4RL_REFERENCE_RETURNS, METADATA_REFERENCES

D4RL_ENVS = {  # env -> (Gymnasium evaluation id, D4RL reference returns: random, expert)
    env: (gym_id, *D4RL_REFERENCE_RETURNS[env])
    for env, gym_id in (("hopper", "Hopper-v4"), ("halfcheetah", "HalfCheetah-v4"), ("walker2d", "Walker2d-v4"),
                        ("ant", "Ant-v4"))
}
D4RL_LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")

MINARI_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}
MINARI_LEVELS = ("simple", "medium", "expert")


def _register_all() -> None:
    for env, (gym_id, rmin, rmax) in D4RL_ENVS.items():
        refs = References(rmin, rmax, "d4rl-v2 reference returns")
        for level in D4RL_LEVELS:
            register(
                TaskSpec(
                    id=f"d4rl/{env}-{level}-v2",
                    kind="offline-rl",
                    description=f"D4RL {env}-{level}-v2 (imported hdf5), evaluated on {gym_id}",
                    dataset=DatasetSpec(dataset_id=f"d4rl/{env}/{level}-v2", env_id=gym_id, source="d4rl", policies=()),
                    env_id=gym_id,
                    references=refs,
                )
            )
    for env, gym_id in MINARI_ENVS.items():
        for level in MINARI_LEVELS:
            register(
                TaskSpec(
                    id=f"minari/mujoco/{env}/{level}-v0",
                    kind="offline-rl",
                    description=f"Minari mujoco/{env}/{level}-v0 (remote download; not D4RL data)",
                    dataset=DatasetSpec(
                        dataset_id=f"mujoco/{env}/{level}-v0", env_id=gym_id, source="minari-remote", policies=()
                    ),
                    env_id=gym_id,
                    references=None,
                    extra={"references_from": METADATA_REFERENCES},
                )
            )


_register_all()
