"""Solver base classes: the step interface and the explicit Runge–Kutta machinery.

A solver object is stateless configuration. ``init`` returns the carried solver state (a tuple of
tensors, e.g. the first-same-as-last stage), ``step`` advances every sample by its own ``dt`` (shape
``(B,)``, zero for finished samples, negative when integrating backwards) and returns
``(y1, y_error_or_None, dense, new_state)``; ``interpolate(dense, theta)`` evaluates the dense output at
fractions ``theta`` ``(B, T)`` of the step. Butcher tableaux are stored as Python floats: combining
stages with scalar ``alpha`` adds costs one fused kernel per nonzero coefficient and no tensor
allocation for coefficients.
"""

from __future__ import annotations

import torch

from ..errors import TermSolverMismatchError


def bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (B,) tensor so that it broadcasts against ``like`` (B, *shape)."""
    return v.view(v.shape[0], *([1] * (like.dim() - 1)))


def lincomb(coeffs, ks):
    """sum_j coeffs[j] * ks[j], skipping zero coefficients (coeffs are Python floats)."""
    acc = None
    for c, k in zip(coeffs, ks, strict=True):
        if c == 0.0:
            continue
        if acc is None:
            acc = k * c if c != 1.0 else k
        else:
            acc = torch.add(acc, k, alpha=c)
    return acc


def linear_interpolate(y0, y1, theta):
    """Linear dense output: y0 + theta (y1 - y0), theta (B, T) -> (B, T, *shape)."""
    th = theta.view(*theta.shape, *([1] * (y0.dim() - 1)))
    y0 = y0.unsqueeze(1)
    return y0 + th * (y1.unsqueeze(1) - y0)


class AbstractSolver:
    order: int | None = None  # ODE (deterministic) order
    strong_order: float | None = None  # SDE strong order; None for ODE-only solvers
    adaptive: bool = False  # has an embedded error estimate
    sde_type: str | None = None  # "ito" / "stratonovich" for SDE solvers
    fsal: bool = False
    fevals_per_step: int = 1
    init_fevals: int = 0
    noise_types: tuple[str, ...] = ("diagonal", "additive", "general")
    accepts_ode: bool = True  # SDE-only methods set False (their ``order`` is for vanishing noise)

    def check_terms(self, terms) -> None:
        name = type(self).__name__
        if terms.is_sde:
            if self.strong_order is None:
                raise TermSolverMismatchError(f"{name} is an ODE solver; it cannot integrate an SDETerm")
            if terms.noise not in self.noise_types:
                raise TermSolverMismatchError(
                    f"{name} supports noise in {self.noise_types}, the term has noise={terms.noise!r}"
                )
        elif self.order is None or not self.accepts_ode:
            raise TermSolverMismatchError(f"{name} is an SDE solver; it needs an SDETerm")

    def init(self, terms, t0, y0):
        return ()

    def step(self, terms, t, y, dt, state):
        raise NotImplementedError

    def interpolate(self, dense, theta):
        y0, y1 = dense[0], dense[1]
        return linear_interpolate(y0, y1, theta)

    def __repr__(self):
        return f"{type(self).__name__}()"


class ExplicitRK(AbstractSolver):
    """Explicit Runge–Kutta method defined by its tableau (c, a, b) and optional error weights."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None  # weights of (high - low order) solution

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if hasattr(cls, "b"):
            cls.adaptive = cls.b_error is not None
            n = len(cls.b)
            # FSAL: the last stage is evaluated at the new solution, so it is the next step's first stage
            cls.fsal = cls.c[-1] == 1.0 and n > 1 and tuple(cls.a[-1]) == tuple(cls.b[:-1]) and cls.b[-1] == 0
            cls.fevals_per_step = n - 1 if cls.fsal else n
            cls.init_fevals = 1 if cls.fsal else 0
            cls.rk_step = staticmethod(make_rk_step(cls.c, cls.a, cls.b, cls.b_error, cls.fsal))

    def init(self, terms, t0, y0):
        if self.fsal:
            return (terms.vf(t0, y0),)
        return ()

    def step(self, terms, t, y, dt, state):
        y1, err, ks = type(self).rk_step(terms.vf, t, y, dt, state[0] if self.fsal else None)
        new_state = (ks[-1],) if self.fsal else ()
        return y1, err, (y, y1, bview(dt, y), ks), new_state


def make_rk_step(c, a, b, b_error, fsal):
    """The one step of an explicit RK method, generated from its tableau once per class.

    Zero coefficients are dropped and every stage sum is unrolled with Python-float coefficients when the
    class is created, so the function records only the operations the tableau needs: one
    ``addcmul(y, dt, Σ a_ij k_j)`` and one evaluation per stage, one solution and one error combination.
    Eager, that is ~3 kernels per nonzero coefficient; under ``torch.compile`` (``solve(..., compile=True)``)
    inductor fuses the whole step -- stages, error, controller -- into a few C++/Triton kernels. The same
    function serves autograd, the adjoints and the compiled loops: there is no separate fast copy.

    ``rk_step(vf, t, y, dt, k0) -> (y1, err | None, ks)``; ``k0`` is the FSAL stage (``None``: evaluate it).
    """
    n = len(b)
    rows = [tuple((j, x) for j, x in enumerate(a[i]) if x != 0.0) for i in range(n)]
    weights = tuple((j, x) for j, x in enumerate(b) if x != 0.0)
    errw = tuple((j, x) for j, x in enumerate(b_error) if x != 0.0) if b_error is not None else None
    nodes = tuple(float(x) for x in c)

    def comb(coeffs, ks):
        j, x = coeffs[0]
        acc = ks[j] * x if x != 1.0 else ks[j]
        for j, x in coeffs[1:]:
            acc = torch.add(acc, ks[j], alpha=x)
        return acc

    def rk_step(vf, t, y, dt, k0=None):
        dtb = bview(dt, y)
        ks = [vf(t, y) if k0 is None else k0]
        yi = y
        for i in range(1, n):
            yi = torch.addcmul(y, dtb, comb(rows[i], ks)) if rows[i] else y
            ti = torch.add(t, dt, alpha=nodes[i]) if nodes[i] != 0.0 else t
            ks.append(vf(ti, yi))
        y1 = yi if fsal else torch.addcmul(y, dtb, comb(weights, ks))
        err = dtb * comb(errw, ks) if errw else None
        return y1, err, ks

    return rk_step
