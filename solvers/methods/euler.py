"""Euler's method: first order, one evaluation per step, linear dense output."""

from ._base import ExplicitRK


class Euler(ExplicitRK):
    order = 1
    c = (0.0,)
    a = ((),)
    b = (1.0,)
