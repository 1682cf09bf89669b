"""`suite bench`, `suite study`, `suite new-method`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import SuiteError
from . import app


@app.command("bench")
def bench(
    what: Annotated[str, typer.Argument(help="solvers, agents, data, threads or all")] = "all",
    quick: Annotated[bool, typer.Option(help="fewer repeats")] = False,
):
    """Speed benchmarks (one JSON line per case)."""
    import importlib

    groups = {
        "solvers": ["suite.bench.solvers"],
        "agents": ["suite.bench.agents_odice", "suite.bench.agents_baselines", "suite.bench.agents_sac",
                   "suite.bench.agents_kseeds"],
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

        from .. import study_dmcmc as D

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

        from .. import study_mrs as S

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


@app.command("new-method")
def new_method_cmd(
    name: Annotated[str, typer.Argument(help="the method's name, e.g. my-bc")],
    out: Annotated[Path, typer.Option(help="where to write the package folder")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite an existing folder")] = False,
):
    """Write a method plug-in package (pyproject entry point, agent, config, README): `pip install -e` it and
    `suite run NAME TASK` runs it with no edit of the suite."""
    from ..scaffold import new_method

    root = new_method(name, out, force)
    typer.echo(f"wrote {root}; next: pip install -e {root} && python -m suite run {name} hopper-medium")
