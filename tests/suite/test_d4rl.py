"""D4RL import round trip with a small file written here in D4RL's layout, and the corrupt-file paths."""

import h5py
import numpy as np
import pytest

from suite.cli import main
from suite.data import load_transitions
from suite.data.d4rl import read_d4rl_hdf5, split_episodes
from suite.errors import CorruptFileError
from suite.tasks import get_task


def _write(path, n=50, obs_dim=11, act_dim=3, next_obs=True, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[9] = True  # episode 1: 10 steps, terminal
    tout[29] = True  # episode 2: 20 steps, timeout; then 20 unfinished steps
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = rng.uniform(-1, 1, (n, act_dim)).astype(np.float32)
        f["rewards"] = rng.standard_normal(n).astype(np.float32)
        f["terminals"] = term
        f["timeouts"] = tout
        if next_obs:
            f["next_observations"] = np.roll(obs, -1, axis=0) + 0.5
    return obs


def test_split_episodes_on_terminals_and_timeouts(tmp_path):
    _write(tmp_path / "d.hdf5")
    eps = split_episodes(read_d4rl_hdf5(tmp_path / "d.hdf5"))
    assert [len(e["rewards"]) for e in eps] == [10, 20, 20]
    assert eps[0]["terminations"][-1] and not eps[0]["truncations"][-1]
    assert eps[1]["truncations"][-1] and not eps[1]["terminations"][-1]
    assert eps[2]["truncations"][-1]  # unfinished tail kept as truncated
    assert all(len(e["observations"]) == len(e["rewards"]) + 1 for e in eps)


def test_without_next_observations_keeps_terminals_as_d4rl_does(tmp_path):
    obs = _write(tmp_path / "d.hdf5", next_obs=False)
    eps = split_episodes(read_d4rl_hdf5(tmp_path / "d.hdf5"))
    # D4RL's qlearning_dataset: the terminal transition stays (episode 1 keeps all 10), a time-out's last
    # transition and the unfinished tail's last one are dropped (their next observation is unknown)
    assert [len(e["rewards"]) for e in eps] == [10, 19, 19]
    assert eps[0]["terminations"][-1] and not eps[0]["truncations"][-1]
    assert not eps[1]["terminations"][-1] and eps[1]["truncations"][-1]
    np.testing.assert_array_equal(eps[0]["observations"][-1], obs[10])  # observations[i + 1], as D4RL pairs them
    np.testing.assert_array_equal(eps[1]["observations"][:-1], obs[10:29])
    assert sum(int(e["terminations"].sum()) for e in eps) == 1


def test_import_round_trip_and_task(tmp_path, minari_root):
    obs = _write(tmp_path / "hopper_medium-v2.hdf5")
    spec = get_task("d4rl/hopper-medium-v2")
    assert spec.env_id == "Hopper-v4" and spec.references.max_return == pytest.approx(3234.3)
    assert main(["data", "import-d4rl", str(tmp_path / "hopper_medium-v2.hdf5"), "--as", "hopper-medium-v2"]) == 0
    ds, arrays, ends = load_transitions(spec.dataset)
    assert ds.total_steps == 50 and ds.total_episodes == 3
    np.testing.assert_allclose(arrays["observations"], obs)
    assert arrays["terminals"].sum() == 1 and ends.sum() == 3
    assert ds.storage.metadata["ref_max_score"] == pytest.approx(3234.3)
    # importing again without --overwrite refuses and keeps the data
    assert main(["data", "import-d4rl", str(tmp_path / "hopper_medium-v2.hdf5"), "--as", "hopper-medium-v2"]) == 2
    assert main(["data", "import-d4rl", str(tmp_path / "hopper_medium-v2.hdf5"), "--as", "hopper-mediun-v2"]) == 2


def test_corrupt_files_are_named(tmp_path):
    _write(tmp_path / "good.hdf5")
    raw = (tmp_path / "good.hdf5").read_bytes()
    (tmp_path / "trunc.hdf5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CorruptFileError, match="trunc.hdf5"):
        read_d4rl_hdf5(tmp_path / "trunc.hdf5")
    (tmp_path / "junk.hdf5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(CorruptFileError, match="junk.hdf5"):
        read_d4rl_hdf5(tmp_path / "junk.hdf5")
    with h5py.File(tmp_path / "nokeys.hdf5", "w") as f:
        f["observations"] = np.zeros((3, 2))
    with pytest.raises(CorruptFileError, match=r"nokeys.hdf5.*missing \['actions'"):
        read_d4rl_hdf5(tmp_path / "nokeys.hdf5")
    with h5py.File(tmp_path / "short.hdf5", "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((2, 1))
        f["rewards"] = np.zeros(3)
        f["terminals"] = np.zeros(3)
    with pytest.raises(CorruptFileError, match="short.hdf5: 'actions' has 2 rows"):
        read_d4rl_hdf5(tmp_path / "short.hdf5")


def test_import_corrupt_via_cli_exits_2(tmp_path, capsys):
    (tmp_path / "bad.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    assert main(["data", "import-d4rl", str(tmp_path / "bad.hdf5"), "--as", "walker2d-medium-v2"]) == 2
    assert "bad.hdf5" in capsys.readouterr().err


def test_minari_remote_offline_is_a_clear_error(minari_root, capsys):
    assert main(["data", "download", "minari/mujoco/hopper/medium-v0"]) == 2
    err = capsys.readouterr().err
    assert "could not download Minari dataset 'mujoco/hopper/medium-v0'" in err
