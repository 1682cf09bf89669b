"""Helpers for the tests that SIGKILL a parent process (a stopped session) and check that its multiprocessing
workers do not live on: they find the workers through a mark in their environment (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path


def pool_workers(mark: str) -> list[int]:
    """Pids of live multiprocessing workers whose environment carries `mark`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (b"multiprocessing-fork" in (proc / "cmdline").read_bytes()
                    and f"SUITE_TEST_MARK={mark}".encode() in (proc / "environ").read_bytes()
                    and "Z" not in (proc / "stat").read_text().split(")")[-1].split()[0]):
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return pids


def kill_parent_and_list_survivors(argv: list[str], ready: Callable[[], bool], workers: int = 2,
                                   start_timeout: float = 180, grace: float = 60) -> list[int]:
    """Start `argv` (marked), wait until `ready()` and `workers` of its pool workers are alive, SIGKILL it, and
    return the workers still alive `grace` seconds later (killed then, so that a failing test leaves nothing
    running)."""
    mark = uuid.uuid4().hex
    parent = subprocess.Popen(argv, env={**os.environ, "SUITE_TEST_MARK": mark}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_timeout
        while not (ready() and len(pool_workers(mark)) >= workers) and time.monotonic() < deadline:
            assert parent.poll() is None, f"{argv[:4]} ended early"
            time.sleep(0.5)
        assert len(pool_workers(mark)) == workers
        time.sleep(2)  # all are working now
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + grace
    while pool_workers(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = pool_workers(mark)
    for pid in left:
        os.kill(pid, 9)
    return left


PYTHON = sys.executable
