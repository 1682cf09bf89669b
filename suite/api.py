"""The suite as a library, Gymnasium-style, for researchers with their own training loop:

    import suite
    task = suite.make("hopper-medium")                   # newest version, or a full id "hopper-medium-v0"
    dataset, arrays, episode_ends = task.dataset()       # Minari dataset + flat float32 transition arrays
    ev = task.evaluate(policy, seed=0)                   # the standard protocol: episodes, reset seeds, scores
    rec = suite.record("my-method", task, seed=0, config={...}, curve=[(step, ev), ...], out="runs")

``policy`` maps a batch of observations (torch float32, (B, obs_dim)) to actions in [-1, 1]^act_dim (torch or
numpy); the protocol rescales them to the environment's bounds. ``record`` writes a run record with the same
provenance (git revision, package versions, dataset checksum, protocol) and content digest as a `suite run`,
so `suite validate`, `suite audit` (for registered methods) and the tables treat it like any other run.

The CLI's runner evaluates with the same :class:`suite.evaluation.Evaluator`, so a score from ``evaluate`` is
the score the suite itself would report for that policy.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SuiteError
from .results import EvalPoint, RunRecord, new_run_dir, provenance, write_run_record

__all__ = ["Task", "Evaluation", "make", "record"]


@dataclass(frozen=True)
class Evaluation:
    """One evaluation under the task's protocol."""

    returns: list[float]  # one undiscounted return per episode
    mean_return: float
    normalized_score: float | None  # 100 (return - random) / (expert - random); None without references
    normalized_std: float | None
    seeds: list[int]  # the episodes' reset seeds

    def point(self, step: int) -> EvalPoint:
        return EvalPoint(step, list(self.returns), self.mean_return, self.normalized_score, self.normalized_std)


class Task:
    """A registered task: its spec, its data and its evaluation protocol."""

    def __init__(self, spec):
        self.spec = spec

    id = property(lambda self: self.spec.id)
    kind = property(lambda self: self.spec.kind)
    env_id = property(lambda self: self.spec.env_id)
    references = property(lambda self: self.spec.references)
    eval_episodes = property(lambda self: self.spec.eval_episodes)

    def __repr__(self) -> str:
        return f"Task({self.id!r}, kind={self.kind!r})"

    def dataset(self, *, build_missing: bool = False, build_steps: int | None = None):
        """(Minari dataset, arrays, episode_ends): arrays ``observations``, ``actions``, ``rewards``,
        ``next_observations``, ``terminals`` (float32), checked against the build checksum. A missing suite
        dataset is built first when ``build_missing``; otherwise the error names the command that builds it."""
        from . import data as suite_data

        if self.spec.dataset is None:
            raise SuiteError(f"task {self.id} has no offline dataset (kind {self.kind})")
        if not suite_data.store.exists(self.spec.dataset.dataset_id):
            if not build_missing or self.spec.dataset.source != "recipe":
                raise SuiteError(f"dataset {self.spec.dataset.dataset_id} is not on this machine; build it with "
                                 f"`python -m suite data build {self.spec.unversioned}` (or build_missing=True)")
            from .data.build import build

            refs = self.references.bounds if self.references else None
            build(self.spec.dataset, steps=build_steps, references=refs, progress=False)
        return suite_data.load_transitions(self.spec.dataset, self.id)

    def evaluate(self, policy: Callable, seed: int = 0, episodes: int | None = None,
                 device: str = "cpu") -> Evaluation:
        """Run ``policy`` on the task's evaluation protocol (``episodes`` default: the task's; reset seeds
        1_000_000 + 1000 seed + i, as every suite run) and score it."""
        import torch

        from .evaluation import Evaluator

        if self.env_id is None:
            raise SuiteError(f"task {self.id} has no evaluation environment (kind {self.kind})")
        n = episodes or self.eval_episodes

        def act(obs: torch.Tensor) -> torch.Tensor:
            a = policy(obs)
            return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a), dtype=torch.float32)

        ev = Evaluator(self.env_id, n, seed)
        try:
            returns = ev(act, torch.device(device))
        finally:
            ev.close()
        mean = float(np.mean(returns))
        refs = self.references
        score = refs.normalize(mean) if refs else None
        sstd = float(np.std([refs.normalize(r) for r in returns])) if refs else None
        return Evaluation([float(r) for r in returns], mean, score, sstd, list(ev.seeds))


def make(task_id: str) -> Task:
    """The task for an id (version-less ids resolve to the newest version; unknown ids suggest close ones)."""
    from . import tasks

    return Task(tasks.get_task(task_id))


def record(method: str, task: Task | str, seed: int, config: dict[str, Any] | Any,
           curve: Sequence[tuple[int, Evaluation] | EvalPoint], *, out: str | Path = "runs", steps: int | None = None,
           wall_time_s: float = 0.0, metrics: dict[str, float] | None = None, status: str = "ok",
           eval_every: int | None = None) -> RunRecord:
    """Write a run record from a custom loop: ``curve`` is [(update, Evaluation), ...] in update order (or
    EvalPoints); ``config`` a dict or dataclass of everything that defines the run. Scores (final, best) are
    computed from the curve; provenance names the dataset and its checksum. Returns the record (its path is
    ``<out>/<method>/<task>/seed<seed>-<stamp>/record.json``)."""
    from . import data as suite_data
    from .runner import _finish_scores

    task = make(task) if isinstance(task, str) else task
    points = [c if isinstance(c, EvalPoint) else c[1].point(int(c[0])) for c in curve]
    if any(b.step <= a.step for a, b in zip(points, points[1:], strict=False)):
        raise SuiteError("curve steps must increase")
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    spec = task.spec
    extra: dict[str, Any] = {"command": " ".join(sys.argv), "api": "suite.record"}
    if spec.dataset is not None:
        ds_id = spec.dataset.dataset_id
        checksum = None
        if suite_data.store.exists(ds_id):
            dataset = suite_data.store.load(ds_id)
            checksum = suite_data.store.metadata(dataset).get("suite_checksum") or suite_data.store.checksum(dataset)
        extra.update(dataset_id=ds_id, dataset_checksum=checksum,
                     references_source=spec.references.source if spec.references else None)
    n_steps = steps if steps is not None else (points[-1].step if points else 0)
    extra["protocol"] = {"steps": n_steps, "eval_every": eval_every or (points[0].step if points else None),
                         "eval_episodes": len(points[0].returns) if points else spec.eval_episodes}
    run_dir = new_run_dir(out, method, spec.id, seed)
    rec = RunRecord(method=method, task=spec.id, seed=seed, config=cfg, task_spec=spec.to_dict(), status=status,
                    steps=n_steps, curve=points, metrics=dict(metrics or {}), wall_time_s=wall_time_s,
                    run_id=run_dir.name, provenance=provenance("cpu", extra))
    _finish_scores(rec)
    write_run_record(rec, run_dir)
    return rec
