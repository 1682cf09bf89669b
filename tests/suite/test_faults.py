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


def _ok_record(tmp_path, name="r"):
    from suite.results import EvalPoint, RunRecord, save_record

    refs = {"min_return": 0.0, "max_return": 10.0}  # the keys task specs use (validate rescores from them)
    curve = [EvalPoint(100, [2.0, 4.0], 3.0, 30.0), EvalPoint(200, [5.0, 7.0], 6.0, 60.0)]
    rec = RunRecord(method="bc", task="hopper-random-v0", seed=0, config={}, task_spec={"references": refs},
                    status="ok", curve=curve, final_score=60.0, best_score=60.0, final_return=6.0, run_id=name,
                    provenance={"git_revision": "x", "git_dirty": False, "packages": {}, "device": "cpu"})
    path = tmp_path / name / "record.json"
    save_record(rec, path)
    return path


def test_hand_edited_score_is_caught_by_validate_submit_and_table(tmp_path, capsys):
    import json

    from suite.cli import main
    from suite.leaderboard import table_rows
    from suite.results import content_digest, load_record
    from suite.validate import problems, read_raw

    path = _ok_record(tmp_path)
    raw, rec = read_raw(path)
    assert not [p for p in problems(rec, raw) if "spec" not in p and "checksum" not in p]  # a toy record
    raw["final_score"] = 99.9  # the attack of the issue: a better number, digest left alone
    path.write_text(json.dumps(raw))
    raw, rec = read_raw(path)
    found = problems(rec, raw)
    assert any("does not match its digest" in p for p in found)
    assert any("final_score 99.9 is not the last evaluation's 60.0" in p for p in found)
    raw["digest"] = content_digest(raw)  # a careful attacker recomputes the digest: the curve still says 60
    path.write_text(json.dumps(raw))
    raw, rec = read_raw(path)
    assert any("final_score 99.9" in p for p in problems(rec, raw))
    assert main(["validate", str(path)]) == 1
    assert main(["submit", str(path), "--to", str(tmp_path / "board")]) == 2
    assert "not submitted" in capsys.readouterr().err
    assert table_rows([load_record(path)])[0]["n"] == 0  # counted as excluded, never averaged


def test_submit_never_silently_overwrites_and_bad_files_are_named(tmp_path, capsys):
    from suite.validate import submit

    path = _ok_record(tmp_path)
    board = tmp_path / "board"
    submit(path, board)
    from suite.errors import SuiteError

    with pytest.raises(SuiteError, match="already exists; pass --replace"):
        submit(path, board)
    submit(path, board, replace=True)
    # one malformed record among good ones: named on its own line, the others still checked
    from suite.cli import main

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "record.json").write_text('{"method": "bc", "task": ')
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "broken/record.json: " in out and "not a readable run record" in out
    assert out.count("\n") == 3  # r, broken and the submitted copy under board/: one line each


def test_resume_with_a_different_config_is_refused(hopper_random_built, tmp_path):
    from suite.errors import ConfigError
    from suite.runner import RunOptions, run

    fast = dict(steps=300, eval_every=100, eval_episodes=2, progress=False, tensorboard=False)
    part = run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path, stop_after=100, **fast))
    assert part.status == "running"
    with pytest.raises(ConfigError, match=r"different config \(actor_lr|different config \(lr"):
        run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path, resume=True, overrides={"lr": "0.5"}, **fast))
    done = run("bc", "hopper-random-v0", RunOptions(seed=3, out=tmp_path, resume=True, **fast))
    assert done.status == "ok" and done.run_id == part.run_id


@pytest.mark.parametrize("args, message", [
    (["run", "bc", "hopper-random-v0", "--set", "lr=inf"], "lr must be a finite number"),
    (["run", "bc", "hopper-random-v0", "--set", "batch_size=0"], "batch_size must be positive"),
    (["run", "bc", "hopper-random-v0", "--device", "tpu"], "device 'tpu'"),
    (["run", "bc", "hopper-random-v0", "--device", "cuda:7"], "cuda"),
    (["run", "bc", "hopper-randm"], "hopper-random-v0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys, hopper_random_built):
    from suite.cli import main

    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("record.json"))


def test_out_pointing_at_a_file_is_one_line(tmp_path, capsys):
    from suite.cli import main

    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", "em", "gmm-2d", "--nfe", "2", "--set", "n_samples=8", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "afile" in err and "Traceback" not in err


def test_tampered_behaviour_policy_is_refused_by_name(tmp_path, monkeypatch):
    import shutil

    from suite.data import build as B

    shutil.copytree(B.POLICY_DIR / "Hopper-v5", tmp_path / "Hopper-v5")
    monkeypatch.setattr(B, "POLICY_DIR", tmp_path)
    B.policy_files("Hopper-v5", "medium")  # intact: accepted
    f = tmp_path / "Hopper-v5" / "medium.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"medium\.safetensors does not match the sha256"):
        B.policy_files("Hopper-v5", "medium")


def test_checkpoint_tensors_are_checked_against_their_digest(tmp_path):
    from safetensors.torch import save_file

    d = _good(tmp_path)
    save_file({"w": torch.full((2,), 7.0)}, str(d / "tensors.safetensors"))  # a valid file, swapped in
    with pytest.raises(CorruptFileError, match="does not match the sha256"):
        load_checkpoint(d)
