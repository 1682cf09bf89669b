"""Step exactly through a user grid (e.g. a diffusion noise schedule).

``StepTo(ts)`` with ``ts`` of shape ``(N,)`` (shared) or ``(B, N)`` (per sample); the grid defines the
time span (``ts[..., 0]`` is the start, ``ts[..., -1]`` the end; it may decrease). Equal consecutive
entries give zero-length steps, which is how per-sample grids of different lengths can be padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepTo:
    ts: torch.Tensor
    adaptive = False
