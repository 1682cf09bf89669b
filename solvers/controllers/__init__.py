"""Step-size controllers: fixed (ConstantStepSize, StepTo) and adaptive (PIDController)."""

from .constant import ConstantStepSize
from .pid import IController, PIDController
from .step_to import StepTo

__all__ = ["ConstantStepSize", "StepTo", "PIDController", "IController"]
