"""The classical fourth-order Runge–Kutta method (no error estimate)."""

from ._base import ExplicitRK


class RK4(ExplicitRK):
    order = 4
    c = (0.0, 0.5, 0.5, 1.0)
    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
