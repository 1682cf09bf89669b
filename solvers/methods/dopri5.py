"""Dormand–Prince 5(4): fifth order, embedded fourth-order error estimate, FSAL (6 evals/step).

Dense output is Hairer's fourth-order continuous extension (the ``contd5`` polynomial of DOPRI5).
"""

from ._base import ExplicitRK, lincomb

# continuous-extension weights (Hairer, Nørsett & Wanner, DOPRI5)
_D = (
    -12715105075 / 11282082432,
    0.0,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
    701980252875 / 199316789632,
    -1453857185 / 822651844,
    69997945 / 29380423,
)


class Dopri5(ExplicitRK):
    order = 5
    c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
    a = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    )
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    b_error = (
        35 / 384 - 5179 / 57600,
        0.0,
        500 / 1113 - 7571 / 16695,
        125 / 192 - 393 / 640,
        -2187 / 6784 + 92097 / 339200,
        11 / 84 - 187 / 2100,
        -1 / 40,
    )

    def interpolate(self, dense, theta):
        y0, y1, dtb, ks = dense
        th = theta.view(*theta.shape, *([1] * (y0.dim() - 1)))
        u = lambda x: x.unsqueeze(1)  # noqa: E731
        dy = y1 - y0
        r3 = dtb * ks[0] - dy
        r4 = dy - dtb * ks[-1] - r3
        r5 = dtb * lincomb(_D, ks)
        s = 1.0 - th
        return u(y0) + th * (u(dy) + s * (u(r3) + th * (u(r4) + s * u(r5))))
