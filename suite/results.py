"""Run records: the JSON schema of one run and an atomic store.

One JSON file per run, written atomically (temporary file in the same directory, fsync, rename), so a
killed process never leaves a half-written record. A record carries everything needed to regenerate a
table entry and to reproduce it: method, task id with version, seed, fully resolved config, evaluation
curve, final and best scores (labelled as such), status, timing and provenance.

Statuses: ``ok`` (finished), ``running`` (checkpointed, not finished), ``failed`` (an exception),
``diverged`` (a non-finite loss; its scores are never used in tables).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .allocator import is_applied as allocator_applied

SCHEMA_VERSION = 1
STATUSES = ("ok", "running", "failed", "diverged")


@dataclass
class EvalPoint:
    step: int
    returns: list[float]  # one undiscounted return per evaluation episode
    mean_return: float
    normalized_score: float | None  # 100 * (return - ref_min) / (ref_max - ref_min), None without references
    normalized_std: float | None = None


@dataclass
class RunRecord:
    method: str
    task: str  # full id with version
    seed: int
    config: dict[str, Any]
    task_spec: dict[str, Any]
    status: str = "running"
    steps: int = 0
    curve: list[EvalPoint] = field(default_factory=list)
    final_score: float | None = None  # normalised score of the last evaluation (the number tables report)
    best_score: float | None = None  # max over evaluations: optimistic, labelled, never the headline
    final_return: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # method-specific final metrics (generation)
    wall_time_s: float = 0.0
    updates_per_s: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    run_id: str = ""
    schema_version: int = SCHEMA_VERSION
    digest: str | None = None  # sha256 of the record's canonical JSON without this field (see content_digest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        d = dict(d)
        d["curve"] = [EvalPoint(**p) for p in d.get("curve", [])]
        return cls(**d)


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 1, allow_nan: bool = False) -> Path:
    """Write JSON atomically (temp file, fsync, rename). Records refuse NaN (``allow_nan=False``); studies, whose
    rows may hold a NaN metric of a failed cell, pass ``allow_nan=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent, sort_keys=True, allow_nan=allow_nan)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def content_digest(d: dict[str, Any]) -> str:
    """sha256 of a record's canonical JSON (sorted keys, no whitespace), ``digest`` left out. It is not a
    signature — anyone can recompute it — but an edit that forgets it is caught, and `validate` also
    recomputes every score from the curve, so an edit must be consistent everywhere to pass."""
    import hashlib

    body = {k: v for k, v in d.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def save_record(record: RunRecord, path: str | Path) -> Path:
    d = record.to_dict()
    record.digest = d["digest"] = content_digest(d)  # the object carries the digest it was written with
    return write_json_atomic(path, d)


def new_run_dir(out: str | Path, method: str, task_id: str, seed: int) -> Path:
    """``<out>/<method>/<task>/seed<S>-<timestamp>``: where every run, agent or generative, keeps its files."""
    import datetime as _dt

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(out) / method / task_id / f"seed{seed}-{stamp}"


def write_run_record(record: RunRecord, run_dir: str | Path) -> Path:
    """The one path by which a run's record is written: ``<run_dir>/record.json``, atomically."""
    return save_record(record, Path(run_dir) / "record.json")


def load_record(path: str | Path) -> RunRecord:
    with open(path) as f:
        return RunRecord.from_dict(json.load(f))


def iter_records(root: str | Path) -> list[tuple[Path, RunRecord]]:
    """Every run record (``record.json``) under `root`, skipping files that are not records."""
    out = []
    for p in sorted(Path(root).rglob("*.json")):
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(d, dict) and d.get("schema_version") == SCHEMA_VERSION and "method" in d and "task" in d:
            out.append((p, RunRecord.from_dict(d)))
    return out


def _git(*args: str) -> str | None:
    try:
        here = Path(__file__).resolve().parent.parent
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except Exception:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def provenance(device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Git revision + dirty flag, package versions, host and device."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("odice-suite", "torch", "numpy", "gymnasium", "mujoco", "minari", "scipy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    status = _git("status", "--porcelain", "--untracked-files=no")
    out = {
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "device": device,
        "malloc": "keep-freed" if allocator_applied() else "default",  # suite/allocator.py; speed only
    }
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            out["device_name"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    out.update(extra or {})
    return out
