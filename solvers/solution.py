"""The result of :func:`solvers.solve`: saved times and states, per-sample statistics and status.

Everything is batch-first: ``ts`` is ``(B, T)``, ``ys`` is ``(B, T, *shape)``; the statistics and the
status are ``(B,)`` integer tensors so that a sample that failed does not hide the others.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch


class Status(enum.IntEnum):
    """Per-sample outcome codes stored in ``Solution.status``."""

    SUCCESS = 0
    MAX_STEPS_REACHED = 1
    STEP_SIZE_TOO_SMALL = 2


@dataclass
class Solution:
    ts: torch.Tensor  # (B, T) saved times
    ys: torch.Tensor  # (B, T, *shape) saved states
    num_steps: torch.Tensor  # (B,) accepted steps
    num_rejected: torch.Tensor  # (B,) rejected steps
    num_fevals: torch.Tensor  # (B,) vector-field evaluations (drift for SDEs) charged to the sample
    status: torch.Tensor  # (B,) values of Status
    ys_valid: torch.Tensor | None = None  # (B, T) bool, only with SaveAt(steps=True): padding mask

    @property
    def success(self) -> torch.Tensor:
        return self.status == Status.SUCCESS

    @property
    def y1(self) -> torch.Tensor:
        """The last saved state of each sample (``ys[:, -1]``)."""
        return self.ys[:, -1]
