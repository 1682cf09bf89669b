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


def test_runs_on_different_data_of_one_task_are_separate_cells_never_compared():
    """A suite dataset is rebuilt per machine, bit-identical within a machine class but not across CPUs: records
    of one task on two dataset checksums are two cells ([data …]), neither pooled nor compared."""
    from suite.leaderboard import aggregate_rows, separations, table_rows, task_label

    def rec(method, seed, score, checksum, task="hopper-medium-v1"):
        r = _record(method=method, task=task, seed=seed, status="ok", curve=[EvalPoint(100, [score], score, score)],
                    provenance={"dataset_checksum": checksum})
        r.final_score = r.best_score = r.final_return = score
        return r

    from suite.data.store import canonical_checksum

    a, b = canonical_checksum("suite/hopper/medium-v1"), "17a8e7de" + "0" * 56  # a is the canonical build
    w = canonical_checksum("suite/walker2d/medium-v1")
    recs = [rec("bc", s, 30.0 + s, b) for s in range(3)] + [rec("td3bc", s, 50.0 + s, a) for s in range(3)]
    recs += [rec("td3bc", s, 10.0 + s, w, task="walker2d-medium-v1") for s in range(3)]
    recs += [rec("bc", s, 12.0 + s, w, task="walker2d-medium-v1") for s in range(3)]
    rows = table_rows(recs)
    labels = sorted(task_label(r) for r in rows)
    assert labels == ["hopper-medium-v1 [data 17a8e7de…]", f"hopper-medium-v1 [data {a[:8]}…]",
                      "walker2d-medium-v1", "walker2d-medium-v1"]  # one checksum for walker2d: no label
    verdicts = {(e["task"], e["other"]) for e in separations(rows, "td3bc")}
    assert verdicts == {("walker2d-medium-v1", "bc")}  # hopper's bc ran on other data: no comparison
    # the same seeds of one method on two data variants stay apart (the latest of a seed does not replace it)
    recs.append(rec("bc", 0, 70.0, a))
    rows = table_rows(recs)
    cells = {task_label(r): r["n"] for r in rows if r["method"] == "bc"}
    assert cells == {"hopper-medium-v1 [data 17a8e7de…]": 3, f"hopper-medium-v1 [data {a[:8]}…]": 1,
                     "walker2d-medium-v1": 3}
    # the aggregate counts hopper once, with its canonical data (the 17a8e7de… runs are left out of it)
    (agg,) = [g for g in aggregate_rows(rows) if g["method"] == "bc"]
    assert agg["n_tasks"] == 2 and agg["n_runs"] == 4
    recs = [r for r in recs if not (r.method == "bc" and r.seed == 0 and r.final_score == 70.0)]
    assert not [g for g in aggregate_rows(table_rows(recs)) if g["method"] == "bc"]  # no canonical variant:
    # hopper is left out, and walker2d alone is not an aggregate


def test_a_cell_whose_only_data_is_not_the_canonical_build_is_labelled_and_left_out_of_the_aggregate():
    """One data variant is not enough: records made on a non-canonical build (another CPU's unpinned build, an
    older policy) are not the task everyone else runs, so their cell carries [data …] even when no other
    variant was recorded, and the aggregate leaves it out."""
    from suite.data.store import canonical_checksum
    from suite.leaderboard import aggregate_rows, table_rows, task_label

    def rec(seed, score, checksum, task):
        r = _record(method="bc", task=task, seed=seed, status="ok", curve=[EvalPoint(100, [score], score, score)],
                    provenance={"dataset_checksum": checksum})
        r.final_score = r.best_score = r.final_return = score
        return r

    h, w = canonical_checksum("suite/hopper/medium-v1"), canonical_checksum("suite/walker2d/medium-v1")
    old = "62abb582" + "0" * 56  # walker2d-medium-v1 built from the first (replaced) medium policy
    recs = [rec(s, 30.0 + s, h, "hopper-medium-v1") for s in range(3)]
    recs += [rec(s, 40.0 + s, w, "walker2d-medium-v1") for s in range(3)]
    recs += [rec(s, 20.0 + s, old, "walker2d-medium-replay-v1") for s in range(3)]
    rows = table_rows(recs)
    assert sorted(task_label(r) for r in rows) == ["hopper-medium-v1", "walker2d-medium-replay-v1 [data 62abb582…]",
                                                    "walker2d-medium-v1"]
    (agg,) = aggregate_rows(rows)
    assert agg["n_tasks"] == 2 and agg["n_runs"] == 6  # hopper and walker2d medium; the labelled cell is left out
