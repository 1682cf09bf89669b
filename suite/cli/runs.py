"""`suite ls`, `suite run`, `suite sweep`: list what is registered and train or sample."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MissingDatasetError, SuiteError
from . import app


class What(str, Enum):
    tasks = "tasks"
    methods = "methods"
    all = "all"


@app.command("ls")
def ls(
    what: Annotated[What, typer.Argument(help="tasks, methods or all")] = What.all,
    kind: Annotated[str | None, typer.Option(help="only tasks of this kind")] = None,
):
    """List registered tasks and methods."""
    from .. import methods, tasks
    from ..data import missing

    def show(title: str, rows: list[tuple[str, ...]]) -> None:  # columns as wide as their longest entry
        typer.echo(f"{title}:")
        widths = [max((len(r[i]) for r in rows), default=0) for i in range(len(rows[0]) - 1)] if rows else []
        for r in rows:
            typer.echo("  " + " ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + " " + r[-1])

    if what in (What.tasks, What.all):
        rows = []
        for spec in tasks.list_tasks(kind):
            have = "" if spec.dataset is None else ("  [data: missing]" if missing(spec.dataset) else "  [data: built]")
            rows.append((spec.id, spec.kind, spec.description + have))
        show("tasks", rows)
    if what in (What.methods, What.all):
        show("methods", [(name, ",".join(m.task_kinds), m.description) for name, m in methods.registry.items()])
    for line in methods.PLUGIN_ERRORS:
        typer.echo(f"warning: {line}", err=True)


@app.command("run")
def run(
    method: Annotated[str, typer.Argument(help="method name, e.g. odice, bc, iql")],
    task: Annotated[str, typer.Argument(help="task id, e.g. hopper-medium (newest version) or hopper-medium-v0")],
    seed: Annotated[int | None, typer.Option(help="seeds everything (default 0)")] = None,
    seeds: Annotated[str | None, typer.Option(help="K seeds in one process, one stacked agent, one record each: "
                                              "0-4 or 0,3,7 (agent methods)")] = None,
    steps: Annotated[int | None, typer.Option(help="training updates (default: the task's protocol)")] = None,
    eval_every: Annotated[int | None, typer.Option(
        "--eval-every", help="evaluate every K updates (default: the task's protocol, 5000 on MuJoCo tasks)")] = None,
    eval_episodes: Annotated[int | None, typer.Option("--eval-episodes", help="episodes per evaluation (default: the "
                                                      "task's protocol, 10 on MuJoCo tasks)")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    out: Annotated[Path, typer.Option(envvar="SUITE_RUNS", help="runs directory")] = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="config override key=value (repeatable)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the latest unfinished run of this seed")] = False,
    build_missing: Annotated[bool, typer.Option("--build-missing", help="build a missing suite dataset first")] = False,
    build_steps: Annotated[int | None, typer.Option(help="dataset size when building (default: the recipe's)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    nfe: Annotated[int | None, typer.Option(
        help="generation and restoration: network calls per sample (= --set nfe=)")] = None,
    rtol: Annotated[float | None, typer.Option(help="generation: ODE rtol (= --set rtol=)")] = None,
    sde: Annotated[str | None, typer.Option(help="generation: vp, subvp or ve (= --set sde=)")] = None,
    sampler: Annotated[str | None, typer.Option(help="score-sde: sampler after training (= --set sampler=)")] = None,
    integrator: Annotated[str | None, typer.Option(help="dmcmc: integrator (= --set integrator=)")] = None,
    skp: Annotated[int | None, typer.Option(help="dmcmc: chain steps per output sample (= --set skp=)")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads. Default 1, never the slow choice on a "
                                              "busy machine (README, 'Speed on CPU'; `suite bench threads`)")] = 1,
):
    """Train METHOD on TASK, evaluating periodically (or sample, for generative methods); writes a run
    record (JSON) under --out."""
    from ..methods import get_method, parse_overrides
    from ..runner import RunOptions, prepare, run_seeds
    from ..runner import run as do_run
    from ..seeds import parse_seeds

    if threads < 1:
        raise SuiteError("--threads must be at least 1")
    if seeds is not None and seed is not None:
        raise SuiteError("give --seed S (one seed) or --seeds LIST (several), not both")
    seed_list = parse_seeds(seeds) if seeds is not None else None
    seed = 0 if seed is None else seed
    import torch

    torch.set_num_threads(threads)
    overrides = parse_overrides(set_ or [])
    for key, value in (("nfe", nfe), ("rtol", rtol), ("sde", sde), ("sampler", sampler),
                       ("integrator", integrator), ("skp", skp)):
        if value is not None:
            overrides[key] = str(value)
    opts = RunOptions(
        seed=seed_list[0] if seed_list else seed,
        seeds=seed_list,
        steps=steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        device=device,
        out=out,
        overrides=overrides,
        resume=resume,
        build_missing=build_missing,
        build_steps=build_steps,
        progress=progress,
    )
    if get_method(method).kind == "generative":
        if seed_list is not None:
            raise SuiteError("--seeds trains agents; run a generative method once per --seed")
        rec = do_run(method, task, opts)
        typer.echo(_generative_summary(rec, Path(out) / rec.method / rec.task / rec.run_id / "record.json"))
        if rec.status != "ok":
            typer.echo(f"run {rec.status}: {rec.error}", err=True)
            raise typer.Exit(1)
        return
    try:
        prepared = prepare(method, task, opts)  # the task is prepared once, here
    except MissingDatasetError:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise  # never hang on a prompt in a non-interactive run
        if not typer.confirm(f"The dataset for {task} is not built. Build it now?", default=True):
            raise
        opts.build_missing = True
        prepared = prepare(method, task, opts)
    recs = run_seeds(method, task, opts, prepared)
    for rec in recs:
        path = Path(out) / rec.method / rec.task / rec.run_id / "record.json"
        score = f"{rec.final_score:.1f}" if rec.final_score is not None else "n/a"
        best = f"{rec.best_score:.1f}" if rec.best_score is not None else "n/a"
        typer.echo(
            f"{rec.status}: {rec.method} on {rec.task} seed {rec.seed}: final normalised score {score} "
            f"(best {best}) after {rec.steps} updates, {rec.wall_time_s:.0f} s; record: {path}"
        )
    bad = [r for r in recs if r.status in ("failed", "diverged")]
    for rec in bad:
        typer.echo(f"run {rec.status}{'' if len(recs) == 1 else f' (seed {rec.seed})'}: {rec.error}", err=True)
    stopped = [r for r in recs if r.status == "running" and r.error and r.error.startswith("interrupted")]
    if stopped:
        again = f"--seeds {seeds}" if seed_list is not None else f"--seed {seed}"
        typer.echo(f"{stopped[0].error}: python -m suite run {method} {task} {again} --resume", err=True)
        raise typer.Exit(143 if "SIGTERM" in stopped[0].error else 130)
    if bad:
        raise typer.Exit(1)


_METRIC_WORDS = {"mmd2": "exact MMD² to the target", "fd_lenet": "Fréchet distance on LeNet features",
                 "kid": "KID on LeNet features", "psnr": "PSNR in dB against the clean images"}


def _generative_summary(rec, path: Path) -> str:
    """One human line: headline metric with its name, NFE as an integer (and its parts), samples, wall time."""
    m = rec.metrics
    name = rec.task_spec.get("extra", {}).get("metric", "")
    parts = [f"{rec.status}: {rec.method} on {rec.task} seed {rec.seed}"]
    if name in m:
        better = "lower" if rec.task_spec.get("extra", {}).get("lower_is_better", True) else "higher"
        parts.append(f"{name} = {m[name]:.4g} ({_METRIC_WORDS.get(name, name)}, {better} is better)")
    for extra in ("weight_error", "mode_w2", "kid", "ssim"):
        if extra in m and extra != name:
            parts.append(f"{extra} {m[extra]:.3g}")
    if "psnr_degraded" in m:
        parts.append(f"degraded input: psnr {m['psnr_degraded']:.4g}"
                     + (f", ssim {m['ssim_degraded']:.3g}" if "ssim_degraded" in m else ""))
    if "nfe" in m:
        nfe = f"NFE {int(m['nfe'])} per sample"
        if "integrator_nfe" in m:
            nfe += (f" (chain {int(m['classifier_calls_per_sample'])} + integrator {int(m['integrator_nfe'])} + 1; "
                    f"classifier {int(m['classifier_calls_per_sample'])}/sample, burn-in "
                    f"{int(m['burn_in_nfe_per_chain'])} NFE/chain, not counted)")
        parts.append(nfe)
    if "n_samples" in m:
        parts.append(f"{int(m['n_samples'])} samples in {m.get('sample_wall_time_s', 0):.1f} s")
    if "n_test" in m:
        parts.append(f"{int(m['n_test'])} images in {m.get('sample_wall_time_s', 0):.1f} s")
    return "; ".join(parts) + f"\nrecord: {path}"


@app.command("sweep")
def sweep(
    method: Annotated[str, typer.Argument(help="method name")],
    tasks: Annotated[list[str], typer.Argument(help="one or more task ids")],
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1,2",
    steps: Annotated[int | None, typer.Option(help="training updates per run")] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every")] = None,
    eval_episodes: Annotated[int | None, typer.Option("--eval-episodes")] = None,
    out: Annotated[Path, typer.Option(envvar="SUITE_RUNS")] = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="config override key=value (repeatable)")] = None,
    executor: Annotated[str, typer.Option(help="inprocess, local (process pool) or ray")] = "local",
    workers: Annotated[int, typer.Option(help="parallel runs for the local executor")] = 1,
    threads: Annotated[int, typer.Option(help="torch threads per run")] = 1,
    address: Annotated[str | None, typer.Option(help="Ray cluster address")] = None,
    resume: Annotated[bool, typer.Option(help="resume unfinished runs")] = False,
):
    """Run METHOD on every TASK for every seed (in-process, a local process pool, or Ray)."""
    from ..executors import Job, execute
    from ..methods import get_method, parse_overrides
    from ..runner import RunOptions
    from ..tasks import get_task

    get_method(method)
    resolved = [get_task(t).id for t in tasks]  # fail fast on a typo, before any run starts
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    jobs = [
        Job(
            method,
            t,
            RunOptions(
                seed=s,
                steps=steps,
                eval_every=eval_every,
                eval_episodes=eval_episodes,
                out=out,
                overrides=parse_overrides(set_ or []),
                resume=resume,
                progress=workers <= 1,
            ),
        )
        for t in resolved
        for s in seed_list
    ]
    for rec in execute(jobs, executor, workers, address, threads):
        score = f"{rec.final_score:.1f}" if rec.final_score is not None else "n/a"
        typer.echo(f"{rec.status}: {rec.method} {rec.task} seed {rec.seed}: final {score} ({rec.steps} updates)")
