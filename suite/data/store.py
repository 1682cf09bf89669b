"""Minari storage access: where datasets live, loading with helpful errors, and content checksums.

Datasets are real Minari datasets under `MINARI_DATASETS_PATH` (default ``~/.minari/datasets``). The checksum
of a dataset is the sha256 of its transition arrays (observations, actions, rewards, terminations,
truncations, episode by episode, float64/bool little-endian), so it does not depend on the storage format or
on hdf5's byte layout; it is written into the dataset's metadata at build time and recomputed by `verify`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MissingDatasetError, SuiteError


class DatasetBusyError(SuiteError):
    """Another process is building the same dataset."""


def datasets_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def exists(dataset_id: str) -> bool:
    return (dataset_path(dataset_id) / "data" / "metadata.json").exists()


def local_dataset_ids() -> list[str]:
    """Datasets in storage; half-built leftovers (hidden ``.staging-*`` / ``.trash-*`` folders) are never
    listed."""
    root = datasets_root()
    if not root.exists():
        return []
    ids = (p.parent.parent.relative_to(root) for p in root.rglob("data/metadata.json"))
    return sorted(str(i) for i in ids if not any(part.startswith(".") for part in i.parts))


# --- crash-safe writes --------------------------------------------------------------------------------------
@contextlib.contextmanager
def build_lock(dataset_id: str, wait: bool = True):
    """An exclusive lock file per dataset id (``<root>/.locks/<id>.lock``, fcntl): a second build of the same
    id waits (saying so on stderr) or, with ``wait=False``, raises a one-line busy error. The OS releases the
    lock when the holder dies, so a killed build never blocks later ones."""
    import fcntl
    import sys

    lock_dir = datasets_root() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    f = open(lock_dir / (dataset_id.replace("/", "__") + ".lock"), "w")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise DatasetBusyError(f"dataset {dataset_id!r} is being built by another process; try again "
                                       "when it finishes") from None
            print(f"waiting for another build of {dataset_id} to finish ...", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()


def clean_leftovers() -> list[Path]:
    """Remove staging and trash folders left by killed builds (callers hold no lock on them: a live build's
    staging folder is named with its pid, which is checked)."""
    import shutil

    root = datasets_root()
    removed = []
    for d in list(root.glob(".staging-*")) + list(root.glob(".trash-*")):
        pid = d.name.split("-")[1] if d.name.count("-") >= 2 else ""
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for the `with` block (processes started in it inherit them), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def staged(dataset_id: str):
    """Write a dataset into ``<root>/.staging-<pid>-<rand>/`` (Minari is pointed there), then swap it into
    place with renames: the old dataset stays until the new one is complete, and a build killed at any
    moment leaves either the old dataset or the new one at the id, plus a hidden leftover the next build
    removes."""
    import shutil
    import tempfile

    root = datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=root))
    try:
        with environment({"MINARI_DATASETS_PATH": str(stage)}):
            yield
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    final = dataset_path(dataset_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = Path(tempfile.mkdtemp(prefix=f".trash-{os.getpid()}-", dir=root))
    if final.exists():
        os.replace(final, trash / "old")
    os.replace(stage / dataset_id, final)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def load(dataset_id: str, hint: str | None = None):
    """`minari.load_dataset` with errors that say how to get the dataset and name corrupt files."""
    import minari

    if not exists(dataset_id):
        msg = f"dataset {dataset_id!r} is not in {datasets_root()}"
        raise MissingDatasetError(msg + (f"; {hint}" if hint else ""))
    try:
        return minari.load_dataset(dataset_id)
    except Exception as e:  # hdf5/arrow/JSON errors from a damaged dataset
        raise CorruptFileError(f"dataset {dataset_id!r} at {dataset_path(dataset_id)} cannot be read: {e}") from e


def metadata(dataset) -> dict:
    return dict(dataset.storage.metadata)


def update_metadata(dataset, values: dict) -> None:
    dataset.storage.update_metadata(values)


def checksum_episodes(episodes) -> str:
    """sha256 over the transition arrays of an iterable of episodes (objects or dicts with the Minari fields)."""
    h = hashlib.sha256()
    for ep in episodes:
        get = ep.get if isinstance(ep, dict) else lambda k, ep=ep: getattr(ep, k)
        for key in ("observations", "actions", "rewards"):
            h.update(np.ascontiguousarray(get(key), dtype="<f8").tobytes())
        for key in ("terminations", "truncations"):
            h.update(np.ascontiguousarray(get(key), dtype=bool).tobytes())
    return h.hexdigest()


def checksum(dataset) -> str:
    return checksum_episodes(dataset.iterate_episodes())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_dataset(
    dataset_id: str,
    episodes: list[dict],
    env_id: str,
    *,
    references: tuple[float, float] | None,
    algorithm_name: str,
    author: str,
    description: str,
    metadata: dict | None = None,
):
    """Write episodes (dicts with the Minari fields, optional "seed") as a new Minari dataset, with the
    suite's content checksum and `metadata` in its metadata. The id must not exist yet."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            id=i,
            seed=ep.get("seed"),
            observations=ep["observations"],
            actions=ep["actions"],
            rewards=ep["rewards"],
            terminations=ep["terminations"],
            truncations=ep["truncations"],
        )
        for i, ep in enumerate(episodes)
    ]
    refs = {} if references is None else {"ref_min_score": float(references[0]), "ref_max_score": float(references[1])}
    with warnings.catch_warnings():
        # Minari recommends a code permalink and an author e-mail; the suite's datasets carry their recipe
        # (policy sha256, seeds, versions) in their metadata instead, and have no e-mail to give.
        warnings.filterwarnings("ignore", message=r"`(code_permalink|author_email)` is set to None")
        ds = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env_id,
            eval_env=env_id,  # evaluation uses the environment the data came from
            algorithm_name=algorithm_name,
            author={author},
            description=description,
            data_format="hdf5",
            **refs,
        )
    update_metadata(ds, {"suite_checksum": checksum_episodes(episodes), **(metadata or {})})
    return ds


CANONICAL_FILE = Path(__file__).resolve().parent / "canonical.json"


def canonical_checksum(dataset_id: str) -> str | None:
    """The committed checksum of a suite dataset built with the pinned numerics (`suite/data/canonical.json`;
    every x86-64 machine must build exactly this), or None where none is recorded yet."""
    import json

    try:
        entries = json.loads(CANONICAL_FILE.read_text())
    except FileNotFoundError:
        return None
    entry = entries.get(dataset_id)
    return entry["checksum"] if entry else None


def task_canonical_checksum(task_id: str) -> str | None:
    """`canonical_checksum` of the dataset a task trains on: None for a task this install does not register
    (a plug-in's record), a task without a suite-built dataset, or a dataset with no canonical build yet."""
    from ..tasks import get_task

    try:
        spec = get_task(task_id).dataset
    except Exception:  # an unregistered task: nothing to compare
        return None
    return canonical_checksum(spec.dataset_id) if spec is not None and spec.source == "recipe" else None
