"""Commands over run records: `table`, `validate`, `submit`, `audit`, `site`, `plot`, `reproduce`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import SuiteError
from . import app

# `table` and `site`: the seeds a grid asks for per cell, so unfinished cells show as n/WANTED
SeedsWanted = Annotated[int | None, typer.Option(
    help="seeds each cell should have (a grid's, e.g. 5): cells with fewer show n/WANTED")]


def _check_seeds_wanted(n: int | None) -> None:
    if n is not None and n < 1:
        raise SuiteError(f"--seeds-wanted must be a positive number of seeds, not {n}")


@app.command("table")
def table(
    runs: Annotated[Path, typer.Option(envvar="SUITE_RUNS", help="runs directory to read records from")] = Path("runs"),
    metric: Annotated[str, typer.Option(help="final_score (headline) or best_score")] = "final_score",
    out: Annotated[Path | None, typer.Option(help="write the Markdown table here")] = None,
    published: Annotated[bool, typer.Option(help="add published numbers (labelled) below")] = True,
    tasks: Annotated[str | None, typer.Option(
        help="only records of these tasks: comma-separated ids or shell patterns, e.g. '*-v1' (one dataset "
             "version per table)")] = None,
    versus: Annotated[str | None, typer.Option(
        help="add, per task, whether this method's 95% CI lies above, below or overlapping each other method's")
    ] = None,
    seeds_wanted: SeedsWanted = None,
):
    """Mean ± std over seeds per method × task, as Markdown, from run records."""
    from ..leaderboard import markdown_table

    if metric not in ("final_score", "best_score"):
        raise SuiteError("--metric must be final_score or best_score")
    if not runs.exists():
        raise SuiteError(f"runs directory {runs} does not exist")
    _check_seeds_wanted(seeds_wanted)
    text = markdown_table(runs, metric, published, tasks=tasks, versus=versus, seeds_wanted=seeds_wanted)
    if out:
        out.write_text(text)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


def _records(paths: list[Path]):
    """(path, raw JSON, record, error) for every record given directly or found under a given directory; a
    file that cannot be read as a record comes back with its error instead of stopping the rest."""
    from ..results import RunRecord

    for p in paths:
        if p.is_dir():  # every JSON file: records are kept, other JSON (sidecars, manifests) skipped
            files = sorted(p.rglob("*.json"))
        elif p.exists():
            files = [p]
        else:
            raise SuiteError(f"{p}: no such file or directory")
        for f in files:
            try:
                claims = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                yield f, None, None, f"{f}: not a readable run record ({type(e).__name__}: {e})"
                continue
            if not (isinstance(claims, dict) and "method" in claims and "task" in claims):
                if not p.is_dir():
                    yield f, None, None, f"{f}: not a run record"
                continue
            try:
                rec = RunRecord.from_dict(claims)
            except (TypeError, ValueError, KeyError) as e:
                yield f, None, None, f"{f}: not a readable run record ({type(e).__name__}: {e})"
                continue
            yield f, claims, rec, None


@app.command("validate")
def validate(paths: Annotated[list[Path], typer.Argument(help="record.json files or directories of them")]):
    """Check run records for a leaderboard: digest, scores recomputed from the curve, status, provenance,
    task version and dataset checksum. Every file gets one line; exit 1 if any has a problem."""
    from ..validate import problems

    bad = 0
    for path, raw, rec, error in _records(paths):
        issues = [error] if error else problems(rec, raw)
        bad += bool(issues)
        typer.echo(f"{path}: " + ("ok" if not issues else "; ".join(issues)))
    if bad:
        raise typer.Exit(1)


@app.command("submit")
def submit(
    paths: Annotated[list[Path], typer.Argument(help="record.json files or directories of them")],
    to: Annotated[Path, typer.Option(help="leaderboard runs directory")] = Path("leaderboards/runs"),
    force: Annotated[bool, typer.Option(help="submit despite validation problems")] = False,
    replace: Annotated[bool, typer.Option(help="overwrite an entry that is already on the leaderboard")] = False,
    audit: Annotated[bool, typer.Option(help="re-run the first evaluation interval, compare (suite audit)")] = True,
    steps: Annotated[int | None, typer.Option(help="audit: updates to re-run (default: to the 1st evaluation)")] = None,
):
    """Validate run records, audit them (re-run the recorded config and seed for the first updates and compare
    the curve) and copy them into the leaderboard's runs directory (an existing entry is kept unless
    --replace). Says what was checked."""
    from ..audit import audit as do_audit
    from ..validate import problems
    from ..validate import submit as do_submit

    for path, raw, rec, error in _records(paths):
        issues = [error] if error else problems(rec, raw)
        if error or (issues and not force):
            raise SuiteError(f"{path} not submitted: " + "; ".join(issues))
        checked = "validated (digest, scores from the curve, provenance, task, dataset checksum)"
        if audit:
            rep = do_audit(path, steps=steps, skip_dirty=force)
            if not rep.ok and not force:
                raise SuiteError(f"{path} not submitted: audit failed: " + "; ".join(rep.problems))
            checked += "; audited: " + "; ".join(rep.checked[1:])
        typer.echo(f"{checked}\nsubmitted {path} -> {do_submit(path, to, replace=replace)}")


@app.command("site")
def site_cmd(
    runs: Annotated[Path, typer.Option(help="run records directory")] = Path("leaderboards/runs"),
    out: Annotated[Path, typer.Option(help="output folder (open index.html in a browser)")] = Path("site"),
    seeds_wanted: SeedsWanted = None,
):
    """A static leaderboard site (HTML, no server) from run records, published numbers and studies."""
    from ..site import build_site

    _check_seeds_wanted(seeds_wanted)
    typer.echo(f"wrote {build_site(runs, out, seeds_wanted=seeds_wanted)}")


@app.command("plot")
def plot_cmd(
    runs: Annotated[Path, typer.Option(help="run records directory")] = Path("leaderboards/runs"),
    out: Annotated[Path, typer.Option(help="where the PNGs go")] = Path("site/plots"),
):
    """Learning curves per task (mean and bootstrap 95% CI over seeds) and the aggregate IQM per method."""
    from ..plots import plot_runs

    made = plot_runs(runs, out)
    typer.echo(f"{len(made)} plots in {out}")


@app.command("reproduce")
def reproduce_cmd(
    table: Annotated[str, typer.Argument(help="a recipe name (leaderboards/recipes/) or a recipe file")],
    seeds: Annotated[int | None, typer.Option(help="seeds per (method, task) (default: the recipe's)")] = None,
    steps: Annotated[int | None, typer.Option(help="updates per run (default: the recipe's)")] = None,
    out: Annotated[Path, typer.Option(envvar="SUITE_RUNS", help="runs directory")] = Path("runs"),
    executor: Annotated[str, typer.Option(help="local (process pool) or ray")] = "local",
    workers: Annotated[int, typer.Option(help="parallel runs for the local executor")] = 1,
    threads: Annotated[int, typer.Option(help="torch threads per run")] = 1,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local instance)")] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every")] = None,
    eval_episodes: Annotated[int | None, typer.Option("--eval-episodes")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="list the runs (and which are finished) and what the rest should take, run nothing")] = False,
    seeds_in_process: Annotated[bool, typer.Option(
        help="train each cell's unfinished seeds together as one K-seed job (one record per seed)")] = False,
    tasks: Annotated[str | None, typer.Option(
        help="only these of the recipe's tasks: comma-separated ids or shell patterns, e.g. 'hopper-*'")] = None,
    methods: Annotated[str | None, typer.Option(
        help="only these of the recipe's methods: comma-separated names, e.g. 'bc,td3bc'")] = None,
    publish: Annotated[Path | None, typer.Option(
        help="copy each finished record here as its job ends (e.g. leaderboards/runs, to commit), and skip jobs "
             "whose record is already there")] = None,
):
    """Run every (method, task, seed) of a published table from its recipe: finished runs are skipped and
    unfinished ones resume, so a killed reproduction continues with the same command."""
    import torch

    from .. import reproduce as R

    if dry_run:
        recipe = R.load_recipe(table)
        todo, done = R.plan(recipe, out, seeds, steps, tasks, publish, methods)
        for m, t, s, n in R.expand(recipe, seeds, steps, tasks, methods):
            typer.echo(f"{'done' if (m, t, s, n) in done else 'todo'}  {m} {t} seed {s} ({n} updates)")
        typer.echo(f"{len(done)} finished, {len(todo)} to run")
        for line in R.time_estimate(todo, [out, publish], workers):
            typer.echo(f"  {line}")
        lacking = R.missing_data(recipe, todo)
        if lacking:
            typer.echo(f"missing data: {', '.join(lacking)}. {recipe.data}")
        return
    torch.set_num_threads(threads)
    recs = R.reproduce(table, out, seeds, steps, executor, workers, threads, address, eval_every, eval_episodes,
                       log=typer.echo, seeds_in_process=seeds_in_process, only=tasks, publish=publish,
                       methods_only=methods)
    typer.echo(f"{len(recs)} runs finished now; tables: python -m suite table --runs {out}")


@app.command("audit")
def audit_cmd(
    paths: Annotated[list[Path], typer.Argument(help="record.json files or directories of them")],
    steps: Annotated[int | None, typer.Option(help="updates to re-run (default: up to the first evaluation)")] = None,
    tolerance: Annotated[float, typer.Option(help="relative tolerance on mean returns across machine classes")] = 0.02,
    checkpoint: Annotated[Path | None, typer.Option(help="a shipped final checkpoint folder to re-evaluate")] = None,
):
    """Re-run each record's method with its recorded config, seed, task version and dataset for its first
    updates and compare the curve: identical on the same machine class, within --tolerance elsewhere.
    One line per record; exit 1 if any fails."""
    from ..audit import audit as do_audit

    bad = 0
    for path, _raw, _rec, error in _records(paths):
        if error:
            bad += 1
            typer.echo(f"{path}: {error}")
            continue
        rep = do_audit(path, steps=steps, tolerance=tolerance, checkpoint=checkpoint)
        bad += not rep.ok
        verdict = "ok (" + "; ".join(rep.checked) + ")" if rep.ok else "FAILED: " + "; ".join(rep.problems)
        typer.echo(f"{path}: {verdict}")
    if bad:
        raise typer.Exit(1)
