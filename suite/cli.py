"""`python -m suite` / `suite`: list, run, build data, make tables, benchmark.

User errors (unknown ids, missing datasets, bad config keys) print one line and exit with code 2."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .errors import MissingDatasetError, SuiteError


def _no_flag_types() -> None:
    """typer >= 0.2x prints every option's type; for on/off flags (and --help) that is only noise ("<bool>")."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - other typer versions print no types
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_no_flag_types()

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0], pretty_exceptions_enable=False
)
data_app = typer.Typer(no_args_is_help=True, help="Build, list, verify and import datasets.")
app.add_typer(data_app, name="data")


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
    from . import methods, tasks
    from .data import missing

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
    seed: Annotated[int, typer.Option(help="seeds everything")] = 0,
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
    from .methods import get_method, parse_overrides
    from .runner import RunOptions, prepare_task
    from .runner import run as do_run

    if threads < 1:
        raise SuiteError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)
    overrides = parse_overrides(set_ or [])
    for key, value in (("nfe", nfe), ("rtol", rtol), ("sde", sde), ("sampler", sampler),
                       ("integrator", integrator), ("skp", skp)):
        if value is not None:
            overrides[key] = str(value)
    opts = RunOptions(
        seed=seed,
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
        rec = do_run(method, task, opts)
        typer.echo(_generative_summary(rec, Path(out) / rec.method / rec.task / rec.run_id / "record.json"))
        if rec.status != "ok":
            typer.echo(f"run {rec.status}: {rec.error}", err=True)
            raise typer.Exit(1)
        return
    try:
        prepare_task(method, task, opts)
    except MissingDatasetError:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise  # never hang on a prompt in a non-interactive run
        if not typer.confirm(f"The dataset for {task} is not built. Build it now?", default=True):
            raise
        opts.build_missing = True
    rec = do_run(method, task, opts)
    path = Path(out) / rec.method / rec.task / rec.run_id / "record.json"
    score = f"{rec.final_score:.1f}" if rec.final_score is not None else "n/a"
    best = f"{rec.best_score:.1f}" if rec.best_score is not None else "n/a"
    typer.echo(
        f"{rec.status}: {rec.method} on {rec.task} seed {rec.seed}: final normalised score {score} "
        f"(best {best}) after {rec.steps} updates, {rec.wall_time_s:.0f} s; record: {path}"
    )
    if rec.status in ("failed", "diverged"):
        typer.echo(f"run {rec.status}: {rec.error}", err=True)
        raise typer.Exit(1)
    if rec.status == "running" and rec.error and rec.error.startswith("interrupted"):
        typer.echo(f"{rec.error}: python -m suite run {method} {task} --seed {seed} --resume", err=True)
        raise typer.Exit(143 if "SIGTERM" in rec.error else 130)


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
    from .executors import Job, execute
    from .methods import get_method, parse_overrides
    from .runner import RunOptions
    from .tasks import get_task

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


@data_app.command("build")
def data_build(
    task: Annotated[str, typer.Argument(help="task id whose dataset to build, e.g. hopper-random")],
    steps: Annotated[int | None, typer.Option(help="transitions per behaviour policy (default 1M)")] = None,
    n_envs: Annotated[int, typer.Option("--n-envs", help="lockstep environment copies (part of the recipe)")] = 8,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
):
    """Build a suite dataset deterministically from its recipe into Minari storage."""
    from .data.build import build
    from .tasks import get_task

    spec = get_task(task)
    if spec.dataset is None:
        raise SuiteError(f"task {spec.id} has no dataset")
    if spec.dataset.source != "recipe":
        from .data import how_to_get

        raise SuiteError(f"{spec.id} is not built by the suite; {how_to_get(spec.dataset, spec.id)}")
    refs = spec.references.bounds if spec.references else None
    ds = build(spec.dataset, steps=steps, n_envs=n_envs, references=refs, progress=progress)
    meta = ds.storage.metadata
    typer.echo(
        f"built {spec.dataset.dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} steps, "
        f"checksum {meta['suite_checksum'][:16]}…"
    )


@data_app.command("ls")
def data_ls():
    """List datasets present in local Minari storage."""
    from .data import store

    ids = store.local_dataset_ids()
    typer.echo(f"{store.datasets_root()}:")
    for i in ids:
        typer.echo(f"  {i}")
    if not ids:
        typer.echo("  (none)")


def _dataset_ids(dataset: str | None, prefix: str = "") -> list[str]:
    """Dataset ids named on the command line: a task id (its dataset), a dataset id, or None for every local
    dataset whose id starts with `prefix`."""
    from .data import store
    from .tasks import get_task, registry

    if dataset is None:
        return [i for i in store.local_dataset_ids() if i.startswith(prefix)]
    if dataset in registry or "/" not in dataset:
        return [get_task(dataset).dataset.dataset_id]
    return [dataset]


@data_app.command("verify")
def data_verify(dataset: Annotated[str | None, typer.Argument(help="dataset id or task id (default: all)")] = None):
    """Recompute dataset checksums and report any mismatch."""
    from .data import store

    bad = 0
    for i in _dataset_ids(dataset):
        ds = store.load(i)
        want = ds.storage.metadata.get("suite_checksum")
        got = store.checksum(ds)
        if want is None:
            typer.echo(f"  {i}: no recorded checksum (not built by the suite); sha256 {got[:16]}…")
        elif want == got:
            typer.echo(f"  {i}: ok")
        else:
            bad += 1
            typer.echo(f"  {i}: MISMATCH recorded {want[:16]}… recomputed {got[:16]}…")
    if bad:
        raise typer.Exit(1)


@data_app.command("check")
def data_check(
    dataset: Annotated[str | None, typer.Argument(help="dataset id or task id (default: all local)")] = None,
):
    """Compare each behaviour policy's episode returns in a built dataset with its shipped manifest."""
    from .data.check import Z_LIMIT, check_dataset

    bad = 0
    for i in _dataset_ids(dataset, prefix="suite/"):
        typer.echo(i)
        for c in check_dataset(i):
            norm = f", normalised {c.normalized:.1f}" if c.normalized is not None else ""
            if c.z is None:
                verdict, man = "no manifest", ""
            else:
                verdict = "ok" if c.ok else f"MISMATCH (|z| > {Z_LIMIT:g})"
                man = (f"; manifest {c.manifest_mean:.1f} ± {c.manifest_std:.1f} ({c.manifest_episodes} ep.), "
                       f"z {c.z:+.2f}")
            bad += not c.ok and c.z is not None
            typer.echo(f"  {c.policy:<22} {c.episodes:>6} episodes: return {c.return_mean:8.1f} ± {c.return_std:6.1f}"
                       f"{norm}{man}: {verdict}")
    if bad:
        raise typer.Exit(1)


@data_app.command("import-d4rl")
def data_import_d4rl(
    file: Annotated[Path, typer.Argument(help="a D4RL hdf5 file")],
    as_: Annotated[str, typer.Option("--as", help="D4RL dataset name, e.g. hopper-medium-v2")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing import")] = False,
):
    """Convert a D4RL hdf5 file into a Minari dataset for the task d4rl/<name>."""
    from .data.d4rl import import_d4rl
    from .tasks import get_task, list_tasks

    name = as_ if as_.startswith("d4rl/") else f"d4rl/{as_}"
    if not name.rsplit("-v", 1)[-1].isdigit():
        name += "-v2"
    try:
        spec = get_task(name)
    except SuiteError as e:
        valid = ", ".join(t.id.split("/", 1)[1] for t in list_tasks() if t.id.startswith("d4rl/"))
        raise SuiteError(f"{e}; importable names: {valid}") from None
    refs = spec.references.bounds
    ds = import_d4rl(file, spec.dataset.dataset_id, spec.env_id, refs, overwrite=overwrite)
    typer.echo(
        f"imported {file} as {spec.dataset.dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} "
        f"steps; run it with `python -m suite run METHOD {spec.id}`"
    )


@data_app.command("download")
def data_download(task: Annotated[str, typer.Argument(help="a minari/... task id")]):
    """Download a Minari remote dataset (needs internet)."""
    from .data.d4rl import download_minari
    from .tasks import get_task

    spec = get_task(task)
    if spec.dataset is None or spec.dataset.source != "minari-remote":
        raise SuiteError(f"task {spec.id} has no remote dataset")
    ds = download_minari(spec.dataset.dataset_id)
    typer.echo(f"downloaded {spec.dataset.dataset_id}: {ds.total_episodes} episodes")


@app.command("table")
def table(
    runs: Annotated[Path, typer.Option(envvar="SUITE_RUNS", help="runs directory to read records from")] = Path("runs"),
    metric: Annotated[str, typer.Option(help="final_score (headline) or best_score")] = "final_score",
    out: Annotated[Path | None, typer.Option(help="write the Markdown table here")] = None,
    published: Annotated[bool, typer.Option(help="add published numbers (labelled) below")] = True,
):
    """Mean ± std over seeds per method × task, as Markdown, from run records."""
    from .leaderboard import markdown_table

    if metric not in ("final_score", "best_score"):
        raise SuiteError("--metric must be final_score or best_score")
    if not runs.exists():
        raise SuiteError(f"runs directory {runs} does not exist")
    text = markdown_table(runs, metric, published)
    if out:
        out.write_text(text)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


@app.command("bench")
def bench(
    what: Annotated[str, typer.Argument(help="solvers, agents, data, threads or all")] = "all",
    quick: Annotated[bool, typer.Option(help="fewer repeats")] = False,
):
    """Speed benchmarks (one JSON line per case)."""
    import importlib

    groups = {
        "solvers": ["suite.bench.solvers"],
        "agents": ["suite.bench.agents_odice", "suite.bench.agents_baselines", "suite.bench.agents_sac"],
        "data": ["suite.bench.data"],
        "threads": ["suite.bench.threads"],
    }
    if what != "all" and what not in groups:
        raise SuiteError(f"unknown benchmark {what!r}; choose from {', '.join(groups)} or all")
    for name in groups if what == "all" else [what]:
        for mod in groups[name]:
            try:
                module = importlib.import_module(mod)
            except ImportError as e:
                typer.echo(json.dumps({"benchmark": mod, "error": f"not available: {e}"}))
                continue
            for row in module.run(quick=quick):
                typer.echo(json.dumps(row))


@app.command("behaviour", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def behaviour(ctx: typer.Context):
    """Train SAC behaviour policies and select the dataset levels from their snapshots
    (arguments go to `python -m suite.behaviour`: `train ENV --steps N --seed S --out DIR [--resume]`,
    `select ENV --run DIR`)."""
    from .behaviour import main as behaviour_main

    behaviour_main(list(ctx.args))


@app.command("study", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def study(ctx: typer.Context):
    """Studies. `study mrs [--out DIR] [--tasks ...] [--nfes ...] [--baseline-nfes ...] [--resume]`: MR Sampler
    against IR-SDE's posterior sampling and reverse SDE on restoration tasks (JSON + PNGs).
    `study dmcmc [--out DIR] [--tasks ...] [--nfes ...] [--integrators ...] [--seeds ...] [--resume]`:
    DLG + each integrator against the integrator alone at equal NFE (JSON + PNG). Otherwise: sampler error
    against NFE on analytic tasks, with a PNG plot and fitted log-log slopes (arguments go to
    `python -m generative.sampler_study`, e.g. --out results/ --tasks gmm-2d). Every study runs on one torch
    thread unless `--threads N` (the measured never-slow default, as `suite run`)."""
    import torch

    args = list(ctx.args)
    threads = 1
    if "--threads" in args:
        i = args.index("--threads")
        try:
            threads = int(args[i + 1])
        except (IndexError, ValueError):
            raise SuiteError("--threads needs a positive integer") from None
        del args[i: i + 2]
    if threads < 1:
        raise SuiteError("--threads must be at least 1")
    torch.set_num_threads(threads)
    if args and args[0] == "dmcmc":
        import argparse

        from . import study_dmcmc as D

        ap = argparse.ArgumentParser(prog="suite study dmcmc", description=D.__doc__.split("\n")[0])
        ap.add_argument("--out", default="results/dmcmc")
        ap.add_argument("--tasks", nargs="+", default=list(D.DEFAULT_TASKS))
        ap.add_argument("--nfes", nargs="+", type=int, default=list(D.DEFAULT_NFES))
        ap.add_argument("--integrators", nargs="+", default=list(D.DEFAULT_INTEGRATORS))
        ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
        ap.add_argument("--image-seeds", nargs="+", type=int, default=[0])
        ap.add_argument("--skp", type=int, default=5)
        ap.add_argument("--resume", action="store_true")
        a = ap.parse_args(args[1:])
        res = D.run_study(a.out, a.tasks, a.nfes, a.integrators, a.seeds, a.image_seeds, a.skp, a.resume)
        typer.echo(f"{len(res['rows'])} runs; {Path(a.out) / 'dmcmc_study.json'}, {Path(a.out) / 'dmcmc_study.png'}")
        return
    if args and args[0] == "mrs":
        import argparse

        from . import study_mrs as S

        ap = argparse.ArgumentParser(prog="suite study mrs", description=S.__doc__.split("\n")[0])
        ap.add_argument("--out", default="results/mrs")
        ap.add_argument("--tasks", nargs="+", default=list(S.DEFAULT_TASKS))
        ap.add_argument("--nfes", nargs="+", type=int, default=list(S.DEFAULT_NFES))
        ap.add_argument("--baseline-nfes", nargs="+", type=int, default=list(S.DEFAULT_BASELINE_NFES))
        ap.add_argument("--seeds", nargs="+", type=int, default=[0])
        ap.add_argument("--n-test", type=int, default=500)
        ap.add_argument("--train-steps", type=int, default=None)
        ap.add_argument("--tolerance", type=float, default=0.1, help="dB below the baseline's PSNR at 100 NFE")
        ap.add_argument("--variants", nargs="+", default=None,
                        help="only these (mrs-ode-1 ... mrs-sde-2, posterior, reverse-sde, posterior-official)")
        ap.add_argument("--resume", action="store_true")
        a = ap.parse_args(args[1:])
        res = S.run_study(a.out, a.tasks, a.nfes, a.baseline_nfes, a.seeds, a.n_test, a.train_steps, a.tolerance,
                          a.resume, a.variants)
        typer.echo(json.dumps(res["summary"]["speedup"], indent=1))
        typer.echo(f"{len(res['rows'])} runs; {Path(a.out) / 'mrs_study.json'}, {Path(a.out) / 'mrs_study.png'}")
        return
    from generative.sampler_study import main as study_main

    study_main(args)


def _records(paths: list[Path]):
    """(path, raw JSON, record, error) for every record given directly or found under a given directory; a
    file that cannot be read as a record comes back with its error instead of stopping the rest."""
    from .results import RunRecord

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
    from .validate import problems

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
    from .audit import audit as do_audit
    from .validate import problems
    from .validate import submit as do_submit

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
):
    """A static leaderboard site (HTML, no server) from run records, published numbers and studies."""
    from .site import build_site

    typer.echo(f"wrote {build_site(runs, out)}")


@app.command("plot")
def plot_cmd(
    runs: Annotated[Path, typer.Option(help="run records directory")] = Path("leaderboards/runs"),
    out: Annotated[Path, typer.Option(help="where the PNGs go")] = Path("site/plots"),
):
    """Learning curves per task (mean and bootstrap 95% CI over seeds) and the aggregate IQM per method."""
    from .plots import plot_runs

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
    dry_run: Annotated[bool, typer.Option(help="list the runs (and which are finished), run nothing")] = False,
):
    """Run every (method, task, seed) of a published table from its recipe: finished runs are skipped and
    unfinished ones resume, so a killed reproduction continues with the same command."""
    import torch

    from . import reproduce as R

    if dry_run:
        recipe = R.load_recipe(table)
        todo, done = R.plan(recipe, out, seeds, steps)
        for m, t, s, n in R.expand(recipe, seeds, steps):
            typer.echo(f"{'done' if (m, t, s, n) in done else 'todo'}  {m} {t} seed {s} ({n} updates)")
        lacking = R.missing_data(recipe, todo)
        if lacking:
            typer.echo(f"missing data: {', '.join(lacking)}. {recipe.data}")
        return
    torch.set_num_threads(threads)
    recs = R.reproduce(table, out, seeds, steps, executor, workers, threads, address, eval_every, eval_episodes,
                       log=typer.echo)
    typer.echo(f"{len(recs)} runs finished now; tables: python -m suite table --runs {out}")


@app.command("new-method")
def new_method_cmd(
    name: Annotated[str, typer.Argument(help="the method's name, e.g. my-bc")],
    out: Annotated[Path, typer.Option(help="where to write the package folder")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite an existing folder")] = False,
):
    """Write a method plug-in package (pyproject entry point, agent, config, README): `pip install -e` it and
    `suite run NAME TASK` runs it with no edit of the suite."""
    from .scaffold import new_method

    root = new_method(name, out, force)
    typer.echo(f"wrote {root}; next: pip install -e {root} && python -m suite run {name} hopper-medium")


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
    from .audit import audit as do_audit

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


def _click_exceptions():
    """(ClickException, Abort, Exit) classes of the click that typer runs on (typer >= 0.16 vendors one)."""
    try:
        from typer import exceptions as te
        from typer._click import exceptions as ce

        return ce.ClickException, te.Abort, (te.Exit,)
    except ImportError:
        from click import exceptions as ce

        return ce.ClickException, ce.Abort, (ce.Exit,)


def main(argv: list[str] | None = None) -> int:
    click_error, abort, exits = _click_exceptions()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="suite")
    except SuiteError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except exits as e:
        return int(e.exit_code)
    except click_error as e:
        e.show()
        return int(e.exit_code)
    except abort:
        typer.echo("aborted", err=True)
        return 1
    except OSError as e:  # a path that is a file, not writable, full disk ...: the message names the file
        if os.environ.get("SUITE_DEBUG") == "1":
            raise
        typer.echo(f"error: {e}", err=True)
        return 2
    except Exception as e:  # a bug: one line here; SUITE_DEBUG=1 shows the traceback
        if os.environ.get("SUITE_DEBUG") == "1":
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (run again with SUITE_DEBUG=1 for the traceback, "
                   "and please report it)", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
