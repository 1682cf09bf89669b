"""`suite reproduce TABLE`: run every (method, task, seed) of a published table from a recipe file.

A recipe (``leaderboards/recipes/<name>.json``) lists the methods, tasks, seeds, updates per run and the
headline metric of one published table, with the published numbers' file and citation:

    {"name": "corl-d4rl-mujoco", "citation": "...", "published": "corl_d4rl.json", "metric": "final_score",
     "methods": ["bc", "td3bc", "iql", "cql"], "tasks": ["d4rl/hopper-medium-v2", ...], "seeds": 5,
     "steps": 1000000, "data": "how to get the datasets"}

The recipe expands into jobs (method x task x seed); a job whose run already finished under ``--out`` (a
record with status ok and the planned updates) is skipped, and an unfinished one resumes from its checkpoint,
so a killed reproduction continues with the same command. Tasks whose data is missing are named with the
recipe's instructions before anything runs. Jobs run in a local process pool (``--workers``, one torch thread
each) or on Ray (``--executor ray``: a local instance, or ``--address`` of a cluster).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import SuiteError

RECIPES = Path(__file__).resolve().parent.parent / "leaderboards" / "recipes"


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
        return Recipe(name=d["name"], citation=d["citation"], published=d.get("published"),
                      metric=d.get("metric", "final_score"), methods=tuple(d["methods"]), tasks=tuple(d["tasks"]),
                      seeds=int(d["seeds"]), steps=int(d["steps"]), data=d.get("data", ""),
                      description=d.get("description", ""))
    except (ValueError, KeyError, TypeError) as e:
        raise SuiteError(f"{path}: not a valid recipe ({type(e).__name__}: {e})") from None


def expand(recipe: Recipe, seeds: int | None = None, steps: int | None = None) -> list[tuple[str, str, int, int]]:
    """(method, task id, seed, steps) for every run of the recipe, in a fixed order."""
    from . import methods, tasks

    for m in recipe.methods:
        methods.get_method(m)
    ids = [tasks.get_task(t).id for t in recipe.tasks]
    n_seeds, n_steps = seeds or recipe.seeds, steps or recipe.steps
    return [(m, t, s, n_steps) for m in recipe.methods for t in ids for s in range(n_seeds)]


def finished(out: str | Path, method: str, task: str, seed: int, steps: int) -> bool:
    """A run of this job already finished with status ok and the planned number of updates."""
    from .results import load_record

    root = Path(out) / method / task
    for path in root.glob(f"seed{seed}-*/record.json"):
        try:
            rec = load_record(path)
        except Exception:  # an unreadable record is not a finished run
            continue
        if rec.status == "ok" and rec.steps == steps:
            return True
    return False


def missing_data(recipe: Recipe, jobs) -> list[str]:
    from . import tasks
    from .data import missing

    out = []
    for t in sorted({j[1] for j in jobs}):
        spec = tasks.get_task(t)
        if spec.dataset is not None and missing(spec.dataset) and spec.dataset.source != "recipe":
            out.append(t)
    return out


def plan(recipe: Recipe, out: str | Path, seeds: int | None = None, steps: int | None = None):
    """(jobs to run, jobs already finished)."""
    jobs = expand(recipe, seeds, steps)
    done = [j for j in jobs if finished(out, *j)]
    todo = [j for j in jobs if j not in done]
    return todo, done


def reproduce(name: str, out: str | Path = "runs", seeds: int | None = None, steps: int | None = None,
              executor: str = "local", workers: int = 1, threads: int = 1, address: str | None = None,
              eval_every: int | None = None, eval_episodes: int | None = None, build_missing: bool = True,
              log=print):
    from .executors import Job, execute
    from .runner import RunOptions

    recipe = load_recipe(name)
    todo, done = plan(recipe, out, seeds, steps)
    lacking = missing_data(recipe, todo)
    if lacking:
        raise SuiteError(f"recipe {recipe.name} needs data that is not on this machine: {', '.join(lacking)}. "
                         f"{recipe.data}")
    log(f"{recipe.name}: {len(todo) + len(done)} runs, {len(done)} already finished, {len(todo)} to run "
        f"({recipe.citation})")
    jobs = [Job(m, t, RunOptions(seed=s, steps=n, eval_every=eval_every, eval_episodes=eval_episodes, out=out,
                                 resume=True, progress=workers <= 1 and executor == "local",
                                 build_missing=build_missing))
            for m, t, s, n in todo]
    return execute(jobs, executor, workers, address, threads) if jobs else []
