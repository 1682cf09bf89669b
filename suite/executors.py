"""Where runs execute: in this process, in a local pool of processes, or on a Ray cluster.

A job is (method, task, RunOptions); every executor returns the run records in job order (a K-seed job,
`RunOptions.seeds`, gives its K records in seed order). Each job seeds
itself from its options, so results do not depend on the executor or on how jobs interleave. Local
processes are started with 'spawn' (safe with torch) and pinned to `threads` torch threads each.

A local pool's workers watch their parent: when the reproduction that started them dies (killed, its session
stopped, a closed terminal), each worker stops its run the way Ctrl-C does (a SIGTERM to itself: the runner
checkpoints between updates and records status "running"), starts no further job, and exits. Without this
a worker outlives its parent and goes on through the jobs already queued to it (seen on 2026-12-02: a
killed `suite reproduce` left two workers training, and then building the next cell's data).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from .parent import when_parent_gone
from .results import RunRecord
from .runner import RunOptions, run_seeds


@dataclasses.dataclass(frozen=True)
class Job:
    method: str
    task: str
    options: RunOptions


_worker = {"busy": False, "orphaned": False}  # this process's state as a pool worker


def _stop_and_exit() -> None:
    """A pool worker whose reproduction is gone: stop the current run (checkpointed) and exit."""
    _worker["orphaned"] = True
    if _worker["busy"]:
        os.kill(os.getpid(), signal.SIGTERM)  # the runner checkpoints between updates and returns
        while _worker["busy"]:
            time.sleep(0.1)
    os._exit(0)


def _worker_init(parent: int, period: float = 1.0) -> None:
    when_parent_gone(parent, _stop_and_exit, period)


def _run_job(job: Job, threads: int = 1) -> list[RunRecord]:
    import torch

    if _worker["orphaned"]:  # the reproduction is gone: start nothing more
        return []
    _worker["busy"] = True
    try:
        torch.set_num_threads(threads)
        return run_seeds(job.method, job.task, job.options)
    finally:
        _worker["busy"] = False


# called in this process as each job finishes, in completion order, with the job's records
OnDone = Callable[[Job, list[RunRecord]], None] | None


def interrupted(rec: RunRecord) -> bool:
    """A run that SIGTERM/SIGINT stopped between updates (checkpointed, resumable)."""
    return rec.status == "running" and (rec.error or "").startswith("interrupted")


def run_in_process(jobs: Sequence[Job], on_done: OnDone = None) -> list[RunRecord]:
    """The jobs one after another in this process. A signal that stops a run stops the whole sequence: the
    runner catches SIGTERM/SIGINT to checkpoint, so without this check a killed reproduction went on with its
    next job (seen 2026-12-07: a SIGTERMed `suite reproduce --workers 1` started the next seed)."""
    out = []
    for i, j in enumerate(jobs):
        recs = run_seeds(j.method, j.task, j.options)
        out += recs
        if on_done:
            on_done(j, recs)
        if any(interrupted(r) for r in recs):
            print(f"stopped by a signal during {j.method} {j.task}: {len(jobs) - i - 1} job(s) not started (the "
                  "same command resumes)", file=sys.stderr, flush=True)
            break
    return out


def run_local_pool(jobs: Sequence[Job], workers: int, threads: int = 1, on_done: OnDone = None) -> list[RunRecord]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_run_job, j, threads): j for j in jobs}
        if on_done:
            for f in as_completed(futures):
                on_done(futures[f], f.result())  # a failed job raises here, as it would below
        return [r for f in futures for r in f.result()]


def run_ray(jobs: Sequence[Job], address: str | None = None, cpus_per_job: float = 1.0,
            on_done: OnDone = None) -> list[RunRecord]:
    """Run jobs as Ray tasks (`pip install -e .[ray]`; `address` of an existing cluster or None for local)."""
    try:
        import ray
    except ImportError as e:
        from .errors import SuiteError

        raise SuiteError("the ray executor needs Ray: pip install -e '.[ray]'") from e
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=cpus_per_job)(_run_job)
    refs = [remote.remote(j, max(1, int(cpus_per_job))) for j in jobs]
    if on_done:  # records are written by the workers on this machine's file system (a local instance)
        pending, job_of = list(refs), dict(zip(refs, jobs, strict=True))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            on_done(job_of[ready[0]], ray.get(ready[0]))
    return [r for rs in ray.get(refs) for r in rs]


def execute(
    jobs: Sequence[Job], executor: str = "local", workers: int = 1, address: str | None = None, threads: int = 1,
    on_done: OnDone = None,
) -> list[RunRecord]:
    """Run `jobs`; `on_done(job)` is called here as each one finishes (e.g. to publish its records)."""
    if executor == "inprocess" or (executor == "local" and workers <= 1):
        return run_in_process(jobs, on_done)
    if executor == "local":
        return run_local_pool(jobs, workers, threads, on_done)
    if executor == "ray":
        return run_ray(jobs, address, on_done=on_done)
    from .errors import SuiteError

    raise SuiteError(f"unknown executor {executor!r}; choose inprocess, local or ray")
