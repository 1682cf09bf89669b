"""The seeds of one run: `--seeds` parsing, each seed's state in a run (`Slot`: its run folder, record,
batch generator, evaluation, tensorboard writer, status), and the trainers that update them: `SingleSeed`
(one agent: exactly the single-seed path) and `StackedSeeds` (K agents as one stacked agent,
`agents.stacked`: every seed's own initialisation, batch stream, noise stream and record).

Determinism per seed: a seed's agent is built right after seeding everything with that seed, its batch
indices come from its own generator (seeded with the seed), and in a stack its noise from the torch generator
state its single run would have. Seed k of a K-seed run therefore follows the single run of seed k up to
float rounding (batched kernels round differently), and K = 1 is the single run.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.stacked import stack_agents

from .errors import SuiteError
from .results import EvalPoint, RunRecord, write_run_record


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-4' -> (0, 1, 2, 3, 4); '0,3,7' -> (0, 3, 7); mixed '0-2,9' too. One SuiteError line otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not text or not str(text).strip() or any(not p for p in parts):
        raise SuiteError(f"--seeds {text!r}: expected seeds like 0-4 or 0,3,7 (non-negative integers)")
    seeds: list[int] = []
    for p in parts:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", p)
        if m is None:
            raise SuiteError(f"--seeds {text!r}: {p!r} is not a seed or a range like 0-4")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise SuiteError(f"--seeds {text!r}: the range {p!r} is empty (write {hi}-{lo})")
        seeds += range(lo, hi + 1)
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise SuiteError(f"--seeds {text!r}: seed(s) {', '.join(map(str, dup))} given more than once")
    return tuple(seeds)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_global_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


@dataclass
class Slot:
    """One seed of a run: where it writes, what it has done, and its own generators."""

    seed: int
    run_dir: Path
    record: RunRecord
    start: int = 0  # the update it starts (resumes) from
    elapsed: float = 0.0  # wall seconds before this process (resume)
    status: str = "ok"
    error: str | None = None
    gen: torch.Generator | None = None  # batch indices
    rng: dict[str, Any] = field(default_factory=dict)  # the global generators' states after its agent was built
    agent: Any = None
    checkpoint: dict[str, Any] | None = None  # loaded when resuming
    evaluator: Any = None
    writer: Any = None

    def evaluate(self, references, device: torch.device, step: int) -> str:
        """One evaluation of this seed's agent, appended to its curve and tensorboard; the progress-bar text."""
        returns = self.evaluator(self.agent.act, device)
        mean = float(np.mean(returns))
        score = references.normalize(mean) if references else None
        sstd = float(np.std([references.normalize(r) for r in returns])) if references else None
        self.record.curve.append(EvalPoint(step, [float(r) for r in returns], mean, score, sstd))
        if self.writer is not None:
            self.writer.add_scalar("eval/return", mean, step)
            if score is not None:
                self.writer.add_scalar("eval/normalized_score", score, step)
            self.writer.flush()
        return f"{score:.1f}" if score is not None else f"return {mean:.1f}"

    def finish(self, step: int, start: int, wall: float, metrics: dict[str, torch.Tensor] | None) -> None:
        """The run's last stage for this seed: close its evaluator and writer, complete and write its record."""
        self.evaluator.close()
        if self.writer is not None:
            self.writer.close()
        rec = self.record
        rec.steps = step
        rec.wall_time_s = self.elapsed + wall
        rec.updates_per_s = (step - start) / wall if wall > 0 and step > start else None
        rec.status, rec.error = self.status, self.error
        if metrics and self.status == "ok":
            rec.metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        finish_scores(rec)
        if self.status == "diverged":
            rec.final_score = rec.best_score = rec.final_return = None
        write_run_record(rec, self.run_dir)


def finish_scores(record: RunRecord) -> None:
    """Final and best score from the evaluation curve (the final one is what tables report)."""
    if not record.curve:
        return
    last = record.curve[-1]
    record.final_return = last.mean_return
    record.final_score = last.normalized_score
    scores = [p.normalized_score for p in record.curve if p.normalized_score is not None]
    record.best_score = max(scores) if scores else None


class StopSignals:
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


class SingleSeed:
    """One seed, the single-seed path: the global torch generator is the agent's noise stream."""

    def __init__(self, slots: list[Slot], buffer, batch_size: int):
        (self.slot,) = slots
        self.buffer, self.batch_size = buffer, batch_size
        if self.slot.checkpoint is not None:
            set_global_rng_state(self.slot.checkpoint["rng"])

    def update(self) -> dict[str, torch.Tensor]:
        return self.slot.agent.update(self.buffer.sample(self.batch_size, self.slot.gen))

    @staticmethod
    def finite(metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per seed: all of this update's metrics finite, shape (1,)."""
        return torch.isfinite(torch.stack([v.float() for v in metrics.values()])).all().reshape(1)

    @staticmethod
    def metrics_of(i: int, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return metrics

    def sync(self) -> None:
        """The agents are up to date (nothing stacked)."""

    def rng_state(self, i: int) -> dict[str, Any]:
        return global_rng_state()

    def keep(self, members: list[int]) -> None:
        if members != [0]:
            raise RuntimeError("a single-seed run has one member")


class StackedSeeds(SingleSeed):
    """K seeds as one stacked agent (`agents.stacked.stack_agents`); batches (K, B, ...) with each seed's
    indices from its own generator."""

    def __init__(self, slots: list[Slot], buffer, batch_size: int, device: torch.device):
        self.slots, self.buffer, self.batch_size, self.device = list(slots), buffer, batch_size, device
        noise = [_member_rng(s.rng if s.checkpoint is None else s.checkpoint["rng"], device) for s in slots]
        self.stack = stack_agents([s.agent for s in slots], noise, device)

    def update(self) -> dict[str, torch.Tensor]:
        b = self.batch_size
        idx = torch.cat([torch.randint(self.buffer.size, (b,), generator=s.gen, device=s.gen.device)
                         for s in self.slots]).to(self.buffer.device)
        k = len(self.slots)
        batch = {key: v.index_select(0, idx).view(k, b, *v.shape[1:]) for key, v in self.buffer.tensors.items()}
        return self.stack.update(batch)

    @staticmethod
    def finite(metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.isfinite(torch.stack([v.float() for v in metrics.values()])).all(0)

    @staticmethod
    def metrics_of(i: int, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: v[i] for key, v in metrics.items()}

    def sync(self) -> None:
        self.stack.sync()

    def rng_state(self, i: int) -> dict[str, Any]:
        """What the single run of this seed would checkpoint: its noise stream as 'torch' (or 'cuda')."""
        st = dict(self.slots[i].rng)
        key = "cuda" if self.device.type == "cuda" else "torch"
        st[key] = [self.stack.rng[i]] if key == "cuda" else self.stack.rng[i]
        return st

    def keep(self, members: list[int]) -> None:
        self.stack = self.stack.keep(members)
        self.slots = [self.slots[i] for i in members]


def _member_rng(st: dict[str, Any], device: torch.device) -> torch.Tensor:
    return st["cuda"][0] if device.type == "cuda" else st["torch"]


def trainer_for(slots: list[Slot], buffer, batch_size: int, device: torch.device):
    return SingleSeed(slots, buffer, batch_size) if len(slots) == 1 else StackedSeeds(slots, buffer, batch_size,
                                                                                      device)
