"""What to save during a solve.

``SaveAt()`` saves only the final state (at each sample's ``t1``); ``t0=True``/``t1=True`` add the
end points to any other choice. ``SaveAt(ts=...)`` saves at given
times, shared ``(T,)`` or per sample ``(B, T)``; states between steps come from the solver's dense
output (fifth/fourth-order polynomials for Dopri5/Tsit5, linear interpolation for the others), so the
step-size controller is not disturbed by the save times. ``SaveAt(steps=True)`` saves every accepted
step (padded per sample; see ``Solution.ys_valid``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SaveAt:
    t0: bool = False
    t1: bool | None = None  # default: True unless ts or steps is given
    ts: torch.Tensor | None = None
    steps: bool = False

    def __post_init__(self):
        if self.ts is not None and self.steps:
            raise ValueError("SaveAt: choose either ts or steps, not both")

    @property
    def save_t1(self) -> bool:
        return self.t1 if self.t1 is not None else (self.ts is None and not self.steps)
