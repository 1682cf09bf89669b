"""solvers: the ODE/SDE/CDE integration core of the suite (batch-first PyTorch, per-sample steps).

One entry point, :func:`solve`, whose options are objects: terms (:mod:`solvers.terms`), a solver
(:mod:`solvers.methods`, one method per file), a step-size controller (:mod:`solvers.controllers`),
:class:`SaveAt`, and an adjoint (:mod:`solvers.adjoint`). See ``solvers/README.md``.
"""

from .adjoint import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, ReversibleAdjoint
from .brownian import BrownianIncrements, BrownianInterval
from .controllers import ConstantStepSize, IController, PIDController, StepTo
from .errors import SolveConfigError, TermSolverMismatchError
from .integrate import solve
from .interpolation import HermiteCubicInterpolation, LinearInterpolation
from .methods import (
    RK4,
    SRA1,
    AbstractSolver,
    Bosh3,
    Dopri5,
    Euler,
    EulerHeun,
    EulerMaruyama,
    Heun,
    Midpoint,
    Milstein,
    ReversibleHeun,
    Tsit5,
)
from .saveat import SaveAt
from .solution import Solution, Status
from .terms import CDETerm, ODETerm, SDETerm

__all__ = [
    "solve", "Solution", "Status", "SaveAt",
    "ODETerm", "SDETerm", "CDETerm", "LinearInterpolation", "HermiteCubicInterpolation",
    "AbstractSolver", "Euler", "Midpoint", "Heun", "RK4", "Bosh3", "Dopri5", "Tsit5",
    "EulerMaruyama", "EulerHeun", "Milstein", "SRA1", "ReversibleHeun",
    "ConstantStepSize", "StepTo", "PIDController", "IController",
    "DirectAdjoint", "CheckpointAdjoint", "BacksolveAdjoint", "ReversibleAdjoint",
    "BrownianIncrements", "BrownianInterval",
    "TermSolverMismatchError", "SolveConfigError",
]
