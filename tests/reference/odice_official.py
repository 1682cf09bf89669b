"""A faithful re-creation of the official O-DICE update step (`odice.py` of
https://github.com/maoliyuan/ODICE-Pytorch) as it runs: two separate V MLPs (`OfficialTwinV`: `both` stacks the
heads, `forward` takes their min), backward passes into `.grad`, per-step flattening of the parameter gradients
with `torch.cat`, `.item()` on the projection coefficient, `MultivariateNormal` log-densities, a Python loop
for the EMA and plain (for-loop) Adam.

The tests compare one update of `agents.odice.ODICE` against it (`load_official_into` gives the agent the
re-creation's weights); `suite bench agents` times both."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from agents.odice import ODICE, ODICEConfig

EXP_ADV_MAX = 100.0


# --------------------------------------------------------------------------- official re-creation
def _official_mlp(dims: list[int], layer_norm: bool = False, output_activation=None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if layer_norm:
            layers.append(nn.LayerNorm(dims[i + 1]))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class OfficialTwinV(nn.Module):
    def __init__(self, obs_dim: int, layer_norm: bool = True, hidden: int = 256, n_hidden: int = 2):
        super().__init__()
        dims = [obs_dim, *([hidden] * n_hidden), 1]
        self.v1 = _official_mlp(dims, layer_norm)
        self.v2 = _official_mlp(dims, layer_norm)

    def both(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.v1(obs).squeeze(-1), self.v2(obs).squeeze(-1)], dim=0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.min(self.both(obs), dim=0)[0]


class OfficialGaussianPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 1024, n_hidden: int = 2,
                 use_tanh: bool = False):
        super().__init__()
        self.use_tanh = use_tanh
        self.net = _official_mlp([obs_dim, *([hidden] * n_hidden), act_dim])
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> MultivariateNormal:
        mean = self.net(obs)
        if self.use_tanh:
            mean = torch.tanh(mean)
        std = torch.exp(self.log_std.clamp(-5.0, 2.0))
        return MultivariateNormal(mean, scale_tril=torch.diag(std))


def _official_f_star(residual: torch.Tensor, name: str) -> torch.Tensor:
    if name == "reverse_kl":
        return torch.exp(residual - 1)
    omega = torch.max(residual / 2 + 1, torch.zeros_like(residual))
    return residual * omega - (omega - 1) ** 2


def _official_f_prime_inverse(residual: torch.Tensor, name: str) -> torch.Tensor:
    if name == "reverse_kl":
        return torch.exp(residual - 1)
    return torch.max(residual, torch.zeros_like(residual))


class OfficialODICE:
    """The official update steps (orthogonal / true / semi), written as the official code executes them."""

    def __init__(self, config: ODICEConfig, obs_dim: int, act_dim: int):
        c = self.config = config
        assert c.twin_v and len(set(c.value_hidden)) == 1 and len(set(c.policy_hidden)) == 1
        self.vf = OfficialTwinV(obs_dim, c.value_layer_norm, c.value_hidden[0], len(c.value_hidden))
        self.vf_target = copy.deepcopy(self.vf).requires_grad_(False)
        self.policy = OfficialGaussianPolicy(obs_dim, act_dim, c.policy_hidden[0], len(c.policy_hidden),
                                             c.policy_tanh_mean)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=c.value_lr, foreach=False)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.policy_lr,
                                                 weight_decay=c.policy_weight_decay, foreach=False)
        self.last_coef = 0.0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fn = {"orthogonal": self.orthogonal_update, "true": self.true_update, "semi": self.semi_update}
        return fn[self.config.gradient](batch["observations"], batch["actions"], batch["next_observations"],
                                        batch["rewards"] * self.config.reward_scale, batch["terminals"])

    def _ema(self) -> None:
        beta = self.config.target_update_rate
        for tp, sp in zip(self.vf_target.parameters(), self.vf.parameters(), strict=True):
            tp.data.mul_(1.0 - beta).add_(sp.data, alpha=beta)

    def _policy_update(self, observations, actions, pi_residual) -> float:
        weight = _official_f_prime_inverse(pi_residual, self.config.f_divergence)
        weight = torch.clamp_max(weight, EXP_ADV_MAX).detach()
        bc_losses = -self.policy(observations).log_prob(actions)
        policy_loss = torch.mean(weight * bc_losses)
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        return policy_loss.item()

    def orthogonal_update(self, observations, actions, next_observations, rewards, terminals):
        c = self.config
        lam, fname = c.lam, c.f_divergence
        with torch.no_grad():
            target_v = self.vf_target(observations)
            target_v_next = self.vf_target(next_observations)
        v = self.vf.both(observations)
        v_next = self.vf.both(next_observations)
        forward_residual = rewards + (1.0 - terminals) * c.discount * target_v_next - v
        backward_residual = rewards + (1.0 - terminals) * c.discount * v_next - target_v
        forward_loss = torch.mean(lam * _official_f_star(forward_residual, fname))
        backward_loss = torch.mean(lam * c.eta * _official_f_star(backward_residual, fname))
        pi_residual = forward_residual.clone().detach()

        self.v_optimizer.zero_grad(set_to_none=True)
        forward_list, backward_list = [], []
        forward_loss.backward(retain_graph=True)
        for p in self.vf.parameters():
            forward_list.append(p.grad.clone().detach().reshape(-1))
        backward_loss.backward()
        for i, p in enumerate(self.vf.parameters()):
            backward_list.append(p.grad.clone().detach().reshape(-1) - forward_list[i])
        g_f, g_b = torch.cat(forward_list), torch.cat(backward_list)
        coef = (torch.dot(g_f, g_b) / max(torch.dot(g_f, g_f), 1e-10)).item()
        g_f = (1 - coef) * g_f + g_b
        idx = 0
        for i, g in enumerate(forward_list):
            forward_list[i] = g_f[idx: idx + g.shape[0]]
            idx += g.shape[0]
        self.v_optimizer.zero_grad(set_to_none=True)
        torch.mean((1 - lam) * v).backward()
        for i, p in enumerate(self.vf.parameters()):
            p.grad += forward_list[i].reshape(p.grad.shape)
        self.v_optimizer.step()
        self._ema()
        self.last_coef = coef
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}

    def true_update(self, observations, actions, next_observations, rewards, terminals):
        c = self.config
        v = self.vf.both(observations)
        v_next = self.vf.both(next_observations)
        residual = rewards + (1.0 - terminals) * c.discount * v_next - v
        pi_residual = residual.clone().detach()
        v_loss = torch.mean((1 - c.lam) * v + c.lam * _official_f_star(residual, c.f_divergence))
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()
        self._ema()
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}

    def semi_update(self, observations, actions, next_observations, rewards, terminals):
        # deliberately a copy of true_update but for V(s') from the target network: the official code is
        # written this way, and the re-creation follows it line for line
        c = self.config
        with torch.no_grad():
            target_v_next = self.vf_target(next_observations)
        v = self.vf.both(observations)
        residual = rewards + (1.0 - terminals) * c.discount * target_v_next - v
        pi_residual = residual.clone().detach()
        v_loss = torch.mean((1 - c.lam) * v + c.lam * _official_f_star(residual, c.f_divergence))
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()
        self._ema()
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}


# ------------------------------------------------------------- weights: official -> batched agent
def twin_to_ensemble_state(twin: OfficialTwinV) -> dict[str, torch.Tensor]:
    """State dict of `agents.odice.make_value` (EnsembleValue, per-head LayerNorm) with `twin`'s weights."""
    out: dict[str, torch.Tensor] = {}
    for i, (m1, m2) in enumerate(zip(twin.v1, twin.v2, strict=True)):
        if isinstance(m1, nn.Linear):
            out[f"net.net.{i}.weight"] = torch.stack([m1.weight.T, m2.weight.T]).detach().clone()
            out[f"net.net.{i}.bias"] = torch.stack([m1.bias, m2.bias]).unsqueeze(1).detach().clone()
        elif isinstance(m1, nn.LayerNorm):
            out[f"net.net.{i}.weight"] = torch.stack([m1.weight, m2.weight]).detach().clone()
            out[f"net.net.{i}.bias"] = torch.stack([m1.bias, m2.bias]).detach().clone()
    return out


@torch.no_grad()
def load_official_into(agent: ODICE, official: OfficialODICE) -> None:
    """Give `agent` the official re-creation's V, target V and policy weights (not optimizer state)."""
    agent.value.load_state_dict(twin_to_ensemble_state(official.vf))
    agent.value_target.load_state_dict(twin_to_ensemble_state(official.vf_target))
    agent.policy.load_state_dict(official.policy.state_dict())
