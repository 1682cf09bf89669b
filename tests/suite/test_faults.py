"""Fault injection: files handed to the suite that try to run code or are damaged are refused, by name."""

import os
import pickle

import pytest
import torch

from suite.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from suite.errors import CorruptFileError


class _Payload:
    """Unpickling this runs os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _good(tmp_path):
    d = tmp_path / "ck"
    save_checkpoint(d, {"step": 3, "w": torch.ones(2), "curve": [(1, 2.0)]})
    return d


def test_malicious_pickle_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    d = tmp_path / "old"
    d.mkdir()
    (d / "state.pt").write_bytes(pickle.dumps({"step": _Payload(marker)}))
    torch.save({}, d / "unused.pt")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(d / "tensors.safetensors"))
    assert has_checkpoint(d)
    with pytest.raises(CorruptFileError, match="state.pt.*not loaded"):
        load_checkpoint(d)
    assert not marker.exists()


def test_checkpoint_state_is_json_not_pickle(tmp_path):
    d = _good(tmp_path)
    assert {p.name for p in d.iterdir()} == {"state.json", "tensors.safetensors"}
    back = load_checkpoint(d)
    assert back["step"] == 3 and back["curve"] == [(1, 2.0)] and torch.equal(back["w"], torch.ones(2))
    with pytest.raises(TypeError, match="no pickle"):
        save_checkpoint(tmp_path / "bad", {"obj": _Payload(tmp_path / "x")})


@pytest.mark.parametrize("victim", ["state.json", "tensors.safetensors"])
def test_truncated_checkpoint_is_one_error_naming_the_file(tmp_path, victim):
    d = _good(tmp_path)
    data = (d / victim).read_bytes()
    (d / victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=victim.replace(".", r"\.")):
        load_checkpoint(d)
