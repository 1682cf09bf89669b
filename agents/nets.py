"""Networks shared by every agent: MLPs, batched ensembles (twin critics / twin V heads as one network),
policies (Gaussian with state-independent log-std, tanh-Gaussian, deterministic), observation normalisation and
target-network updates. Each piece exists once here; agents compose them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal


def _act(activation: type[nn.Module]) -> nn.Module:
    """ReLU in place (the values and gradients are the same; it skips one allocation per layer, measurable in
    small-MLP updates on a CPU). A Linear's backward does not need its output, so overwriting it is safe."""
    return nn.ReLU(inplace=True) if activation is nn.ReLU else activation()


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    *,
    layer_norm: bool = False,
    dropout: float | None = None,
    activation: type[nn.Module] = nn.ReLU,
    output_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation -> [Dropout] for each hidden layer, then a linear output layer."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(_act(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """`n` independent linear layers evaluated as one batched matmul: (n, B, in) -> (n, B, out).

    Initialised like `nn.Linear` (Kaiming-uniform weights, uniform bias), each member independently."""

    def __init__(self, in_dim: int, out_dim: int, n: int):
        super().__init__()
        self.in_dim, self.out_dim, self.n = in_dim, out_dim, n
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for i in range(self.n):
            # same init as nn.Linear (weight stored transposed here)
            nn.init.kaiming_uniform_(self.weight.data[i].T, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # shared input for every member
            return torch.baddbmm(self.bias, x.unsqueeze(0).expand(self.n, -1, -1), self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with its own affine (weight, bias) per ensemble member: (n, B, h) -> (n, B, h),
    as n separate networks would have. One native `layer_norm` per member on the contiguous slices, stacked:
    faster on CPU (forward and backward) than a broadcast affine after an affine-free layer norm."""

    def __init__(self, n: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(n, dim))
        self.bias = nn.Parameter(torch.zeros(n, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.dim,)
        parts = zip(x.unbind(0), self.weight.unbind(0), self.bias.unbind(0), strict=True)
        return torch.stack([nn.functional.layer_norm(xi, shape, wi, bi, self.eps) for xi, wi, bi in parts])

    def forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """The same map as one affine-free layer norm and a broadcast affine: what `agents.stacked` runs under
        vmap, where the per-member loop above would slice and re-stack along a strided dimension (equal up
        to float rounding: the fused kernel applies the affine in another order)."""
        y = nn.functional.layer_norm(x, (self.dim,), None, None, self.eps)
        return torch.addcmul(self.bias.unsqueeze(-2), y, self.weight.unsqueeze(-2))


class EnsembleMLP(nn.Module):
    """`n` MLPs of identical shape evaluated together: input (B, in) or (n, B, in) -> (n, B, out)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n: int,
        hidden: Sequence[int] = (256, 256),
        *,
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(EnsembleLinear(d, h, n))
            if layer_norm:  # each member has its own LayerNorm affine, as separate networks would
                layers.append(EnsembleLayerNorm(n, h))
            layers.append(_act(activation))
            d = h
        layers.append(EnsembleLinear(d, out_dim, n))
        self.net = nn.Sequential(*layers)
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EnsembleValue(nn.Module):
    """n state-value heads V_i(s) as one network: (B, obs_dim) -> (n, B)."""

    def __init__(self, obs_dim: int, n: int = 2, hidden: Sequence[int] = (256, 256), *, layer_norm: bool = False):
        super().__init__()
        self.net = EnsembleMLP(obs_dim, 1, n, hidden, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class EnsembleCritic(nn.Module):
    """n action-value heads Q_i(s, a) as one network: (B, obs), (B, act) -> (n, B)."""

    def __init__(
        self, obs_dim: int, action_dim: int, n: int = 2, hidden: Sequence[int] = (256, 256), *, layer_norm: bool = False
    ):
        super().__init__()
        self.net = EnsembleMLP(obs_dim + action_dim, 1, n, hidden, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return self.net(x).squeeze(-1)


# ---- the Gaussian policy head's densities: one spelling each, used by every agent ----
# (BC, IQL, O-DICE: `gaussian_log_prob`; SAC, CQL: `tanh_gaussian_sample` / `tanh_gaussian_log_prob`.)

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


def standard_log_prob(z: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))²) from the standardised z = (x − mean)/std, summed over the last
    axis: Σ(−z²/2 − log std) − d·log √(2π). mean/log_std broadcast (ensembles, stacked seeds)."""
    return (-0.5 * z.square() - log_std).sum(-1) - _HALF_LOG_2PI * z.shape[-1]


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))²) summed over the last axis."""
    return standard_log_prob((x - mean) * torch.exp(-log_std), log_std)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u)/du| summed over the last axis, in the stable form 2(log 2 − u − softplus(−2u)) (as
    torch's TanhTransform)."""
    return (2 * (_LOG2 - u - nn.functional.softplus(-2 * u))).sum(-1)


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor):
    """Reparameterised a = tanh(u), u = mean + std·eps, and log p(a) = log N(u) − log|tanh′(u)|, written out
    instead of through `torch.distributions` (same value and gradient up to rounding; it saves the argument
    checks and the recomputation of (u − mean)/std, a measurable share of a small-MLP update on a CPU)."""
    u = torch.addcmul(mean, log_std.exp(), eps)
    return torch.tanh(u), standard_log_prob(eps, log_std) - tanh_log_det(u)


def tanh_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, eps: float = 1e-6):
    """log p(actions) under the tanh-Gaussian, actions in [−1, 1] clipped to ±(1 − eps) before atanh."""
    u = torch.atanh(actions.clamp(-1.0 + eps, 1.0 - eps))
    return gaussian_log_prob(mean, log_std, u) - tanh_log_det(u)


class GaussianPolicy(nn.Module):
    """Gaussian policy with a state-independent log-std (IQL, O-DICE): mean = MLP(s) [tanh-squashed if
    `tanh_mean`], log-std a free parameter clamped to [log_std_min, log_std_max]. `act` returns the mean."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        *,
        tanh_mean: bool = True,
        dropout: float | None = None,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ):
        super().__init__()
        self.net = mlp(obs_dim, action_dim, hidden, dropout=dropout, output_activation=nn.Tanh if tanh_mean else None)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> Normal:
        mean = self.net(obs)
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return Normal(mean, std)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(self.net(obs), self.log_std.clamp(self.log_std_min, self.log_std_max), action)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).clamp(-1.0, 1.0)


class TanhGaussianPolicy(nn.Module):
    """Tanh-squashed Gaussian with state-dependent log-std (SAC, CQL). `sample` is reparameterised and returns
    (action, log_prob) with the tanh change-of-variables correction; `act` returns tanh(mean)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        *,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ):
        super().__init__()
        self.trunk = mlp(obs_dim, 2 * action_dim, hidden)
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def dist(self, obs: torch.Tensor) -> Normal:
        """The Gaussian over pre-tanh actions u (action = tanh(u))."""
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return Normal(mean, log_std.exp())

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action and its log-density (`tanh_gaussian_sample`)."""
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return tanh_gaussian_sample(mean, log_std, torch.randn_like(mean))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        return tanh_gaussian_log_prob(mean, log_std.clamp(self.log_std_min, self.log_std_max), action, eps)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.trunk(obs).chunk(2, dim=-1)
        return torch.tanh(mean)


class DeterministicPolicy(nn.Module):
    """a = max_action * tanh(MLP(s)) (TD3+BC, deterministic BC)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256), max_action: float = 1.0):
        super().__init__()
        self.net = mlp(obs_dim, action_dim, hidden, output_activation=nn.Tanh)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class ObsNormalizer(nn.Module):
    """Fixed (dataset) observation statistics as buffers, so they travel in the agent's state dict."""

    def __init__(self, obs_dim: int, mean=None, std=None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim) if mean is None else torch.as_tensor(mean).float())
        self.register_buffer("std", torch.ones(obs_dim) if std is None else torch.as_tensor(std).float())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target <- (1 - tau) target + tau source, as one fused foreach op (no Python loop per step)."""
    tp = list(target.parameters())
    sp = list(source.parameters())
    torch._foreach_lerp_(tp, sp, tau)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients disabled (target networks)."""
    import copy

    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def fused_adam(params, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel per parameter group; CPU needs torch >= 2.4), falling back to the
    multi-tensor (foreach) implementation where fused is not available for the parameters' device or dtype."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except RuntimeError:
        return torch.optim.Adam(params, foreach=True, **kwargs)
