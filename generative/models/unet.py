"""A small U-Net score network of the NCSN++/DDPM++ family (Song et al. 2021, Ho et al. 2020).

The network maps a noisy image and a scalar noise label per sample to an output of the image's shape.
It is a plain function approximator; what the output means (noise ε, so that score = -ε/std(t)) is
decided by :class:`generative.models.NoisePredictionScoreModel`, which wraps it.

Pieces kept from the official ``ncsnpp.py``/``ddpm.py``: Gaussian Fourier (scale 16) or sinusoidal
(transformer) embedding of the noise label followed by a two-layer MLP, residual blocks with GroupNorm
(``min(C // 4, 32)`` groups), SiLU, dropout and skip rescaling by 1/√2, self-attention at chosen
resolutions and in the middle, channel multipliers per level, a zero-initialised last convolution.
Deviations: no FIR resampling, no progressive input/output branches (the "deep" variants' extras), and
up-sampling resizes to the skip connection's size so odd sizes such as 28×28 → 7×7 → 4×4 work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GaussianFourierEmbedding", "SinusoidalEmbedding", "make_embedding", "UNet"]


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of a scalar label (NCSN++ uses it on log σ); fixed, not trained."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        proj = label[:, None].to(self.W.dtype) * self.W[None, :] * (2 * math.pi)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


class SinusoidalEmbedding(nn.Module):
    """Transformer positional embedding of a scalar label (DDPM++ uses it on 999·t)."""

    def __init__(self, dim: int, max_positions: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim = dim
        self.max_positions = max_positions

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(self.max_positions) * torch.arange(half, device=label.device, dtype=torch.float32) / (half - 1)
        )
        args = label.float()[:, None] * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


def make_embedding(kind: str, dim: int, fourier_scale: float = 16.0) -> nn.Module:
    if kind == "fourier":
        return GaussianFourierEmbedding(dim, fourier_scale)
    if kind == "positional":
        return SinusoidalEmbedding(dim)
    raise ValueError(f"unknown embedding {kind!r}; expected 'fourier' or 'positional'")


def _groups(channels: int) -> int:
    return max(1, min(channels // 4, 32))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in, eps=1e-6)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        nn.init.zeros_(self.temb.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj(h.transpose(1, 2).reshape(B, C, H, W))
        return (x + h) / math.sqrt(2.0)


class UNet(nn.Module):
    """U-Net ``net(x, label) -> tensor shaped like x``.

    Args:
        image_size: height (= width) of the inputs; only used to decide where attention goes.
        in_channels: image channels (1 for digits/MNIST, 3 for CIFAR-10).
        ch: base channel count.
        ch_mult: channel multiplier per resolution level; each level after the first halves the size.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: feature-map sizes at which self-attention is applied (may be empty).
        dropout: dropout inside residual blocks.
        embedding: ``"fourier"`` (Gaussian Fourier features) or ``"positional"`` (sinusoidal).
        fourier_scale: scale of the Fourier features (16 in NCSN++).
    """

    def __init__(
        self,
        image_size: int = 8,
        in_channels: int = 1,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (4,),
        dropout: float = 0.1,
        embedding: str = "fourier",
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        self.in_channels = in_channels
        temb_dim = 4 * ch
        self.embed = make_embedding(embedding, ch, fourier_scale)
        self.temb_mlp = nn.Sequential(nn.Linear(ch, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [ch]
        c, res = ch, image_size
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(c, ch * mult, temb_dim, dropout)])
                c = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(c))
                self.down.append(blocks)
                skip_channels.append(c)
            if level != len(ch_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skip_channels.append(c)
                res = (res + 1) // 2

        self.mid = nn.ModuleList([ResBlock(c, c, temb_dim, dropout), AttnBlock(c), ResBlock(c, c, temb_dim, dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(c + skip_channels.pop(), ch * mult, temb_dim, dropout)])
                c = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(c))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([nn.Conv2d(c, c, 3, padding=1)]))
                res = res * 2
        assert not skip_channels

        self.norm_out = nn.GroupNorm(_groups(c), c, eps=1e-6)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        temb = self.temb_mlp(self.embed(label.reshape(-1).expand(x.shape[0])))
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            if isinstance(blocks[0], ResBlock):
                h = blocks[0](h, temb)
                for extra in blocks[1:]:
                    h = extra(h)
            else:  # down-sampling convolution
                h = blocks[0](h)
            hs.append(h)
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = blocks[0](torch.cat([h, hs.pop()], dim=1), temb)
                for extra in blocks[1:]:
                    h = extra(h)
            else:  # up-sampling to the size of the next skip connection, then a convolution
                h = blocks[0](F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
