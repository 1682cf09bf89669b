"""Terms: what is integrated.

* ``ODETerm(f)``: ``dy = f(t, y) dt`` with ``t`` of shape ``(B,)`` and ``y`` of shape ``(B, *shape)``.
* ``SDETerm(drift, diffusion, noise=..., brownian=...)``: ``dy = f(t, y) dt + g(t, y) dW``. The SDE type
  (Ito or Stratonovich) is a property of the *solver* (Euler–Maruyama/Milstein are Ito, Euler–Heun and
  reversible Heun are Stratonovich), as in diffrax. ``noise`` is

  - ``"diagonal"``: ``g(t, y)`` has the shape of ``y``, each component driven by its own Brownian motion;
  - ``"additive"``: as diagonal, but ``g`` must not depend on ``y`` (SRA1 relies on it);
  - ``"general"``: ``y`` is ``(B, d)``, ``g(t, y)`` is ``(B, d, m)`` and ``dW`` is ``(B, m)``.

  We chose one SDE term over diffrax's ``MultiTerm(ODETerm, ControlTerm)``: every solver here needs the
  drift/diffusion split anyway, and the noise type is what decides solver compatibility.
* ``CDETerm(f, path)``: ``dz = f(t, z) dX(t)`` for an interpolated control path ``X``
  (:mod:`solvers.interpolation`); ``f`` returns ``(B, *shape, channels)``. It is integrated as the ODE
  ``dz/dt = f(t, z) dX/dt``, so every ODE solver and controller applies (torchcde's approach).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NOISE_TYPES = ("diagonal", "additive", "general")


class ODETerm:
    is_sde = False

    def __init__(self, vector_field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.vector_field = vector_field

    def vf(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.vector_field(t, y)


class SDETerm:
    is_sde = True

    def __init__(self, drift, diffusion, *, noise: str = "diagonal", brownian=None):
        if noise not in NOISE_TYPES:
            raise ValueError(f"noise must be one of {NOISE_TYPES}, got {noise!r}")
        if brownian is None:
            raise ValueError("SDETerm needs an explicit brownian= (BrownianIncrements or BrownianInterval)")
        self.drift = drift
        self.diffusion = diffusion
        self.noise = noise
        self.brownian = brownian

    def vf(self, t, y):
        return self.drift(t, y)

    def g(self, t, y):
        return self.diffusion(t, y)

    def prod(self, g: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
        """Diffusion times noise increment: elementwise, or a matrix-vector product for general noise."""
        if self.noise == "general":
            return torch.matmul(g, dw.unsqueeze(-1)).squeeze(-1)
        return g * dw

    def add_prod(self, y: torch.Tensor, g, dw: torch.Tensor) -> torch.Tensor:
        """``y + prod(g, dw)`` in one kernel where possible (a Python-number ``g`` or elementwise noise)."""
        if self.noise == "general":
            return y + self.prod(g, dw)
        if isinstance(g, (int, float)):
            return torch.add(y, dw, alpha=g)
        return torch.addcmul(y, g, dw)


class CDETerm:
    is_sde = False

    def __init__(self, vector_field, path):
        self.vector_field = vector_field
        self.path = path

    def vf(self, t, z):
        dx = self.path.derivative(t)  # (B, channels)
        fz = self.vector_field(t, z)  # (B, *shape, channels)
        return (fz * dx.view(dx.shape[0], *([1] * (z.dim() - 1)), -1)).sum(-1)
