"""The single entry point :func:`solve` (diffrax's ``diffeqsolve`` for batch-first PyTorch)."""

from __future__ import annotations

import os

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
    compile: bool | str | None = None,
) -> Solution:
    """Integrate ``terms`` with ``solver`` from ``t0`` to ``t1`` for a batch ``y0`` of shape ``(B, *shape)``.

    ``t0``/``t1``: Python numbers or per-sample ``(B,)`` tensors; ``t1 < t0`` integrates backwards.
    ``dt0``: initial (adaptive) or constant step magnitude; ``None`` with a ``PIDController`` selects it
    automatically. ``controller``: ``ConstantStepSize()`` (default), ``StepTo(ts)`` or
    ``PIDController(...)``. ``saveat``: :class:`SaveAt`. ``adjoint``: gradient method
    (:mod:`solvers.adjoint`). ``max_steps``: bound on loop iterations (accepted + rejected steps);
    samples that hit it get ``Status.MAX_STEPS_REACHED`` (no exception).

    ``compile``: ``True`` or a ``torch.compile`` mode (``"reduce-overhead"`` uses CUDA graphs) runs the compiled
    path: a fixed-grid step, adaptive chunks of iterations when autograd records, and the whole adaptive solve as
    one ``while_loop`` without autograd. ``None`` (default) reads ``SOLVERS_COMPILE`` (``1``/``true`` or a mode;
    unset: eager), so one switch turns it on for every sampler built on ``solve``. Compiling costs seconds per
    problem kind (then cached), so it pays on repeated or long solves; a failure to compile warns and runs eagerly.
    """
    if compile is None:
        compile = _compile_from_env()
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


def _compile_from_env() -> bool | str:
    v = os.environ.get("SOLVERS_COMPILE", "").strip()
    if v.lower() in ("", "0", "false", "no", "off"):
        return False
    return True if v.lower() in ("1", "true", "yes", "on") else v
