"""Import D4RL hdf5 files into Minari datasets, and download Minari's remote datasets.

D4RL's layout: flat arrays ``observations (N, obs)``, ``actions (N, act)``, ``rewards (N,)``, ``terminals
(N,)``, ``timeouts (N,)`` and (v2 MuJoCo files) ``next_observations (N, obs)``. Episodes are split after every
transition whose terminal or timeout flag is set; a trailing unfinished episode is kept as truncated.
Without ``next_observations`` (D4RL's older files) we follow D4RL's own ``qlearning_dataset``: an episode that
ends in a time-out (or is cut at the end of the file) loses its last transition, whose next observation is
unknown; an episode that ends in a **terminal** keeps it, with the terminal flag — the only record of the
failure — and the following row's observation as its (never used: a terminal masks the bootstrap) next
observation, exactly as ``qlearning_dataset`` pairs ``observations[i]`` with ``observations[i + 1]``; the
file's last row, having no successor, repeats its own observation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MissingDatasetError, SuiteError
from . import store

REQUIRED = ("observations", "actions", "rewards", "terminals")


def read_d4rl_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    import h5py

    path = Path(path)
    if not path.exists():
        raise MissingDatasetError(f"D4RL file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED if k not in f]
            if missing:
                raise CorruptFileError(f"{path} is not a D4RL dataset: missing {missing} (has {sorted(f.keys())})")
            out = {k: f[k][()] for k in (*REQUIRED, "timeouts", "next_observations") if k in f}
    except CorruptFileError:
        raise
    except Exception as e:  # truncated file, not hdf5, damaged chunks
        raise CorruptFileError(f"cannot read D4RL file {path}: {e}") from e
    n = len(out["observations"])
    for k, v in out.items():
        if len(v) != n:
            raise CorruptFileError(f"{path}: '{k}' has {len(v)} rows, 'observations' has {n}")
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise CorruptFileError(f"{path}: '{k}' contains non-finite values")
    out.setdefault("timeouts", np.zeros(n, dtype=bool))
    return out


def split_episodes(arrays: dict[str, np.ndarray]) -> list[dict]:
    obs, act = arrays["observations"], arrays["actions"]
    rew = arrays["rewards"].reshape(-1)
    term = arrays["terminals"].reshape(-1).astype(bool)
    tout = arrays["timeouts"].reshape(-1).astype(bool)
    nxt = arrays.get("next_observations")
    ends = np.flatnonzero(term | tout)
    if len(ends) == 0 or ends[-1] != len(rew) - 1:
        ends = np.append(ends, len(rew) - 1)
    episodes, start = [], 0
    for e in ends:
        stop = e + 1
        if nxt is not None:
            o = np.concatenate([obs[start:stop], nxt[e : e + 1]])
            sl = slice(start, stop)
        elif term[e]:  # keep the terminal transition (D4RL does); its next observation is never bootstrapped
            o = np.concatenate([obs[start:stop], obs[min(e + 1, len(obs) - 1)][None]])
            sl = slice(start, stop)
        else:  # time-out or cut: the final observation is unknown, drop the last transition
            o = obs[start:stop]
            sl = slice(start, stop - 1)
        if sl.stop - sl.start >= 1:
            t = term[sl].copy()
            tr = tout[sl].copy()
            if not (t[-1] or tr[-1]):
                tr[-1] = True  # cut episode: mark truncated
            episodes.append(
                {
                    "observations": o.astype(np.float64),
                    "actions": act[sl].astype(np.float32),
                    "rewards": rew[sl].astype(np.float64),
                    "terminations": t,
                    "truncations": tr,
                }
            )
        start = stop
    return episodes


def import_d4rl(
    path: str | Path,
    dataset_id: str,
    env_id: str,
    references: tuple[float, float] | None = None,
    *,
    overwrite: bool = False,
):
    arrays = read_d4rl_hdf5(path)
    episodes = split_episodes(arrays)
    if store.exists(dataset_id):
        if not overwrite:
            raise SuiteError(f"dataset {dataset_id} already exists; pass --overwrite to replace it")
        shutil.rmtree(store.dataset_path(dataset_id))
    return store.write_dataset(
        dataset_id,
        episodes,
        env_id,
        references=references,
        algorithm_name="D4RL (imported)",
        author="D4RL",
        description=f"Imported from D4RL file {Path(path).name}",
        metadata={
            "suite_import": {
                "file": Path(path).name,
                "file_sha256": store.sha256_file(path),
                "transitions": int(len(arrays["rewards"])),
            }
        },
    )


def download_minari(dataset_id: str):
    """Download a Minari remote dataset (needs internet); a clear error offline."""
    import minari

    try:
        minari.download_dataset(dataset_id)
    except Exception as e:
        raise MissingDatasetError(
            f"could not download Minari dataset {dataset_id!r} ({type(e).__name__}: {e}); this needs internet "
            "access to Minari's remote storage"
        ) from e
    return store.load(dataset_id)
