"""One numerical method per module; each declares ``order`` (ODE) and/or ``strong_order`` (SDE)."""

from ._base import AbstractSolver, ExplicitRK
from .bosh3 import Bosh3
from .dopri5 import Dopri5
from .euler import Euler
from .euler_heun import EulerHeun
from .euler_maruyama import EulerMaruyama
from .heun import Heun
from .midpoint import Midpoint
from .milstein import Milstein
from .reversible_heun import ReversibleHeun
from .rk4 import RK4
from .sra1 import SRA1
from .tsit5 import Tsit5

__all__ = [
    "AbstractSolver", "ExplicitRK", "Euler", "Midpoint", "Heun", "RK4", "Bosh3", "Dopri5", "Tsit5",
    "EulerMaruyama", "EulerHeun", "Milstein", "SRA1", "ReversibleHeun",
]
