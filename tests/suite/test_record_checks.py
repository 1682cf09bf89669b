"""Record validation tampered field by field: every check of suite.validate names exactly the field that was
changed (each expected message is written out here), and the content digest is pinned to a hand-written
canonical form. Written against the mutants that survived test_faults.py / test_results.py.

The expected normalised scores are D4RL's definition, 100 (R - R_min) / (R_max - R_min), computed here from the
task's registered references (min_return, max_return), not by the code under test. The dataset store is
replaced by a dictionary (no Minari build): problems() only asks it whether a dataset exists and for its
recorded checksum.

Equivalent mutants left alive (they behave identically on every input):
- content_digest, ``allow_nan=False`` -> ``allow_nan=None``: json only tests ``not allow_nan``.
"""

import dataclasses
import hashlib
import json

import pytest

from suite import tasks, validate
from suite.data import store
from suite.results import EvalPoint, RunRecord, content_digest

TASK = "hopper-random-v0"  # offline-rl, with references
GOOD_SUM = "c0ffee" * 10 + "abcd"  # a 64-hex dataset checksum
DS = "suite/hopper/random-v0"


def _norm(ret, refs):
    if refs is None:
        return None
    return 100.0 * (ret - refs["min_return"]) / (refs["max_return"] - refs["min_return"])


def _record(task=TASK, **changes) -> RunRecord:
    spec = tasks.get_task(task).to_dict()
    refs = spec["references"]
    curve = [EvalPoint(step, rets, sum(rets) / len(rets), _norm(sum(rets) / len(rets), refs))
             for step, rets in ((100, [120.0, 180.0]), (200, [400.0, 460.0]), (300, [300.0, 340.0]))]
    rec = RunRecord(method="bc", task=task, seed=0, config={}, task_spec=spec, status="ok", curve=curve,
                    final_score=curve[-1].normalized_score, best_score=curve[1].normalized_score,
                    final_return=curve[-1].mean_return,
                    provenance={"git_revision": "abc", "git_dirty": False, "packages": {}, "device": "cpu",
                                "dataset_id": DS, "dataset_checksum": GOOD_SUM})
    return dataclasses.replace(rec, **changes)


class _Store:
    """suite.data.store's exists / load / metadata over a dict id -> recorded suite_checksum."""

    def __init__(self, checksums):
        self.checksums = checksums

    def exists(self, ds_id):
        return ds_id in self.checksums

    def load(self, ds_id):
        return {"id": ds_id, "meta": {"suite_checksum": self.checksums[ds_id]}}  # KeyError: never built


@pytest.fixture
def local_store(monkeypatch):
    fake = _Store({DS: GOOD_SUM})
    monkeypatch.setattr(store, "exists", fake.exists)
    monkeypatch.setattr(store, "load", fake.load)
    monkeypatch.setattr(store, "metadata", lambda ds: ds["meta"])
    return fake


def _raw(rec):
    d = rec.to_dict()
    d["digest"] = content_digest(d)
    return d


def test_a_consistent_record_has_no_problems(local_store):
    rec = _record()
    assert validate.problems(rec, _raw(rec)) == []
    il = _record("hopper-expert-1traj-v0")  # offline imitation: the same dataset checks
    assert il.task_spec["kind"] == "offline-il" and validate.problems(il) == []
    del il.provenance["dataset_checksum"]
    assert validate.problems(il) == ["provenance lacks the dataset checksum"]


@pytest.mark.parametrize("field,value,message", [
    ("final_score", 99.9, "final_score 99.9 is not the last evaluation's {last_score}"),
    ("final_return", 1.0, "final_return 1.0 is not the last evaluation's 320.0"),
    ("best_score", 12.5, "best_score 12.5 is not the curve's best"),
    ("status", "diverged", "status is 'diverged', not 'ok'"),
])
def test_each_record_field_is_checked(local_store, field, value, message):
    rec = _record(**{field: value})
    last_score = _record().curve[-1].normalized_score
    assert validate.problems(rec) == [message.format(last_score=last_score)]


def test_each_curve_field_is_checked(local_store):
    rec = _record()
    rec.curve[0].mean_return = 151.0  # the mean of [120, 180] is 150, and the score was made from 150
    want0 = _norm(151.0, rec.task_spec["references"])
    assert validate.problems(rec) == [
        "curve step 100: mean_return 151.0 is not the mean of its returns",
        f"curve step 100: normalized_score {rec.curve[0].normalized_score} != {want0:.6g} from its returns"]
    rec = _record()
    rec.curve[1].normalized_score += 1.0  # a better middle point: and best_score no longer is the best
    want1 = _norm(430.0, rec.task_spec["references"])
    assert validate.problems(rec) == [
        f"curve step 200: normalized_score {rec.curve[1].normalized_score} != {want1:.6g} from its returns",
        f"best_score {rec.best_score} is not the curve's best"]


def test_score_checks_without_references_or_curve():
    no_refs = _record(task_spec={"references": None})
    for p in no_refs.curve:  # nothing to recompute the scores from: not checked, not a crash
        p.normalized_score = 7.0
    no_refs = dataclasses.replace(no_refs, final_score=7.0, best_score=7.0)
    assert validate.score_problems(no_refs) == []
    only_min = _record()
    only_min.task_spec = {"references": {"min_return": 0.0}}
    only_min.curve[0].normalized_score = 55.0
    assert validate.score_problems(dataclasses.replace(only_min, best_score=max(
        p.normalized_score for p in only_min.curve))) == []
    not_a_dict = _record(task_spec=None)
    assert validate.score_problems(not_a_dict) == []
    unscored = _record(task_spec={"references": None}, final_score=None, best_score=None)
    for p in unscored.curve:
        p.normalized_score = None
    assert validate.score_problems(unscored) == []
    for final, best in ((5.0, None), (None, 5.0), (5.0, 5.0)):
        bare = _record(curve=[], final_score=final, best_score=best, final_return=None)
        assert validate.score_problems(bare) == ["scores without an evaluation curve"], (final, best)
    assert validate.score_problems(_record(curve=[], final_score=None, best_score=None, final_return=None)) == []


def test_digest_checks(local_store):
    rec = _record()
    raw = _raw(rec)
    assert validate.problems(rec, raw) == []
    edited = dict(raw, seed=1)
    assert validate.problems(rec, edited) == [
        "record content does not match its digest (edited after it was written)"]
    assert validate.problems(rec, dict(raw, digest=None)) == [
        "record has no content digest (written by hand or by an older version)"]


@pytest.mark.parametrize("key", validate.REQUIRED_PROVENANCE)
def test_each_required_provenance_field_is_checked(local_store, key):
    rec = _record()
    del rec.provenance[key]
    assert validate.problems(rec) == [f"provenance lacks {key!r}"]


def test_dirty_tree_spec_and_task_id(local_store):
    rec = _record()
    rec.provenance["git_dirty"] = True
    assert validate.problems(rec) == ["run was made from a dirty git tree (uncommitted changes)"]
    rec = _record()
    rec.task_spec = dict(rec.task_spec, eval_episodes=rec.task_spec["eval_episodes"] + 1)
    assert validate.problems(rec) == [f"the registered spec of {TASK} differs from the recorded one"]
    alias = tasks.get_task("hopper-random").id  # an unversioned alias resolves to the newest version
    rec = dataclasses.replace(_record(alias), task="hopper-random")
    assert validate.problems(rec) == ["task id 'hopper-random' is not a full versioned id"]
    rec = dataclasses.replace(_record(), task="hopper-nope-v0")
    with pytest.raises(Exception) as err:
        tasks.get_task("hopper-nope-v0")
    assert validate.problems(rec) == [str(err.value)]


def test_dataset_checks(local_store):
    assert validate.problems(_record(curve=[], final_score=None, best_score=None, final_return=None)) == [
        "no evaluation curve"]
    rec = _record()
    del rec.provenance["dataset_checksum"]
    assert validate.problems(rec) == ["provenance lacks the dataset checksum"]
    other = "0123456789ab" + "f" * 52
    rec = _record()
    rec.provenance["dataset_checksum"] = other
    assert validate.problems(rec) == [
        f"dataset {DS} on this machine has checksum {GOOD_SUM[:12]}…, the run used {other[:12]}…"]
    rec.provenance["dataset_id"] = "suite/hopper/never-built-v0"  # not on this machine: nothing to compare
    assert validate.problems(rec) == []
    local_store.checksums[DS] = None  # built before checksums were recorded: nothing to compare either
    rec.provenance["dataset_id"] = DS
    assert validate.problems(rec) == []


def test_generation_records_skip_the_dataset_checks(local_store):
    rec = _record("digits-8x8-v0", curve=[], final_score=None, best_score=None,
                  final_return=None, provenance={"git_revision": "abc", "git_dirty": False, "packages": {},
                                                 "device": "cpu"})
    assert validate.problems(rec) == []


def test_close_is_relative_above_one_absolute_below_and_none_only_equals_none():
    assert validate._close(None, None)
    assert not validate._close(None, 1.0) and not validate._close(1.0, None)
    assert validate._close(0.0, 1e-9)  # the tolerance itself is inside: |a - b| <= 1e-9 max(1, |b|)
    assert not validate._close(0.5 + 1.5e-9, 0.5)  # below 1 the tolerance is absolute, 1e-9
    assert validate._close(1e6 + 1e-4, 1e6)  # above 1 it is relative: 1e-9 * 1e6 = 1e-3
    assert not validate._close(1e6 + 2e-3, 1e6)


def test_content_digest_is_sha256_of_the_canonical_json():
    d = {"b": 1, "a": [1.5, "x", None], "digest": "ignored", "c": {"z": True, "y": 2}}
    canonical = '{"a":[1.5,"x",null],"b":1,"c":{"y":2,"z":true}}'  # sorted keys, no spaces, digest left out
    assert content_digest(d) == hashlib.sha256(canonical.encode()).hexdigest()
    assert content_digest(dict(d, digest="other")) == content_digest(d)
    with pytest.raises(ValueError):
        content_digest({"x": float("nan")})  # NaN is not JSON: a record holding one cannot be digested
    assert json.loads(canonical) == {k: v for k, v in d.items() if k != "digest"}
