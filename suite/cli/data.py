"""`suite data ...`: build, list, verify, check, import and download datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SuiteError
from . import data_app


@data_app.command("build")
def data_build(
    task: Annotated[str, typer.Argument(help="task id whose dataset to build, e.g. hopper-random")],
    steps: Annotated[int | None, typer.Option(help="transitions per behaviour policy (default 1M)")] = None,
    n_envs: Annotated[int, typer.Option("--n-envs", help="lockstep environment copies (part of the recipe)")] = 8,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
):
    """Build a suite dataset deterministically from its recipe into Minari storage."""
    from ..data.build import build
    from ..tasks import get_task

    spec = get_task(task)
    if spec.dataset is None:
        raise SuiteError(f"task {spec.id} has no dataset")
    if spec.dataset.source != "recipe":
        from ..data import how_to_get

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
    from ..data import store

    ids = store.local_dataset_ids()
    typer.echo(f"{store.datasets_root()}:")
    for i in ids:
        typer.echo(f"  {i}")
    if not ids:
        typer.echo("  (none)")


def _dataset_ids(dataset: str | None, prefix: str = "") -> list[str]:
    """Dataset ids named on the command line: a task id (its dataset), a dataset id, or None for every local
    dataset whose id starts with `prefix`."""
    from ..data import store
    from ..tasks import get_task, registry

    if dataset is None:
        return [i for i in store.local_dataset_ids() if i.startswith(prefix)]
    if dataset in registry or "/" not in dataset:
        return [get_task(dataset).dataset.dataset_id]
    return [dataset]


def _stale(dataset_id: str, ds) -> str | None:
    """`build.stale_policies` for a local dataset whose id a registered recipe task names; None otherwise."""
    from ..data import store
    from ..data.build import stale_policies
    from ..tasks import list_tasks

    spec = next((t.dataset for t in list_tasks() if t.dataset is not None and t.dataset.source == "recipe"
                 and t.dataset.dataset_id == dataset_id), None)
    return stale_policies(spec, store.metadata(ds)) if spec is not None else None


@data_app.command("verify")
def data_verify(dataset: Annotated[str | None, typer.Argument(help="dataset id or task id (default: all)")] = None):
    """Recompute dataset checksums and report any mismatch, and any suite dataset built from other behaviour
    policies than the shipped ones (STALE)."""
    from ..data import store

    bad = 0
    for i in _dataset_ids(dataset):
        ds = store.load(i)
        want = ds.storage.metadata.get("suite_checksum")
        got = store.checksum(ds)
        if want is None:
            typer.echo(f"  {i}: no recorded checksum (not built by the suite); sha256 {got[:16]}…")
        elif want == got and (stale := _stale(i, ds)):
            bad += 1
            typer.echo(f"  {i}: STALE, {stale}; rebuild it with `python -m suite data build {i}`")
        elif want == got:
            canon = store.canonical_checksum(i)
            note = "" if canon is None else (
                ", the canonical build" if canon == got
                else f", NOT the canonical build {canon[:16]}… (runs on it are tabulated apart)")
            typer.echo(f"  {i}: ok{note}")
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
    from ..data.check import Z_LIMIT, check_dataset, level_band

    bad = 0
    for i in _dataset_ids(dataset, prefix="suite/"):
        typer.echo(i)
        checks = check_dataset(i)
        for c in checks:
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
        lv = level_band(i, checks)
        if lv is not None:  # reported, not failed: the check is against the manifests; the band is D4RL's
            level, score, ok, text = lv
            typer.echo(f"  level {level}: D4RL-normalised {score:.1f}, D4RL's band {text}: "
                       + ("in band" if ok else "OUTSIDE D4RL's band"))
    if bad:
        raise typer.Exit(1)


@data_app.command("import-d4rl")
def data_import_d4rl(
    file: Annotated[Path, typer.Argument(help="a D4RL hdf5 file")],
    as_: Annotated[str, typer.Option("--as", help="D4RL dataset name, e.g. hopper-medium-v2")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing import")] = False,
):
    """Convert a D4RL hdf5 file into a Minari dataset for the task d4rl/<name>."""
    from ..data.d4rl import import_d4rl
    from ..tasks import get_task, list_tasks

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
    from ..data.d4rl import download_minari
    from ..tasks import get_task

    spec = get_task(task)
    if spec.dataset is None or spec.dataset.source != "minari-remote":
        raise SuiteError(f"task {spec.id} has no remote dataset")
    ds = download_minari(spec.dataset.dataset_id)
    typer.echo(f"downloaded {spec.dataset.dataset_id}: {ds.total_episodes} episodes")
