"""Explicit midpoint method: second order, two evaluations per step."""

from ._base import ExplicitRK


class Midpoint(ExplicitRK):
    order = 2
    c = (0.0, 0.5)
    a = ((), (0.5,))
    b = (0.0, 1.0)
