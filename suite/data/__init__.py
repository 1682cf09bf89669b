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


def _cache_file(dataset_id: str, checksum: str):
    return store.dataset_path(dataset_id) / "suite_cache" / f"transitions-{checksum[:20]}.npz"


def load_transitions(spec: DatasetSpec, task_id: str | None = None):
    """(dataset, arrays, episode_ends) for a task's dataset spec (imitation subsets applied).

    Reading a Minari dataset episode by episode is slow for D4RL-sized data (tens of thousands of
    episodes), so the flat arrays are cached beside the dataset in an .npz named by the dataset's recorded
    checksum; `python -m suite data verify` still checks the Minari episodes themselves."""
    import numpy as np

    ds = get_dataset(spec, task_id)
    checksum = store.metadata(ds).get("suite_checksum")
    cache = _cache_file(spec.dataset_id, checksum) if checksum else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in z.files if k != "episode_ends"}
            ends = z["episode_ends"]
    else:
        arrays, ends = transitions_from_episodes(ds.iterate_episodes())
        if cache is not None:  # unique temp name + atomic rename: concurrent runs may write it at once
            import os
            import tempfile

            cache.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp.npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, episode_ends=ends, **arrays)
            os.replace(tmp, cache)
    if spec.n_trajectories is not None:
        cut = np.flatnonzero(ends)
        stop = int(cut[spec.n_trajectories - 1]) + 1 if len(cut) >= spec.n_trajectories else len(ends)
        arrays = {k: v[:stop] for k, v in arrays.items()}
        ends = ends[:stop]
    if spec.remove_rewards:
        arrays = {**arrays, "rewards": np.zeros_like(arrays["rewards"])}
    return ds, arrays, ends


def missing(spec: DatasetSpec) -> bool:
    return not store.exists(spec.dataset_id)


_ = MissingDatasetError
