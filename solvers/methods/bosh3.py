"""Bogacki–Shampine 3(2): third order with an embedded second-order estimate, FSAL (3 evals/step)."""

from ._base import ExplicitRK


class Bosh3(ExplicitRK):
    order = 3
    c = (0.0, 0.5, 0.75, 1.0)
    a = ((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9))
    b = (2 / 9, 1 / 3, 4 / 9, 0.0)
    b_error = (2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8)
