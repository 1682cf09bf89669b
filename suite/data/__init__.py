"""Datasets: Minari storage, the suite's build recipe, transition sampling, D4RL import.

Public API: `get_dataset(spec)`, `build(spec, steps=...)`, `load_transitions(spec)`, `TransitionBuffer`,
`checksum`, `verify`.
"""

from __future__ import annotations

from ..errors import MissingDatasetError
from ..tasks import DatasetSpec
from . import store
from .buffer import TransitionBuffer, transitions_from_episodes

__all__ = ["TransitionBuffer", "get_dataset", "load_transitions", "how_to_get", "store"]


def how_to_get(spec: DatasetSpec, task_id: str | None = None) -> str:
    name = task_id or spec.dataset_id
    if spec.source == "recipe":
        return f"build it with `python -m suite data build {name}` (add --steps N for a smaller one)"
    if spec.source == "d4rl":
        return f"import it with `python -m suite data import-d4rl FILE.hdf5 --as {name.split('/', 1)[-1]}`"
    if spec.source == "minari-remote":
        return f"download it with `python -m suite data download {name}` (needs internet)"
    return "see `python -m suite data --help`"


def get_dataset(spec: DatasetSpec, task_id: str | None = None):
    """The local MinariDataset of `spec`, or MissingDatasetError saying how to get it."""
    return store.load(spec.dataset_id, hint=how_to_get(spec, task_id))


def load_transitions(spec: DatasetSpec, task_id: str | None = None):
    """(dataset, arrays, episode_ends) for a task's dataset spec (imitation subsets applied)."""
    ds = get_dataset(spec, task_id)
    arrays, ends = transitions_from_episodes(
        ds.iterate_episodes(), n_trajectories=spec.n_trajectories, remove_rewards=spec.remove_rewards
    )
    return ds, arrays, ends


def missing(spec: DatasetSpec) -> bool:
    return not store.exists(spec.dataset_id)


_ = MissingDatasetError
