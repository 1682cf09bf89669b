"""`suite reproduce TABLE`: run every (method, task, seed) of a published table from a recipe file.

A recipe (``leaderboards/recipes/<name>.json``) lists the methods, tasks, seeds, updates per run and the
headline metric of one published table, with the published numbers' file and citation:

    {"name": "corl-d4rl-mujoco", "citation": "...", "published": "corl_d4rl.json", "metric": "final_score",
     "methods": ["bc", "td3bc", "iql", "cql"], "tasks": ["d4rl/hopper-medium-v2", ...], "seeds": 5,
     "steps": 1000000, "data": "how to get the datasets"}

A table whose cells are not a full methods x tasks grid lists ``groups`` instead (each with its own methods and
tasks, and a label such as a priority); ``methods`` / ``tasks`` are then their union:

    {"groups": [{"label": "priority 1", "methods": ["odice", "iql"], "tasks": ["hopper-medium-v1", ...]}, ...]}

The recipe expands into jobs (method x task x seed); a job whose run already finished under ``--out`` (a
record with status ok and the planned updates) is skipped, and an unfinished one resumes from its checkpoint,
so a killed reproduction continues with the same command. Tasks whose data is missing are named with the
recipe's instructions before anything runs. Jobs run in a local process pool (``--workers``, one torch thread
each) or on Ray (``--executor ray``: a local instance, or ``--address`` of a cluster). With
``--seeds-in-process`` the unfinished seeds of each (method, task) train together as one K-seed job
(`suite run --seeds`, one record per seed). ``--tasks`` restricts a reproduction to some of its tasks (ids or
shell patterns), e.g. the part of a recipe whose datasets exist; ``--methods`` to some of its methods (e.g. the
cheap BC cells first, when a session has less time left than one O-DICE cell needs).

``--publish DIR`` (e.g. ``leaderboards/runs``, the committed records) makes a reproduction survive a machine that
loses ``--out``: a job with a finished record under DIR (``DIR/<method>/<task>/seed<S>-*.json``, the flat layout
of committed records) is skipped too, and every finished record under ``--out`` is copied there as its job
finishes (and at the start, for runs that finished before), so that it can be committed at once. Only the record
is copied: checkpoints and TensorBoard logs stay under ``--out``.

As each job ends, one line says how far the reproduction is (``[7/15]``), what the job gave (each seed's final
score, or its status) and, at the pace so far, how long the rest should take: with ``--workers`` above 1 there
are no progress bars (several runs share the terminal), so these lines are the progress of a long grid.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SuiteError

RECIPES = Path(__file__).resolve().parent.parent / "leaderboards" / "recipes"


@dataclass(frozen=True)
class Group:
    label: str
    methods: tuple[str, ...]
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    citation: str
    published: str | None
    metric: str
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: int
    steps: int
    data: str = ""
    description: str = ""
    groups: tuple[Group, ...] = ()

    def cells(self) -> list[tuple[str, str]]:
        """(method, task) of every cell, group by group, without repeats."""
        groups = self.groups or (Group("", self.methods, self.tasks),)
        return list(dict.fromkeys((m, t) for g in groups for m in g.methods for t in g.tasks))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_recipe(name_or_path: str) -> Recipe:
    from .registry import did_you_mean

    path = Path(name_or_path)
    if not path.exists():
        path = RECIPES / f"{name_or_path}.json"
    if not path.exists():
        hint = did_you_mean(name_or_path, list_recipes())
        raise SuiteError(f"unknown recipe {name_or_path!r}{hint} (known: {', '.join(list_recipes())})")
    try:
        d = json.loads(path.read_text())
        groups = tuple(Group(str(g.get("label", "")), tuple(g["methods"]), tuple(g["tasks"]))
                       for g in d.get("groups", ()))
        if groups:
            d.setdefault("methods", list(dict.fromkeys(m for g in groups for m in g.methods)))
            d.setdefault("tasks", list(dict.fromkeys(t for g in groups for t in g.tasks)))
        return Recipe(name=d["name"], citation=d["citation"], published=d.get("published"), groups=groups,
                      metric=d.get("metric", "final_score"), methods=tuple(d["methods"]), tasks=tuple(d["tasks"]),
                      seeds=int(d["seeds"]), steps=int(d["steps"]), data=d.get("data", ""),
                      description=d.get("description", ""))
    except (ValueError, KeyError, TypeError) as e:
        raise SuiteError(f"{path}: not a valid recipe ({type(e).__name__}: {e})") from None


def select_tasks(recipe: Recipe, patterns: str | None) -> list[str]:
    """The recipe's task ids matching `patterns` (comma-separated ids or shell patterns; None: all)."""
    from .leaderboard import task_filter

    keep = task_filter(patterns)
    chosen = [t for t in recipe.tasks if keep(t)]
    if not chosen:
        raise SuiteError(f"--tasks {patterns!r} matches none of recipe {recipe.name}'s tasks "
                         f"({', '.join(recipe.tasks)})")
    return chosen


def select_methods(recipe: Recipe, names: str | None) -> list[str]:
    """The recipe's methods named in `names` (comma-separated; None: all). A name the recipe lacks is an error
    that lists the recipe's methods (and suggests the closest)."""
    if names is None:
        return list(recipe.methods)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    for n in chosen:
        if n not in recipe.methods:
            from .registry import did_you_mean

            raise SuiteError(f"--methods: recipe {recipe.name} has no method {n!r} (its methods: "
                             f"{', '.join(recipe.methods)}){did_you_mean(n, list(recipe.methods))}")
    if not chosen:
        raise SuiteError(f"--methods {names!r} names no method")
    return chosen


def expand(recipe: Recipe, seeds: int | None = None, steps: int | None = None, only: str | None = None,
           methods_only: str | None = None) -> list[tuple[str, str, int, int]]:
    """(method, task id, seed, steps) for every run of the recipe (of its tasks matching `only` and its methods
    named in `methods_only`), in a fixed order: cell by cell (group by group), seeds in order."""
    from . import methods, tasks

    for m in recipe.methods:
        methods.get_method(m)
    keep_methods = set(select_methods(recipe, methods_only))
    wanted = set(select_tasks(recipe, only))
    unknown = [t for t in recipe.tasks if t in wanted and t not in tasks.registry]
    if unknown:
        raise SuiteError(f"recipe {recipe.name} names tasks this suite does not register: {', '.join(unknown)} "
                         "(suite tasks of a version appear once its behaviour policies are shipped, see "
                         "suite/data/policies/README.md); run the rest with --tasks PATTERN")
    n_seeds, n_steps = seeds or recipe.seeds, steps or recipe.steps
    return [(m, tasks.get_task(t).id, s, n_steps) for m, t in recipe.cells()
            if t in wanted and m in keep_methods for s in range(n_seeds)]


def _finished_records(out: str | Path, method: str, task: str, seed: int, steps: int, flat: bool = False):
    """Paths of this job's records with status ok and the planned number of updates: run directories'
    ``record.json`` under a runs directory, or (``flat``) committed ``seed<S>-*.json`` files. Where the task's
    dataset has a canonical checksum (`suite.data.store.canonical_checksum`), only runs on that data count: a
    run on another build of the dataset (unpinned, another CPU) is not this cell's run and is made again."""
    from .data.store import task_canonical_checksum
    from .results import load_record

    want = task_canonical_checksum(task)

    root = Path(out) / method / task
    for path in sorted(root.glob(f"seed{seed}-*.json" if flat else f"seed{seed}-*/record.json")):
        try:
            rec = load_record(path)
        except Exception:  # an unreadable record is not a finished run
            continue
        if rec.status == "ok" and rec.steps == steps and (
                want is None or rec.provenance.get("dataset_checksum") == want):
            yield path


def finished(out: str | Path, method: str, task: str, seed: int, steps: int,
             published: str | Path | None = None) -> bool:
    """A run of this job already finished with status ok and the planned number of updates (under `out`, or
    as a committed record under `published`)."""
    if next(_finished_records(out, method, task, seed, steps), None) is not None:
        return True
    return published is not None and next(_finished_records(published, method, task, seed, steps, flat=True),
                                          None) is not None


def publish_records(out: str | Path, dest: str | Path, jobs) -> list[Path]:
    """Copy the finished records of `jobs` ((method, task, seed, steps)) from `out` to `dest` as
    ``dest/<method>/<task>/<run name>.json``; records already there are left alone. Returns the new files."""
    import shutil

    new = []
    for m, t, s, n in jobs:
        for src in _finished_records(out, m, t, s, n):
            dst = Path(dest) / m / t / f"{src.parent.name}.json"
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_suffix(".json.tmp")
                shutil.copyfile(src, tmp)
                tmp.replace(dst)  # never a half-copied record under dest
                new.append(dst)
    return new


def missing_data(recipe: Recipe, jobs) -> list[str]:
    from . import tasks
    from .data import missing

    out = []
    for t in sorted({j[1] for j in jobs}):
        spec = tasks.get_task(t)
        if spec.dataset is not None and missing(spec.dataset) and spec.dataset.source != "recipe":
            out.append(t)
    return out


def plan(recipe: Recipe, out: str | Path, seeds: int | None = None, steps: int | None = None,
         only: str | None = None, published: str | Path | None = None, methods_only: str | None = None):
    """(jobs to run, jobs already finished)."""
    jobs = expand(recipe, seeds, steps, only, methods_only)
    done = [j for j in jobs if finished(out, *j, published=published)]
    todo = [j for j in jobs if j not in done]
    return todo, done


def time_estimate(todo: list[tuple[str, str, int, int]], record_dirs: list[str | Path | None],
                  workers: int = 1) -> list[str]:
    """What the runs of `todo` should cost, from the finished records under `record_dirs` (e.g. --out and
    --publish): per method, the median wall seconds per update of its finished runs (a K-seed run's share is
    its time over K) times the updates to run. Lines for `suite reproduce --dry-run`; an estimate, since wall
    times depend on the machine and its load when they were recorded."""
    import statistics

    from .results import iter_records

    runs: dict[str, object] = {}  # by run id: a record published from --out is in both folders, counted once
    for d in record_dirs:
        if d is not None and Path(d).exists():
            runs.update((r.run_id or str(p), r) for p, r in iter_records(d))
    per_update: dict[str, list[float]] = {}
    for r in runs.values():
        if r.status == "ok" and r.steps and r.wall_time_s:
            k = len(r.provenance.get("seeds_in_process") or [0])
            per_update.setdefault(r.method, []).append(r.wall_time_s / k / r.steps)
    updates: dict[str, list[int]] = {}
    for m, _, _, n in todo:
        updates.setdefault(m, []).append(n)
    lines, total, unknown = [], 0.0, []
    for m, ns in updates.items():
        runs = f"{m}: {len(ns)} run{'s' * (len(ns) != 1)}"
        if m not in per_update:
            lines.append(f"{runs}, no finished record to time them by")
            unknown.append(m)
            continue
        rate = statistics.median(per_update[m])
        total += rate * sum(ns)
        lines.append(f"{runs}, ~{_duration(rate * sum(ns) / len(ns))} each (median of {len(per_update[m])} "
                     f"finished records)")
    if total:
        lines.append(f"in all ~{_duration(total)} of one worker, ~{_duration(total / max(1, workers))} at "
                     f"--workers {workers}" + (f" (without {', '.join(unknown)})" if unknown else ""))
    return lines


def reproduce(name: str, out: str | Path = "runs", seeds: int | None = None, steps: int | None = None,
              executor: str = "local", workers: int = 1, threads: int = 1, address: str | None = None,
              eval_every: int | None = None, eval_episodes: int | None = None, build_missing: bool = True,
              log=print, seeds_in_process: bool = False, only: str | None = None,
              publish: str | Path | None = None, methods_only: str | None = None):
    from .executors import Job, execute
    from .runner import RunOptions

    recipe = load_recipe(name)
    if publish is not None:
        for p in publish_records(out, publish, expand(recipe, seeds, steps, only, methods_only)):
            log(f"published {p}")
    todo, done = plan(recipe, out, seeds, steps, only, publish, methods_only)
    lacking = missing_data(recipe, todo)
    if lacking:
        raise SuiteError(f"recipe {recipe.name} needs data that is not on this machine: {', '.join(lacking)}. "
                         f"{recipe.data}")
    log(f"{recipe.name}: {len(todo) + len(done)} runs, {len(done)} already finished, {len(todo)} to run "
        f"({recipe.citation})")
    common = dict(eval_every=eval_every, eval_episodes=eval_episodes, out=out, resume=True,
                  progress=workers <= 1 and executor == "local", build_missing=build_missing)
    if seeds_in_process:  # one K-seed job per (method, task, steps): its unfinished seeds together
        cells: dict[tuple[str, str, int], list[int]] = {}
        for m, t, s, n in todo:
            cells.setdefault((m, t, n), []).append(s)
        jobs = [Job(m, t, RunOptions(seeds=tuple(ss), steps=n, **common)) for (m, t, n), ss in cells.items()]
    else:
        jobs = [Job(m, t, RunOptions(seed=s, steps=n, **common)) for m, t, s, n in todo]

    started, finished = time.monotonic(), [0]

    def on_done(job, recs) -> None:
        finished[0] += 1
        log(progress_line(finished[0], len(jobs), job.method, job.task, recs, time.monotonic() - started))
        if publish is None:
            return
        seeds_of = job.options.seeds or (job.options.seed,)  # copied at once: a later kill cannot lose them
        for p in publish_records(out, publish, [(job.method, job.task, s, job.options.steps) for s in seeds_of]):
            log(f"published {p}")

    return execute(jobs, executor, workers, address, threads, on_done=on_done) if jobs else []


def _duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 60 else f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def progress_line(done: int, total: int, method: str, task: str, recs: list, elapsed: float) -> str:
    """One line as a reproduction's job ends: how far the reproduction is, what the job gave (per seed: status
    and final score) and when the rest should end at the pace so far (jobs finished per wall second, which
    counts every worker; resumed jobs finish early and make it optimistic)."""
    runs = ", ".join(f"seed {r.seed} " + (f"{r.final_score:.1f}" if r.status == "ok" and r.final_score is not None
                                          else r.status) for r in recs) or "not started (stopped)"
    line = f"[{done}/{total}] {method} {task}: {runs} · {_duration(elapsed)} so far"
    if done < total:
        line += f", ~{_duration(elapsed / done * (total - done))} to go"
    return line
