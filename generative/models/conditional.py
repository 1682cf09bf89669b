"""The conditional network of mean-reverting diffusion (IR-SDE, Luo et al., ICML 2023, arXiv:2301.11699) and
the wrapper that says what its output means.

:class:`ConditionalUNet` is IR-SDE's conditioning of its U-Net on the degraded image ``mu``: the input is
``cat([x_t - mu, mu], dim=1)`` (2C channels) and the output has C channels. It is a
:class:`~generative.models.unet.UNet` built with ``in_channels = 2C`` whose last convolution is replaced by a
C-channel one, zero-initialised like the original (the untrained network outputs 0).

Time input: the continuous t in [0, T] of :class:`~generative.sdes.MRSDE`. The default ``"positional"``
embedding feeds the raw t, as IR-SDE feeds its integer time index to a sinusoidal embedding: its
frequencies (1 down to 1e-4 radians per unit of t) resolve neighbouring indices and vary smoothly in between,
which matters because MRS-type samplers evaluate the network at non-integer times. ``"fourier"`` feeds
``t / T`` to Gaussian Fourier features (with the UNet's ``fourier_scale``), so the label stays in [0, 1] for
any T; those features are random (seeded) and, at scale 16, much higher in frequency.

:class:`MRModel` holds (network, SDE, ``param``) and converts the raw prediction into the clean image
``x0`` or the noise ``eps`` of the marginal ``x_t = mu + alpha_t (x0 - mu) + sigma_t eps``. With alpha =
alpha_t, sigma = sigma_t, lam = ``sde.lam`` and sigma_hat = sigma / lam = sqrt(1 - alpha^2), ``param`` is

* ``"noise"``: the network predicts eps;
* ``"data"``: the network predicts x0;
* ``"velocity"``: the network predicts v = lam alpha eps - sigma_hat (x0 - mu), the v-prediction of the
  variance-preserving residual (x_t - mu) / lam = alpha (x0 - mu) / lam + sigma_hat eps, on the data scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..sdes import MRSDE, batch_broadcast
from .unet import UNet

__all__ = ["ConditionalUNet", "MRModel", "PARAMS", "build_conditional_unet"]

PARAMS = ("noise", "data", "velocity")


class ConditionalUNet(nn.Module):
    """``net(x, mu, t) -> tensor shaped like x``: a :class:`UNet` on ``cat([x - mu, mu])`` (see the module doc).

    Args:
        image_size: height (= width) of the images.
        channels: image channels C (the network sees 2C and outputs C).
        T: the SDE's time horizon; the ``"fourier"`` embedding is fed ``t / T``.
        ch, ch_mult, num_res_blocks, attn_resolutions, dropout, embedding, fourier_scale: as :class:`UNet`.
    """

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        T: float = 100.0,
        ch: int = 32,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        embedding: str = "positional",
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        if not T > 0:
            raise ValueError(f"ConditionalUNet: T must be positive, got {T}")
        self.channels, self.T, self.embedding = channels, float(T), embedding
        self.unet = UNet(image_size=image_size, in_channels=2 * channels, ch=ch, ch_mult=tuple(ch_mult),
                         num_res_blocks=num_res_blocks, attn_resolutions=tuple(attn_resolutions), dropout=dropout,
                         embedding=embedding, fourier_scale=fourier_scale)
        conv = self.unet.conv_out
        self.unet.conv_out = nn.Conv2d(conv.in_channels, channels, conv.kernel_size, padding=conv.padding)
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)

    def forward(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        label = t if self.embedding == "positional" else t / self.T
        return self.unet(torch.cat([x - mu, mu], dim=1), label)


def build_conditional_unet(spec: Mapping[str, Any]) -> ConditionalUNet:
    """A :class:`ConditionalUNet` from its JSON keyword arguments (lists accepted for the tuple fields)."""
    kwargs = dict(spec)
    for k in ("ch_mult", "attn_resolutions"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    return ConditionalUNet(**kwargs)


class MRModel(nn.Module):
    """(network, :class:`MRSDE`, ``param``): ``predict`` gives the raw output (what ``param`` names, see the
    module doc); ``predict_x0`` and ``predict_noise`` convert it to the clean image and the marginal's noise.

    Conversions (r = x - mu, r0 = x0 - mu, data scale): from eps, r0 = (r - sigma eps) / alpha; from x0,
    eps = (r - alpha r0) / sigma; from v, r0 = alpha r - sigma_hat v and eps = (sigma_hat r + alpha v) / lam.
    Dividing by alpha (which falls to ``sde.eps`` at t = T) makes x0 from a noise prediction ill-conditioned
    near T, and dividing by sigma makes eps from a data prediction ill-conditioned near 0.
    """

    def __init__(self, net: nn.Module, sde: MRSDE, param: str = "noise"):
        super().__init__()
        if param not in PARAMS:
            raise ValueError(f"MRModel: param must be one of {PARAMS}, got {param!r}")
        self.net, self.sde, self.param = net, sde, param

    def _coefs(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t).detach().to("cpu", torch.float64).reshape(-1).expand(x.shape[0])  # MRSDE tables: CPU
        alpha = batch_broadcast(self.sde.alpha(t).to(device=x.device, dtype=x.dtype), x)
        sigma = batch_broadcast(self.sde.std(t).to(device=x.device, dtype=x.dtype), x)
        return t.to(device=x.device, dtype=x.dtype), alpha, sigma

    def predict(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The network's raw output at (x_t = ``x``, ``mu``, ``t``); ``t`` is (B,) or a scalar in [0, T]."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        return self.net(x, mu, t)

    def forward(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.predict(x, mu, t)

    def predict_x0(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The clean-image estimate x0_hat."""
        t, alpha, sigma = self._coefs(x, t)
        out = self.net(x, mu, t)
        if self.param == "data":
            return out
        if self.param == "noise":
            return mu + (x - mu - sigma * out) / alpha
        return mu + alpha * (x - mu) - (sigma / self.sde.lam) * out

    def predict_noise(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The estimate of eps in x_t = mu + alpha_t (x0 - mu) + sigma_t eps."""
        t, alpha, sigma = self._coefs(x, t)
        out = self.net(x, mu, t)
        if self.param == "noise":
            return out
        if self.param == "data":
            return (x - mu - alpha * (out - mu)) / sigma
        return ((sigma / self.sde.lam) * (x - mu) + alpha * out) / self.sde.lam
