"""Checks that a run record can stand on a leaderboard: schema, status, provenance, a registered task whose
spec still equals the recorded one, and (where the dataset is on this machine) the same dataset checksum."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .results import RunRecord, load_record

REQUIRED_PROVENANCE = ("git_revision", "git_dirty", "packages", "device")


def _as_json(value):
    return json.loads(json.dumps(value))


def problems(rec: RunRecord) -> list[str]:
    from . import tasks
    from .data import store

    out = []
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


def submit(path: str | Path, dest: str | Path) -> Path:
    rec = load_record(path)
    target = Path(dest) / rec.method / rec.task / f"{rec.run_id}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target
