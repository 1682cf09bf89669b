"""Named errors raised by the solver core.

A term/solver mismatch (for example Milstein with general noise) is a configuration error and is
raised eagerly, before any step is taken. Numerical failures (too many steps, step size too small)
are *not* exceptions: they are reported per sample in ``Solution.status``.
"""


class TermSolverMismatchError(TypeError):
    """The solver cannot integrate this kind of term (wrong term type or noise type)."""


class SolveConfigError(ValueError):
    """Inconsistent options passed to :func:`solvers.solve`."""
