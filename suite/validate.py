"""Checks that a run record can stand on a leaderboard: schema, status, provenance, a registered task whose
spec still equals the recorded one, and (where the dataset is on this machine) the same dataset checksum."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import SuiteError
from .results import RunRecord, content_digest, load_record

REQUIRED_PROVENANCE = ("git_revision", "git_dirty", "packages", "device")


def _as_json(value):
    return json.loads(json.dumps(value))


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def score_problems(rec: RunRecord) -> list[str]:
    """Every score recomputed from the evaluation curve and the task's references: each point's mean return
    and normalised score, the final return and score, and the best score."""
    out = []
    refs = (rec.task_spec.get("references") or {}) if isinstance(rec.task_spec, dict) else {}
    lo, hi = refs.get("min_return"), refs.get("max_return")  # the fields of TaskSpec.references (References)
    for p in rec.curve:
        if p.returns and not _close(p.mean_return, sum(p.returns) / len(p.returns)):
            out.append(f"curve step {p.step}: mean_return {p.mean_return} is not the mean of its returns")
        if lo is not None and hi is not None and p.normalized_score is not None:
            want = 100.0 * (p.mean_return - lo) / (hi - lo)
            if not _close(p.normalized_score, want):
                out.append(f"curve step {p.step}: normalized_score {p.normalized_score} != {want:.6g} from its returns")
    if rec.curve:
        last = rec.curve[-1]
        scores = [p.normalized_score for p in rec.curve if p.normalized_score is not None]
        if not _close(rec.final_score, last.normalized_score):
            out.append(f"final_score {rec.final_score} is not the last evaluation's {last.normalized_score}")
        if not _close(rec.final_return, last.mean_return):
            out.append(f"final_return {rec.final_return} is not the last evaluation's {last.mean_return}")
        if not _close(rec.best_score, max(scores) if scores else None):
            out.append(f"best_score {rec.best_score} is not the curve's best")
    elif rec.final_score is not None or rec.best_score is not None:
        out.append("scores without an evaluation curve")
    return out


def problems(rec: RunRecord, raw: dict | None = None) -> list[str]:
    """Everything that keeps a record off a leaderboard. ``raw``: the record's JSON as stored (its digest is
    checked against its content)."""
    from . import tasks
    from .data import store

    out = []
    if raw is not None:
        if raw.get("digest") is None:
            out.append("record has no content digest (written by hand or by an older version)")
        elif raw["digest"] != content_digest(raw):
            out.append("record content does not match its digest (edited after it was written)")
    out += score_problems(rec)
    if rec.status != "ok":
        out.append(f"status is {rec.status!r}, not 'ok'")
    for key in REQUIRED_PROVENANCE:
        if key not in rec.provenance:
            out.append(f"provenance lacks {key!r}")
    if rec.provenance.get("git_dirty"):
        out.append("run was made from a dirty git tree (uncommitted changes)")
    try:
        spec = tasks.get_task(rec.task)
        if spec.id != rec.task:
            out.append(f"task id {rec.task!r} is not a full versioned id")
        elif _as_json(spec.to_dict()) != _as_json(rec.task_spec):  # a stored record reads tuples back as lists
            out.append(f"the registered spec of {rec.task} differs from the recorded one")
    except Exception as e:
        out.append(str(e))
        spec = None
    if spec is not None and spec.kind in ("offline-rl", "offline-il"):
        if not rec.curve:
            out.append("no evaluation curve")
        ds_id, checksum = rec.provenance.get("dataset_id"), rec.provenance.get("dataset_checksum")
        if not checksum:
            out.append("provenance lacks the dataset checksum")
        elif ds_id and store.exists(ds_id):
            local = store.metadata(store.load(ds_id)).get("suite_checksum")
            if local and local != checksum:
                out.append(f"dataset {ds_id} on this machine has checksum {local[:12]}…, the run used {checksum[:12]}…")
    return out


def read_raw(path: str | Path) -> tuple[dict, RunRecord]:
    """(stored JSON, RunRecord) of a record file, or a one-line CorruptFileError naming it."""
    from .errors import CorruptFileError

    try:
        raw = json.loads(Path(path).read_text())
        return raw, RunRecord.from_dict(raw)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CorruptFileError(f"{path}: not a readable run record ({type(e).__name__}: {e})") from None


def submit(path: str | Path, dest: str | Path, replace: bool = False) -> Path:
    rec = load_record(path)
    target = Path(dest) / rec.method / rec.task / f"{rec.run_id}.json"
    if target.exists() and not replace:
        raise SuiteError(f"{target} already exists; pass --replace to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target
