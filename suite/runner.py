"""Run one (method, task, seeds, config), in stages: prepare the task (once), build the agent(s), the
train/evaluate loop, finish and record. Seeding, checkpoints and resume, tensorboard logging, a progress bar
and every run record are here; K seeds in one process (`RunOptions.seeds`) train as one stacked agent
(`suite.seeds`, `agents.stacked`) and still write one record per seed.

Determinism: the seed fixes Python's, NumPy's and torch's global generators (agents draw their noise from
torch's), a dedicated generator for batch indices, and the evaluation environments' reset seeds (the same
episodes at every evaluation: ``1_000_000 + 1000 * seed + i``). Checkpoints hold all of these, so a run
killed and resumed (`resume=True`) finishes with the same numbers as one that never stopped.

Divergence: every update's metrics are folded into a device-side "all finite" flag per seed (no host sync);
the flags are read every `log_every` updates and at each evaluation, and a non-finite loss ends that seed's
run with status ``diverged`` (the other seeds go on): its scores are never reported as results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import data as suite_data
from . import methods as suite_methods
from . import tasks as suite_tasks
from .allocator import keep_freed_memory
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .errors import ConfigError, MissingDatasetError, SuiteError
from .results import EvalPoint, RunRecord, load_record, provenance, write_run_record
from .seeds import Slot, StopSignals, global_rng_state, seed_everything, trainer_for
from .seeds import finish_scores as _finish_scores  # noqa: F401  (suite.api uses it)
from .tasks.references import resolve_references


@dataclass
class RunOptions:
    seed: int = 0
    seeds: tuple[int, ...] | None = None  # K seeds in one process (one stacked agent); None: (seed,)
    steps: int | None = None  # default: the task's protocol (or the method's per-task file)
    eval_every: int | None = None
    eval_episodes: int | None = None
    device: str = "cpu"
    out: str | Path = "runs"
    overrides: dict[str, str] = field(default_factory=dict)
    resume: bool = False
    progress: bool = True
    build_missing: bool = False
    build_steps: int | None = None
    log_every: int = 1000
    tensorboard: bool = True
    stop_after: int | None = None  # testing/ops: stop (as if killed) after this many updates, checkpoint kept


def run_dir_root(out: str | Path, method: str, task_id: str, seed: int) -> Path:
    return Path(out) / method / task_id / f"seed{seed}"


def _protocol(spec, config, explicit: set[str], opts: RunOptions) -> tuple[int, int, int]:
    def pick(cli, key, default):
        if cli is not None:
            return cli
        if key in explicit:  # set in the method's per-task file or by --set
            return getattr(config, key)
        return default

    steps = pick(opts.steps, "max_steps", spec.train_steps)
    every = pick(opts.eval_every, "eval_every", spec.eval_every)
    episodes = pick(opts.eval_episodes, "eval_episodes", spec.eval_episodes)
    if steps <= 0 or every <= 0 or episodes <= 0:
        raise SuiteError("steps, eval-every and eval-episodes must be positive")
    return steps, every, episodes


from .evaluation import Evaluator  # noqa: E402  (the runner's periodic evaluation)


def _find_resumable(root: Path) -> Path | None:
    runs = sorted(p for p in root.parent.glob(root.name + "-*") if p.is_dir())
    for p in reversed(runs):
        if has_checkpoint(p / "checkpoint") or (p / "record.json").exists():
            return p
    return None


def check_device(device: str) -> str:
    """The device string if torch can use it, else a ConfigError naming what exists (agent and generative
    runs alike)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but torch sees no CUDA device; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use cpu or cuda[:N]")
    return str(dev)


def _check_same_config(rec: RunRecord, config, run_dir: Path) -> None:
    """--resume continues a run with the config it started with; a different one is refused (it would train
    with the checkpoint's values while recording the new ones)."""
    import json

    now = json.loads(json.dumps(_config_dict(config)))
    before = json.loads(json.dumps(rec.config))
    diff = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
    if diff:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ConfigError(f"--resume of {run_dir} with a different config ({shown}); resume with the run's own "
                          "settings, or start a new run without --resume")


def prepare_task(method_name: str, task_id: str, opts: RunOptions):
    """Resolve ids, config and dataset; raises SuiteError subclasses for user errors."""
    spec = suite_tasks.get_task(task_id)
    method = suite_methods.get_method(method_name)
    if method.kind != "agent":
        raise SuiteError(f"method {method.name!r} is a generative method; it runs on generation tasks")
    if spec.kind not in method.task_kinds:
        why = " (it needs rewards, which imitation tasks do not have)" if spec.kind == "offline-il" else ""
        raise SuiteError(
            f"method {method.name!r} does not support {spec.kind} task {spec.id!r}{why}; "
            f"it supports: {', '.join(method.task_kinds)}"
        )
    config, explicit = suite_methods.resolve_config(method, spec.id, opts.overrides)
    if spec.dataset is None:
        raise SuiteError(f"task {spec.id} has no dataset")
    if suite_data.missing(spec.dataset):
        if not opts.build_missing:
            raise MissingDatasetError(
                f"dataset for {spec.id} is not built; {suite_data.how_to_get(spec.dataset, spec.id)}, "
                "or pass --build-missing"
            )
        from .data.build import build

        refs = spec.references.bounds if spec.references else None
        build(spec.dataset, steps=opts.build_steps, references=refs, progress=opts.progress)
    return spec, method, config, explicit


@dataclass
class Prepared:
    """A task prepared once for a run: resolved spec (with its references), method, config, protocol, device,
    the agent's view of the dataset (`agents.base.prepare_data`) as a sampling buffer, and the provenance."""

    spec: Any
    method: Any
    config: Any
    steps: int
    eval_every: int
    eval_episodes: int
    device: torch.device
    data: Any
    buffer: Any
    extra_provenance: dict[str, Any]

    @property
    def dims(self) -> tuple[int, int]:
        return self.data.arrays["observations"].shape[1], self.data.arrays["actions"].shape[1]


def prepare(method_name: str, task_id: str, opts: RunOptions) -> Prepared:
    """Stage 1: resolve and load everything the seeds share (raises SuiteError subclasses for user errors)."""
    from agents.base import prepare_data

    spec, method, config, explicit = prepare_task(method_name, task_id, opts)
    steps, eval_every, eval_episodes = _protocol(spec, config, explicit, opts)
    device = torch.device(check_device(opts.device))
    dataset, arrays, episode_ends = suite_data.load_transitions(spec.dataset, spec.id)
    data = prepare_data(arrays, normalize_observations=config.normalize_observations,
                        reward_transform=config.reward_transform, episode_ends=episode_ends)
    buffer = suite_data.TransitionBuffer(data.arrays, device)
    ds_meta = suite_data.store.metadata(dataset)
    spec = resolve_references(spec, ds_meta)
    extra = {
        "dataset_id": spec.dataset.dataset_id,
        "dataset_checksum": ds_meta.get("suite_checksum") or suite_data.store.checksum(dataset),
        "dataset_transitions": int(len(buffer)),
        "references_source": spec.references.source if spec.references else None,
        "numerics": getattr(method.load(), "NUMERICS", 1),
        "protocol": {"steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes},
        "command": " ".join(sys.argv),
    }
    return Prepared(spec, method, config, steps, eval_every, eval_episodes, device, data, buffer, extra)


def run(method_name: str, task_id: str, opts: RunOptions | None = None, prepared: Prepared | None = None
        ) -> RunRecord:
    """One seed (`opts.seed`, or the first of `opts.seeds`) of METHOD on TASK; its run record."""
    opts = opts or RunOptions()
    keep_freed_memory()  # no page faults for every update's temporaries (suite/allocator.py)
    method = suite_methods.get_method(method_name)
    if method.kind == "generative":
        spec = suite_tasks.get_task(task_id)
        if spec.kind not in method.task_kinds:
            raise SuiteError(f"method {method.name!r} runs on {' and '.join(method.task_kinds)} tasks, not "
                             f"{spec.kind} task {spec.id!r}")
        config, _ = suite_methods.resolve_config(method, spec.id, opts.overrides)
        return method.load()(method.name, spec, config, opts.seed, opts.out, opts.progress,
                             device=check_device(opts.device))
    return run_seeds(method_name, task_id, opts, prepared)[0]


def run_seeds(method_name: str, task_id: str, opts: RunOptions, prepared: Prepared | None = None
              ) -> list[RunRecord]:
    """Every seed of `opts.seeds` (default: `opts.seed`) in this process, one record each, in seed order.
    Seeds resumed from different updates train as separate groups; finished seeds are returned as they are."""
    keep_freed_memory()
    p = prepared or prepare(method_name, task_id, opts)
    seeds = tuple(opts.seeds) if opts.seeds else (opts.seed,)
    slots = [_open_slot(p, s, opts, seeds) for s in seeds]  # stage 2: each seed's agent, record, state
    todo = [s for s in slots if s.status != "done"]
    for start in sorted({s.start for s in todo}):
        _train(p, [s for s in todo if s.start == start], opts)  # stage 3 and 4
    return [s.record for s in slots]


def _open_slot(p: Prepared, seed: int, opts: RunOptions, seeds: tuple[int, ...]) -> Slot:
    """Stage 2 for one seed: its run folder (new or resumed), record, batch generator and agent, built right
    after seeding everything with the seed (and loaded from its checkpoint when resuming)."""
    root = run_dir_root(opts.out, p.method.name, p.spec.id, seed)
    run_dir = _find_resumable(root) if opts.resume else None
    if run_dir is not None and (run_dir / "record.json").exists():
        rec = load_record(run_dir / "record.json")
        if rec.status != "running" or not has_checkpoint(run_dir / "checkpoint"):
            return Slot(seed, run_dir, rec, status="done")  # finished (ok, diverged or failed): nothing to resume
        _check_same_config(rec, p.config, run_dir)
    if run_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_dir = root.parent / f"{root.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # seeds trained together round differently from a single run: the audit re-runs them together
    extra = p.extra_provenance if len(seeds) == 1 else {**p.extra_provenance, "seeds_in_process": list(seeds)}
    record = RunRecord(method=p.method.name, task=p.spec.id, seed=seed, config=_config_dict(p.config),
                       task_spec=p.spec.to_dict(), run_id=run_dir.name, provenance=provenance(str(p.device), extra))
    slot = Slot(seed, run_dir, record)
    seed_everything(seed)
    slot.gen = torch.Generator(device="cpu").manual_seed(seed)
    obs_dim, act_dim = p.dims
    slot.agent = p.method.load()(p.config, obs_dim, act_dim, obs_mean=p.data.obs_mean, obs_std=p.data.obs_std,
                                 device=p.device)
    slot.rng = global_rng_state()
    if opts.resume and has_checkpoint(run_dir / "checkpoint"):
        ck = load_checkpoint(run_dir / "checkpoint")
        slot.agent.load_state_dict(ck["agent"])
        slot.gen.set_state(ck["generator"])
        slot.start, slot.elapsed = int(ck["step"]), float(ck["elapsed"])
        record.curve = [EvalPoint(**pt) for pt in ck["curve"]]
        slot.checkpoint = {"rng": ck["rng"]}
    return slot


def _train(p: Prepared, slots: list[Slot], opts: RunOptions) -> None:
    """Stage 3, the train/evaluate loop of seeds that start at the same update, and stage 4 for each."""
    trainer = trainer_for(slots, p.buffer, p.config.batch_size, p.device)
    start = slots[0].start
    for s in slots:
        s.evaluator = Evaluator(p.spec.env_id, p.eval_episodes, s.seed)
        if opts.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            s.writer = SummaryWriter(str(s.run_dir / "tb"), purge_step=start if start else None)
    bar = _progress_bar(p, slots, start, opts)
    active = list(slots)  # the trainer's members, in its order
    finite = torch.ones(len(active), dtype=torch.bool, device=p.device)
    t0 = time.perf_counter()
    step = start
    last: dict[str, torch.Tensor] = {}

    def checkpoint(i: int, at: int) -> None:
        s = active[i]
        now = s.elapsed + time.perf_counter() - t0
        save_checkpoint(s.run_dir / "checkpoint", {
            "agent": s.agent.state_dict(), "generator": s.gen.get_state(), "rng": trainer.rng_state(i),
            "step": at, "elapsed": now, "curve": [dataclasses.asdict(pt) for pt in s.record.curve]})
        s.record.steps, s.record.wall_time_s, s.record.status = at, now, "running"
        _finish_scores(s.record)
        write_run_record(s.record, s.run_dir)

    def stopped(status: str, error: str | None) -> None:
        for s in active:
            s.status, s.error = status, error

    stop = StopSignals()
    try:
        while step < p.steps and active:
            last = trainer.update()
            if last:
                finite &= trainer.finite(last)
            step += 1
            bar.update(1)
            at_eval = step % p.eval_every == 0 or step == p.steps
            if step % opts.log_every == 0 or at_eval:
                ok = finite.tolist()
                if not all(ok):  # these seeds diverged; the others go on
                    for i in [i for i, good in enumerate(ok) if not good]:
                        active[i].status, active[i].error = "diverged", f"non-finite loss before update {step}"
                        active[i].finish(step, start, time.perf_counter() - t0, None)
                    keep = [i for i, good in enumerate(ok) if good]
                    if not keep:
                        active = []
                        break
                    trainer.keep(keep)
                    last = {k: v[keep] for k, v in last.items()}
                    active, finite = [active[i] for i in keep], finite[keep]
                for i, s in enumerate(active):
                    if s.writer is not None:
                        for k, v in trainer.metrics_of(i, last).items():
                            s.writer.add_scalar(f"train/{k}", float(v), step)
            if at_eval:
                trainer.sync()
                for i, s in enumerate(active):
                    shown = s.evaluate(p.spec.references, p.device, step)
                    checkpoint(i, step)
                bar.set_postfix_str(f"eval {shown} at {step} ({time.strftime('%H:%M:%S')})", refresh=True)
            if stop.signal is not None:  # SIGINT/SIGTERM: between updates, so the state is consistent
                trainer.sync()
                for i in range(len(active)):
                    checkpoint(i, step)
                stopped("running", f"interrupted by {stop.signal} at update {step} (resume with --resume)")
                break
            if opts.stop_after is not None and step - start >= opts.stop_after:
                trainer.sync()
                for i in range(len(active)):
                    checkpoint(i, step)
                stopped("running", None)
                break
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the last checkpoint stays
        stopped("running", "interrupted (resume with --resume from the last checkpoint)")
    except Exception as e:  # a bug or a runtime failure: recorded, never reported as a result
        stopped("failed", "".join(traceback.format_exception_only(type(e), e)).strip())
        if os.environ.get("SUITE_DEBUG") == "1":
            traceback.print_exc()
    finally:
        stop.restore()
        bar.close()
        wall = time.perf_counter() - t0
        for i, s in enumerate(active):
            s.finish(step, start, wall, trainer.metrics_of(i, last) if last else None)


def _progress_bar(p: Prepared, slots: list[Slot], start: int, opts: RunOptions):
    from tqdm.auto import tqdm

    seeds = ",".join(str(s.seed) for s in slots)
    return tqdm(total=p.steps, initial=start, desc=f"{p.method.name} {p.spec.id} s{seeds}", unit="upd",
                disable=not opts.progress, dynamic_ncols=True, smoothing=0.05,
                mininterval=1.0,  # redraw by time (at least once a second), whatever the update rate
                miniters=1)


def _config_dict(config) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(d.items())}
