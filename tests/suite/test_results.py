import json
import os

import pytest

from suite import results
from suite.results import EvalPoint, RunRecord, iter_records, load_record, save_record, write_json_atomic


def _record(**kw):
    base = dict(method="bc", task="hopper-random-v0", seed=0, config={"lr": 1e-3}, task_spec={"id": "hopper-random-v0"})
    base.update(kw)
    return RunRecord(**base)


def test_round_trip(tmp_path):
    rec = _record(curve=[EvalPoint(10, [1.0, 3.0], 2.0, 5.0, 0.1)], final_score=5.0, best_score=5.0, status="ok")
    save_record(rec, tmp_path / "r.json")
    again = load_record(tmp_path / "r.json")
    assert again == rec
    assert [r for _, r in iter_records(tmp_path)] == [rec]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # NaN is not JSON: refused, never half-written
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_atomic_write_uses_rename(tmp_path, monkeypatch):
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append((a, b)), real(a, b)))
    write_json_atomic(tmp_path / "x.json", {"b": 2})
    assert len(calls) == 1 and str(calls[0][1]).endswith("x.json") and str(calls[0][0]).endswith(".tmp")


def test_provenance_has_git_and_versions():
    p = results.provenance("cpu", {"dataset_checksum": "abc"})
    assert {"git_revision", "git_dirty", "packages", "device", "dataset_checksum"} <= set(p)
    assert "torch" in p["packages"]


def test_table_shows_the_mean_of_the_last_evaluations():
    from suite.leaderboard import TAIL_EVALS, table_rows, tail_score

    assert TAIL_EVALS == 5
    curves = [[0.0, 90.0, 10.0, 20.0, 30.0, 40.0, 50.0], [0.0, 0.0, 20.0, 30.0, 40.0, 50.0, 60.0]]
    recs = [
        _record(seed=i, status="ok", curve=[EvalPoint(100 * j, [s], s, s) for j, s in enumerate(c)])
        for i, c in enumerate(curves)
    ]
    for rec in recs:  # scores consistent with the curve (tables recompute them and exclude any that are not)
        rec.final_score = rec.curve[-1].normalized_score
        rec.final_return = rec.curve[-1].mean_return
        rec.best_score = max(p.normalized_score for p in rec.curve)
    assert [tail_score(r) for r in recs] == [30.0, 40.0]  # the 90 of the first run is 6 evaluations back
    assert tail_score(recs[0], k=100) == 240.0 / 7
    (row,) = table_rows(recs)
    assert row["mean"] == 55.0 and row["tail_mean"] == 35.0 and abs(row["tail_std"] - 50**0.5) < 1e-12
