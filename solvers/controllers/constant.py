"""Fixed step size: steps of ``dt0`` from ``t0`` with the last step clipped to land on ``t1``.

Each sample has its own ``t0``/``t1``; the loop runs ``max_i ceil(|t1_i − t0_i| / |dt0|)`` steps and a
sample that has arrived takes zero-length steps (which leave its state unchanged), so the loop needs no
masks and no host synchronisation.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantStepSize:
    adaptive = False
