"""Score networks and the wrapper that turns a noise-predicting network into a score function.

Output parameterisation (used everywhere in the suite): a network ``net(x_in, label)`` predicts the
noise ε in ``x_t = mean_coef(t)·x_0 + std(t)·ε``; the score is ``∇log p_t(x) ≈ -ε̂ / std(t)``. This is
the official code's ``scale_by_sigma`` (NCSN++, VE) and ``-model / std`` (DDPM++, VP/sub-VP) in one form.

:class:`NoisePredictionScoreModel` adds two choices to the network's inputs:

* ``noise_label``: ``"log_sigma"`` (default) feeds ``log(std(t) / mean_coef(t))``, the noise level of
  the equivalent VE process (exactly log σ(t) for the VE SDE, as NCSN++ does; monotone in t for VP and
  sub-VP, which 999·t is too, but log σ keeps the label's range similar across SDEs);
  ``"time"`` feeds ``999·t`` as DDPM++ does.
* ``input_scaling`` (default on): the network sees ``x / sqrt(mean_coef²·σ_data² + std²)`` so its input
  has roughly unit variance at every t (σ_data = 0.5 for images in [-1, 1]). The official code feeds the
  raw x_t; this is a deviation that matters for VE with σ_max = 50 and short CPU training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .classifier import LeNetClassifier, NoiseLevelClassifier, train_classifier, train_noise_classifier
from .mlp import MLPScoreNet
from .unet import UNet

__all__ = [
    "UNet",
    "MLPScoreNet",
    "LeNetClassifier",
    "train_classifier",
    "NoiseLevelClassifier",
    "train_noise_classifier",
    "NoisePredictionScoreModel",
    "build_net",
    "NETS",
]

NETS: dict[str, type[nn.Module]] = {"unet": UNet, "mlp": MLPScoreNet}


def build_net(kind: str, **kwargs: Any) -> nn.Module:
    """Build a score network by name (``"unet"`` or ``"mlp"``) from JSON-serialisable keyword arguments."""
    if kind not in NETS:
        raise ValueError(f"unknown network {kind!r}; known: {sorted(NETS)}")
    if "ch_mult" in kwargs:
        kwargs["ch_mult"] = tuple(kwargs["ch_mult"])
    if "attn_resolutions" in kwargs:
        kwargs["attn_resolutions"] = tuple(kwargs["attn_resolutions"])
    return NETS[kind](**kwargs)


class NoisePredictionScoreModel(nn.Module):
    """``score_fn(x, t)`` from a noise-predicting network and an SDE (see the module docstring).

    ``forward(x, t)`` returns the score; ``noise_prediction(x, t)`` returns ε̂. ``t`` is (B,) or a scalar.
    """

    def __init__(self, net: nn.Module, sde: Any, noise_label: str = "log_sigma", input_scaling: bool = True,
                 sigma_data: float = 0.5):
        super().__init__()
        if noise_label not in ("log_sigma", "time"):
            raise ValueError(f"noise_label must be 'log_sigma' or 'time', got {noise_label!r}")
        self.net = net
        self.sde = sde
        self.noise_label = noise_label
        self.input_scaling = input_scaling
        self.sigma_data = sigma_data

    def _coefs(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        return t, self.sde.mean_coef(t).to(x.dtype), self.sde.std(t).to(x.dtype)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 1)
        x_in = x
        if self.input_scaling:
            x_in = x / torch.sqrt(m**2 * self.sigma_data**2 + s**2).reshape(shape)
        label = torch.log(s / m) if self.noise_label == "log_sigma" else 999.0 * t
        return self.net(x_in, label)

    def noise_prediction(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t, m, s = self._coefs(x, t)
        return self._eps(x, t, m, s)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t, m, s = self._coefs(x, t)
        return -self._eps(x, t, m, s) / s.reshape((-1,) + (1,) * (x.dim() - 1))
