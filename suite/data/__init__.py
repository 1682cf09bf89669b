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


def _data_digest(dataset_id: str) -> str:
    """sha256 over the bytes of the dataset's data files (hdf5/arrow), in name order: the cache key, so a
    cache is never served for data that changed since it was written."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((store.dataset_path(dataset_id) / "data").glob("**/*")):
        if f.is_file() and f.name != "metadata.json":
            h.update(f.name.encode())
            h.update(bytes.fromhex(store.sha256_file(f)))
    return h.hexdigest()


def _array_digest(arrays: dict, ends) -> str:
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    h.update(np.ascontiguousarray(ends).tobytes())
    return h.hexdigest()


def _repair_hint(spec: DatasetSpec, task_id: str | None) -> str:
    return how_to_get(spec, task_id).replace("build it with", "rebuild it with").replace(
        "import it", "re-import it").replace("download it", "download it again")


def load_transitions(spec: DatasetSpec, task_id: str | None = None):
    """(dataset, arrays, episode_ends) for a task's dataset spec (imitation subsets applied).

    Integrity: a recipe dataset must have been rolled out from the behaviour-policy files shipped now
    (`build.stale_policies`), and the episodes are checked against the checksum recorded when the dataset was
    built (``suite_checksum``) before anything is trained on them; a mismatch is a CorruptFileError naming the
    file and the command that repairs it. Reading a Minari dataset episode by episode is slow for D4RL-sized
    data, so the checked flat arrays are cached beside the dataset in an .npz named by a digest of the data
    files' bytes (any change to the data misses the cache) and holding a digest of its own arrays (a damaged
    cache is rebuilt, never used)."""
    import os
    import tempfile

    import numpy as np

    from ..errors import CorruptFileError

    ds = get_dataset(spec, task_id)
    meta = store.metadata(ds)
    recorded = meta.get("suite_checksum")
    if spec.source == "recipe":  # the policies it was rolled out from must be the ones shipped now
        from .build import stale_policies

        stale = stale_policies(spec, meta)
        if stale:
            raise CorruptFileError(f"dataset {spec.dataset_id!r} was built from other behaviour policies than the "
                                   f"shipped ones: {stale}; {_repair_hint(spec, task_id)}")
    key = _data_digest(spec.dataset_id)[:20]
    cache = store.dataset_path(spec.dataset_id) / "suite_cache" / f"transitions-{key}.npz"
    arrays = ends = None
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k not in ("episode_ends", "digest")}
                ends, digest = z["episode_ends"], str(z["digest"])
            if digest != _array_digest(arrays, ends):
                arrays = None
        except (OSError, ValueError, KeyError, EOFError):
            arrays = None
        if arrays is None:
            cache.unlink(missing_ok=True)  # damaged cache: rebuilt from the checked data below
    if arrays is None:
        try:
            episodes = list(ds.iterate_episodes())
        except Exception as e:  # h5py/arrow errors from a truncated or damaged file
            raise CorruptFileError(f"dataset {spec.dataset_id!r} at {store.dataset_path(spec.dataset_id)} cannot "
                                   f"be read ({type(e).__name__}); {_repair_hint(spec, task_id)}") from None
        if recorded is not None and store.checksum_episodes(episodes) != recorded:
            files = ", ".join(str(f) for f in sorted((store.dataset_path(spec.dataset_id) / "data").glob("*.hdf5")))
            raise CorruptFileError(f"dataset {spec.dataset_id!r} ({files or store.dataset_path(spec.dataset_id)}) "
                                   f"does not match the checksum recorded at build time; "
                                   f"{_repair_hint(spec, task_id)}")
        arrays, ends = transitions_from_episodes(iter(episodes))
        # unique temp name + atomic rename: concurrent runs may write it at once
        cache.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, episode_ends=ends, digest=np.array(_array_digest(arrays, ends)), **arrays)
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
