"""Run one (method, task, seed, config): seeding, training with periodic evaluation, checkpoints and resume,
tensorboard logging, a progress bar, and the run record.

Determinism: the seed fixes Python's, NumPy's and torch's global generators (agents draw their noise from
torch's), a dedicated generator for batch indices, and the evaluation environments' reset seeds (the same
episodes at every evaluation: ``1_000_000 + 1000 * seed + i``). Checkpoints hold all of these, so a run
killed and resumed (`resume=True`) finishes with the same numbers as one that never stopped.

Divergence: every update's metrics are folded into a device-side "all finite" flag (no host sync); the
flag is read every `log_every` updates and at each evaluation, and a non-finite loss ends the run with
status ``diverged``: its scores are never reported as results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as suite_data
from . import methods as suite_methods
from . import tasks as suite_tasks
from .allocator import keep_freed_memory
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .errors import ConfigError, MissingDatasetError, SuiteError
from .results import EvalPoint, RunRecord, load_record, provenance, write_run_record


@dataclass
class RunOptions:
    seed: int = 0
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _find_resumable(root: Path) -> Path | None:
    runs = sorted(p for p in root.parent.glob(root.name + "-*") if p.is_dir())
    for p in reversed(runs):
        if has_checkpoint(p / "checkpoint") or (p / "record.json").exists():
            return p
    return None


class _StopSignals:
    """SIGINT/SIGTERM during training set a flag that the loop reads between updates (so the checkpoint is
    taken at a consistent state); a second SIGINT raises KeyboardInterrupt at once. Only in the main thread."""

    def __init__(self):
        import signal
        import threading

        self.signal: str | None = None
        self._old = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        import signal

        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


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


def run(method_name: str, task_id: str, opts: RunOptions | None = None) -> RunRecord:
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
    spec, method, config, explicit = prepare_task(method_name, task_id, opts)
    steps, eval_every, eval_episodes = _protocol(spec, config, explicit, opts)
    device = torch.device(check_device(opts.device))

    root = run_dir_root(opts.out, method.name, spec.id, opts.seed)
    run_dir = _find_resumable(root) if opts.resume else None
    if run_dir is not None and (run_dir / "record.json").exists():
        rec = load_record(run_dir / "record.json")
        if rec.status != "running" or not has_checkpoint(run_dir / "checkpoint"):
            return rec  # finished (ok, diverged or failed): nothing to resume
        _check_same_config(rec, config, run_dir)
    if run_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_dir = root.parent / f"{root.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)

    _seed_everything(opts.seed)
    dataset, arrays, episode_ends = suite_data.load_transitions(spec.dataset, spec.id)
    from agents.base import prepare_data

    prepared = prepare_data(
        arrays,
        normalize_observations=config.normalize_observations,
        reward_transform=config.reward_transform,
        episode_ends=episode_ends,
    )
    buffer = suite_data.TransitionBuffer(prepared.arrays, device)
    gen = torch.Generator(device="cpu").manual_seed(opts.seed)
    obs_dim = arrays["observations"].shape[1]
    act_dim = arrays["actions"].shape[1]
    agent_cls = method.load()
    agent = agent_cls(config, obs_dim, act_dim, obs_mean=prepared.obs_mean, obs_std=prepared.obs_std, device=device)

    ds_meta = suite_data.store.metadata(dataset)
    if (
        spec.references is None
        and ds_meta.get("ref_min_score") is not None
        and ds_meta.get("ref_max_score") is not None
    ):
        spec = dataclasses.replace(
            spec,
            references=suite_tasks.References(
                float(ds_meta["ref_min_score"]), float(ds_meta["ref_max_score"]), "minari dataset metadata"
            ),
        )
    record = RunRecord(
        method=method.name,
        task=spec.id,
        seed=opts.seed,
        config=_config_dict(config),
        task_spec=spec.to_dict(),
        run_id=run_dir.name,
        provenance=provenance(
            str(device),
            {
                "dataset_id": spec.dataset.dataset_id,
                "dataset_checksum": ds_meta.get("suite_checksum") or suite_data.store.checksum(dataset),
                "dataset_transitions": int(len(buffer)),
                "references_source": spec.references.source if spec.references else None,
                "protocol": {"steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes},
                "command": " ".join(sys.argv),
            },
        ),
    )
    start, elapsed = 0, 0.0
    if opts.resume and has_checkpoint(run_dir / "checkpoint"):
        ck = load_checkpoint(run_dir / "checkpoint")
        agent.load_state_dict(ck["agent"])
        gen.set_state(ck["generator"])
        _set_rng_state(ck["rng"])
        start, elapsed = int(ck["step"]), float(ck["elapsed"])
        record.curve = [EvalPoint(**p) for p in ck["curve"]]

    evaluator = Evaluator(spec.env_id, eval_episodes, opts.seed)
    writer = None
    if opts.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start if start else None)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=steps,
        initial=start,
        desc=f"{method.name} {spec.id} s{opts.seed}",
        unit="upd",
        disable=not opts.progress,
        dynamic_ncols=True,
        smoothing=0.05,
        mininterval=1.0,  # redraw by time (at least once a second), whatever the update rate
        miniters=1,
    )
    finite = torch.ones((), dtype=torch.bool, device=device)
    t0 = time.perf_counter()
    step = start
    status, error = "ok", None
    last_metrics: dict[str, torch.Tensor] = {}

    def checkpoint(at: int) -> None:
        now = elapsed + time.perf_counter() - t0
        save_checkpoint(
            run_dir / "checkpoint",
            {
                "agent": agent.state_dict(),
                "generator": gen.get_state(),
                "rng": _rng_state(),
                "step": at,
                "elapsed": now,
                "curve": [dataclasses.asdict(p) for p in record.curve],
            },
        )
        record.steps, record.wall_time_s = at, now
        record.status = "running"
        _finish_scores(record)
        write_run_record(record, run_dir)

    stop = _StopSignals()
    try:
        while step < steps:
            batch = buffer.sample(config.batch_size, gen)
            last_metrics = agent.update(batch)
            if last_metrics:
                finite &= torch.isfinite(torch.stack([v.float() for v in last_metrics.values()])).all()
            step += 1
            bar.update(1)
            at_eval = step % eval_every == 0 or step == steps
            if step % opts.log_every == 0 or at_eval:
                if not bool(finite):
                    status, error = "diverged", f"non-finite loss before update {step}"
                    break
                if writer is not None:
                    for k, v in last_metrics.items():
                        writer.add_scalar(f"train/{k}", float(v), step)
            if at_eval:
                returns = evaluator(agent.act, device)
                mean = float(np.mean(returns))
                score = spec.references.normalize(mean) if spec.references else None
                sstd = float(np.std([spec.references.normalize(r) for r in returns])) if spec.references else None
                record.curve.append(EvalPoint(step, [float(r) for r in returns], mean, score, sstd))
                if writer is not None:
                    writer.add_scalar("eval/return", mean, step)
                    if score is not None:
                        writer.add_scalar("eval/normalized_score", score, step)
                    writer.flush()
                shown = f"{score:.1f}" if score is not None else f"return {mean:.1f}"
                bar.set_postfix_str(f"eval {shown} at {step} ({time.strftime('%H:%M:%S')})", refresh=True)
                checkpoint(step)
            if stop.signal is not None:  # SIGINT/SIGTERM: between updates, so the state is consistent
                checkpoint(step)
                status, error = "running", f"interrupted by {stop.signal} at update {step} (resume with --resume)"
                break
            if opts.stop_after is not None and step - start >= opts.stop_after:
                checkpoint(step)
                status = "running"
                break
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the last checkpoint stays
        status, error = "running", "interrupted (resume with --resume from the last checkpoint)"
    except Exception as e:  # a bug or a runtime failure: recorded, never reported as a result
        status, error = "failed", "".join(traceback.format_exception_only(type(e), e)).strip()
        if os.environ.get("SUITE_DEBUG") == "1":
            traceback.print_exc()
    finally:
        stop.restore()
        bar.close()
        evaluator.close()
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - t0
    record.steps = step
    record.wall_time_s = elapsed + wall
    record.updates_per_s = (step - start) / wall if wall > 0 and step > start else None
    record.status, record.error = status, error
    if last_metrics and status == "ok":
        record.metrics = {k: float(v) for k, v in last_metrics.items() if math.isfinite(float(v))}
    _finish_scores(record)
    if status == "diverged":
        record.final_score = record.best_score = record.final_return = None
    write_run_record(record, run_dir)
    return record


def _finish_scores(record: RunRecord) -> None:
    if not record.curve:
        return
    last = record.curve[-1]
    record.final_return = last.mean_return
    record.final_score = last.normalized_score
    scores = [p.normalized_score for p in record.curve if p.normalized_score is not None]
    record.best_score = max(scores) if scores else None


def _config_dict(config) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(d.items())}
