"""Heun's method (explicit trapezoidal rule): second order, two evaluations per step.

It has an embedded Euler error estimate, so it can also be used with the PID controller.
"""

from ._base import ExplicitRK


class Heun(ExplicitRK):
    order = 2
    c = (0.0, 1.0)
    a = ((), (1.0,))
    b = (0.5, 0.5)
    b_error = (-0.5, 0.5)  # Heun minus Euler
