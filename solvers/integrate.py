"""The single entry point :func:`solve` (diffrax's ``diffeqsolve`` for batch-first PyTorch)."""

from __future__ import annotations

import torch

from ._loop import Problem
from .adjoint import DirectAdjoint
from .controllers import ConstantStepSize
from .saveat import SaveAt
from .solution import Solution


def solve(
    terms,
    solver,
    t0,
    t1,
    y0: torch.Tensor,
    *,
    dt0=None,
    controller=None,
    saveat: SaveAt | None = None,
    adjoint=None,
    max_steps: int = 4096,
    compile: bool | str = False,
) -> Solution:
    """Integrate ``terms`` with ``solver`` from ``t0`` to ``t1`` for a batch ``y0`` of shape ``(B, *shape)``.

    ``t0``/``t1``: Python numbers or per-sample ``(B,)`` tensors; ``t1 < t0`` integrates backwards.
    ``dt0``: initial (adaptive) or constant step magnitude; ``None`` with a ``PIDController`` selects it
    automatically. ``controller``: ``ConstantStepSize()`` (default), ``StepTo(ts)`` or
    ``PIDController(...)``. ``saveat``: :class:`SaveAt`. ``adjoint``: gradient method
    (:mod:`solvers.adjoint`). ``max_steps``: bound on loop iterations (accepted + rejected steps);
    samples that hit it get ``Status.MAX_STEPS_REACHED`` (no exception). ``compile``: fixed-step solves
    only; ``True`` or a ``torch.compile`` mode (``"reduce-overhead"`` uses CUDA graphs) compiles the step.
    """
    solver.check_terms(terms)
    if y0.dim() < 1:
        raise ValueError("y0 must be batch-first: (B, *shape)")
    p = Problem(
        terms=terms,
        solver=solver,
        t0=t0,
        t1=t1,
        y0=y0,
        dt0=dt0,
        controller=controller if controller is not None else ConstantStepSize(),
        saveat=saveat if saveat is not None else SaveAt(),
        max_steps=max_steps,
        compile=compile,
    )
    return (adjoint if adjoint is not None else DirectAdjoint()).run(p)
