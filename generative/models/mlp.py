"""An MLP score network for low-dimensional (vector) data, conditioned on a scalar noise label.

Like :class:`generative.models.unet.UNet` it is a plain function ``net(x, label) -> tensor shaped like
x``; :class:`generative.models.NoisePredictionScoreModel` turns its output (noise ε) into a score.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import make_embedding

__all__ = ["MLPScoreNet"]


class MLPScoreNet(nn.Module):
    """``dim`` → ``n_layers`` hidden SiLU layers of width ``hidden`` → ``dim``.

    The label embedding (``"fourier"`` or ``"positional"``, ``embed_dim`` features, then a linear layer)
    is added to every hidden layer's pre-activation, so time conditioning reaches every depth.
    The last layer is zero-initialised (the untrained network predicts ε = 0). Inputs of shape (B, ...)
    with ``dim`` elements per sample (e.g. small images) are flattened and the output is reshaped back.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        n_layers: int = 3,
        embed_dim: int = 64,
        embedding: str = "fourier",
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        self.dim = dim
        self.embed = make_embedding(embedding, embed_dim, fourier_scale)
        self.temb = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n_layers - 1)])
        self.temb_proj = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n_layers)])
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # images (B, C, H, W) are flattened and the output reshaped back
        x = x.reshape(shape[0], -1)
        temb = self.temb(self.embed(label.reshape(-1).expand(x.shape[0])))
        h = torch.nn.functional.silu(self.inp(x) + self.temb_proj[0](temb))
        for layer, proj in zip(self.hidden, self.temb_proj[1:], strict=True):
            h = torch.nn.functional.silu(layer(h) + proj(temb))
        return self.out(h).reshape(shape)
