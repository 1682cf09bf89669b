"""Faithful re-creations of CORL's TD3+BC, IQL and CQL update steps (`algorithms/offline/{iql,td3_bc,cql}.py`
of https://github.com/corl-team/CORL) as they run: separate critic networks each with its own Adam (PyTorch's
default implementation, a per-parameter loop on CPU), one backward and one optimizer step per loss, `.item()`
on every logged quantity every step, `torch.distributions` objects, Python-loop target EMAs, and for CQL the
actor evaluated on 10x repeated observations.

The tests compare one update of the fast agents against them (`load_corl_iql` / `load_corl_td3bc` copy a
reference's weights into an agent); `suite bench agents` times both."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from agents.cql import CQLConfig
from agents.iql import IQL, IQLConfig
from agents.td3bc import TD3BC, TD3BCConfig


# ---------------------------------------------------------------------------------- CORL re-creations
def _corl_mlp(dims: list[int], output_activation=None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


def _corl_soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for tp, sp in zip(target.parameters(), source.parameters(), strict=True):
        tp.data.copy_((1 - tau) * tp.data + tau * sp.data)


class CorlTwinQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, n_hidden: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim, *([hidden] * n_hidden), 1]
        self.q1, self.q2 = _corl_mlp(dims), _corl_mlp(dims)

    def both(self, obs, act):
        sa = torch.cat([obs, act], 1)
        return self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)

    def forward(self, obs, act):
        return torch.min(*self.both(obs, act))


class CorlGaussianPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, n_hidden: int = 2):
        super().__init__()
        self.net = _corl_mlp([obs_dim, *([hidden] * n_hidden), act_dim], nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs):
        return Normal(self.net(obs), torch.exp(self.log_std.clamp(-20.0, 2.0)))


class CorlIQL:
    """CORL's `ImplicitQLearning.train`, step for step."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig = IQLConfig()):
        c = self.config = config
        h, n = c.hidden[0], len(c.hidden)
        self.qf = CorlTwinQ(obs_dim, act_dim, h, n)
        self.q_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.vf = _corl_mlp([obs_dim, *([h] * n), 1])
        self.actor = CorlGaussianPolicy(obs_dim, act_dim, h, n)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=c.value_lr)
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=c.critic_lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.actor_lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, c.max_steps)
        self.total_it = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c, log = self.config, {}
        obs, act, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        rewards, dones = batch["rewards"], batch["terminals"]
        self.total_it += 1
        with torch.no_grad():
            next_v = self.vf(next_obs).squeeze(-1)
        # V
        with torch.no_grad():
            target_q = self.q_target(obs, act)
        v = self.vf(obs).squeeze(-1)
        adv = target_q - v
        v_loss = torch.mean(torch.abs(c.expectile - (adv < 0).float()) * adv**2)
        log["value_loss"] = v_loss.item()
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()
        # Q
        targets = rewards + (1.0 - dones.float()) * c.discount * next_v.detach()
        qs = self.qf.both(obs, act)
        q_loss = sum(F.mse_loss(q, targets) for q in qs) / len(qs)
        log["q_loss"] = q_loss.item()
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        _corl_soft_update(self.q_target, self.qf, c.tau)
        # policy
        exp_adv = torch.exp(c.temperature * adv.detach()).clamp(max=c.exp_adv_max)
        bc_losses = -self.actor(obs).log_prob(act).sum(-1, keepdim=False)
        policy_loss = torch.mean(exp_adv * bc_losses)
        log["actor_loss"] = policy_loss.item()
        self.actor_optimizer.zero_grad()
        policy_loss.backward()
        self.actor_optimizer.step()
        self.actor_lr_schedule.step()
        return log


class CorlTD3BC:
    """CORL's `TD3_BC.train`, step for step (separate critics, each with its own Adam)."""

    def __init__(self, obs_dim: int, act_dim: int, config: TD3BCConfig = TD3BCConfig()):
        c = self.config = config
        h, n = c.hidden[0], len(c.hidden)
        self.actor = _corl_mlp([obs_dim, *([h] * n), act_dim], nn.Tanh)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_1 = _corl_mlp([obs_dim + act_dim, *([h] * n), 1])
        self.critic_2 = _corl_mlp([obs_dim + act_dim, *([h] * n), 1])
        self.critic_1_target, self.critic_2_target = (
            copy.deepcopy(self.critic_1),
            copy.deepcopy(self.critic_2),
        )
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_1_optimizer = torch.optim.Adam(self.critic_1.parameters(), lr=c.critic_lr)
        self.critic_2_optimizer = torch.optim.Adam(self.critic_2.parameters(), lr=c.critic_lr)
        self.total_it = 0

    @staticmethod
    def _q(critic, obs, act):
        return critic(torch.cat([obs, act], 1))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c, log = self.config, {}
        self.total_it += 1
        state, action, next_state = batch["observations"], batch["actions"], batch["next_observations"]
        reward, not_done = batch["rewards"].unsqueeze(-1), 1 - batch["terminals"].unsqueeze(-1)
        with torch.no_grad():
            noise = (torch.randn_like(action) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            next_action = (self.actor_target(next_state) + noise).clamp(-1.0, 1.0)
            target_q = torch.min(
                self._q(self.critic_1_target, next_state, next_action),
                self._q(self.critic_2_target, next_state, next_action),
            )
            target_q = reward + not_done * c.discount * target_q
        current_q1 = self._q(self.critic_1, state, action)
        current_q2 = self._q(self.critic_2, state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        log["critic_loss"] = critic_loss.item()
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()
        if self.total_it % c.policy_freq == 0:
            pi = self.actor(state)
            q = self._q(self.critic_1, state, pi)
            lmbda = c.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, action)
            log["actor_loss"] = actor_loss.item()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            _corl_soft_update(self.critic_1_target, self.critic_1, c.tau)
            _corl_soft_update(self.critic_2_target, self.critic_2, c.tau)
            _corl_soft_update(self.actor_target, self.actor, c.tau)
        return log


class _Scalar(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.constant = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self):
        return self.constant


class CorlCQLPolicy(nn.Module):
    def __init__(
        self, obs_dim: int, act_dim: int, hidden=(256, 256, 256), log_std_multiplier=1.0, log_std_offset=-1.0
    ):
        super().__init__()
        self.act_dim = act_dim
        self.base_network = _corl_mlp([obs_dim, *hidden, 2 * act_dim])
        nn.init.xavier_uniform_(self.base_network[-1].weight, gain=1e-2)
        nn.init.constant_(self.base_network[-1].bias, 0.0)
        self.log_std_multiplier = _Scalar(log_std_multiplier)
        self.log_std_offset = _Scalar(log_std_offset)

    def _dist(self, obs):
        mean, log_std = torch.split(self.base_network(obs), self.act_dim, dim=-1)
        log_std = (self.log_std_multiplier() * log_std + self.log_std_offset()).clamp(-20.0, 2.0)
        return TransformedDistribution(Normal(mean, torch.exp(log_std)), TanhTransform(cache_size=1))

    def forward(self, obs, repeat: int | None = None):
        if repeat is not None:
            obs = obs.unsqueeze(1).repeat_interleave(repeat, dim=1)
        dist = self._dist(obs)
        a = dist.rsample()
        return a, dist.log_prob(a).sum(-1)


class CorlQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256, 256), orthogonal_init: bool = True):
        super().__init__()
        self.network = _corl_mlp([obs_dim + act_dim, *hidden, 1])
        if orthogonal_init:
            for m in self.network[:-1]:
                if isinstance(m, nn.Linear):
                    nn.init.orthogonal_(m.weight, gain=np.sqrt(2))
                    nn.init.constant_(m.bias, 0.0)
            nn.init.orthogonal_(self.network[-1].weight, gain=1e-2)
        else:
            nn.init.xavier_uniform_(self.network[-1].weight, gain=1e-2)
        nn.init.constant_(self.network[-1].bias, 0.0)

    def forward(self, obs, act):
        if act.ndim == 3 and obs.ndim == 2:  # several actions per observation
            b, k = act.shape[:2]
            obs = obs.unsqueeze(1).repeat_interleave(k, dim=1).reshape(-1, obs.shape[-1])
            q = self.network(torch.cat([obs, act.reshape(-1, act.shape[-1])], -1)).squeeze(-1)
            return q.reshape(b, k)
        return self.network(torch.cat([obs, act], -1)).squeeze(-1)


class CorlCQL:
    """CORL's `ContinuousCQL.train` with its MuJoCo settings (importance sampling on, Lagrange off, no max
    backup, no BC steps), step for step."""

    def __init__(self, obs_dim: int, act_dim: int, config: CQLConfig = CQLConfig()):
        c = self.config = config
        self.critic_1 = CorlQ(obs_dim, act_dim, c.critic_hidden, c.orthogonal_init)
        self.critic_2 = CorlQ(obs_dim, act_dim, c.critic_hidden, c.orthogonal_init)
        self.target_critic_1, self.target_critic_2 = (
            copy.deepcopy(self.critic_1),
            copy.deepcopy(self.critic_2),
        )
        self.actor = CorlCQLPolicy(obs_dim, act_dim, c.actor_hidden, c.log_std_multiplier, c.log_std_offset)
        self.critic_1_optimizer = torch.optim.Adam(self.critic_1.parameters(), c.critic_lr)
        self.critic_2_optimizer = torch.optim.Adam(self.critic_2.parameters(), c.critic_lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), c.actor_lr)
        self.log_alpha = _Scalar(0.0)
        self.alpha_optimizer = torch.optim.Adam(self.log_alpha.parameters(), lr=c.actor_lr)
        self.target_entropy = -float(act_dim)
        self.total_it = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        rewards, dones = batch["rewards"].unsqueeze(-1), batch["terminals"].unsqueeze(-1)
        self.total_it += 1
        new_actions, log_pi = self.actor(obs)
        alpha_loss = -(self.log_alpha() * (log_pi + self.target_entropy).detach()).mean()
        alpha = self.log_alpha().exp() * c.alpha_multiplier
        q_new = torch.min(self.critic_1(obs, new_actions), self.critic_2(obs, new_actions))
        policy_loss = (alpha * log_pi - q_new).mean()
        log = dict(
            log_pi=log_pi.mean().item(),
            policy_loss=policy_loss.item(),
            alpha_loss=alpha_loss.item(),
            alpha=alpha.item(),
        )
        # Q loss
        q1_predicted, q2_predicted = self.critic_1(obs, actions), self.critic_2(obs, actions)
        new_next_actions, next_log_pi = self.actor(next_obs)
        target_q_values = torch.min(
            self.target_critic_1(next_obs, new_next_actions), self.target_critic_2(next_obs, new_next_actions)
        ).unsqueeze(-1)
        td_target = (rewards + (1.0 - dones) * c.discount * target_q_values.detach()).squeeze(-1)
        qf1_loss, qf2_loss = (
            F.mse_loss(q1_predicted, td_target.detach()),
            F.mse_loss(q2_predicted, td_target.detach()),
        )
        b, a_dim, k = actions.shape[0], actions.shape[-1], c.cql_n_actions
        cql_random_actions = actions.new_empty((b, k, a_dim), requires_grad=False).uniform_(-1, 1)
        cql_current_actions, cql_current_log_pis = self.actor(obs, repeat=k)
        cql_next_actions, cql_next_log_pis = self.actor(next_obs, repeat=k)
        cql_current_actions, cql_current_log_pis = cql_current_actions.detach(), cql_current_log_pis.detach()
        cql_next_actions, cql_next_log_pis = cql_next_actions.detach(), cql_next_log_pis.detach()
        q1_rand, q2_rand = self.critic_1(obs, cql_random_actions), self.critic_2(obs, cql_random_actions)
        q1_cur, q2_cur = self.critic_1(obs, cql_current_actions), self.critic_2(obs, cql_current_actions)
        q1_next, q2_next = self.critic_1(obs, cql_next_actions), self.critic_2(obs, cql_next_actions)
        cat_q1 = torch.cat([q1_rand, q1_predicted.unsqueeze(1), q1_next, q1_cur], dim=1)
        cat_q2 = torch.cat([q2_rand, q2_predicted.unsqueeze(1), q2_next, q2_cur], dim=1)
        std_q1, std_q2 = torch.std(cat_q1, dim=1), torch.std(cat_q2, dim=1)
        random_density = np.log(0.5**a_dim)
        cat_q1 = torch.cat(
            [q1_rand - random_density, q1_next - cql_next_log_pis, q1_cur - cql_current_log_pis], 1
        )
        cat_q2 = torch.cat(
            [q2_rand - random_density, q2_next - cql_next_log_pis, q2_cur - cql_current_log_pis], 1
        )
        qf1_ood = torch.logsumexp(cat_q1 / c.cql_temp, dim=1) * c.cql_temp
        qf2_ood = torch.logsumexp(cat_q2 / c.cql_temp, dim=1) * c.cql_temp
        lo = -np.inf if c.cql_clip_diff_min is None else c.cql_clip_diff_min  # CORL's defaults are ±inf
        hi = np.inf if c.cql_clip_diff_max is None else c.cql_clip_diff_max
        qf1_diff = torch.clamp(qf1_ood - q1_predicted, lo, hi).mean()
        qf2_diff = torch.clamp(qf2_ood - q2_predicted, lo, hi).mean()
        min_qf1_loss, min_qf2_loss = qf1_diff * c.cql_alpha, qf2_diff * c.cql_alpha
        qf_loss = qf1_loss + qf2_loss + min_qf1_loss + min_qf2_loss
        log.update(
            qf1_loss=qf1_loss.item(),
            qf2_loss=qf2_loss.item(),
            average_qf1=q1_predicted.mean().item(),
            average_qf2=q2_predicted.mean().item(),
            average_target_q=target_q_values.mean().item(),
            cql_std_q1=std_q1.mean().item(),
            cql_std_q2=std_q2.mean().item(),
            cql_q1_rand=q1_rand.mean().item(),
            cql_q2_rand=q2_rand.mean().item(),
            cql_min_qf1_loss=min_qf1_loss.mean().item(),
            cql_min_qf2_loss=min_qf2_loss.mean().item(),
            cql_qf1_diff=qf1_diff.mean().item(),
            cql_qf2_diff=qf2_diff.mean().item(),
            cql_q1_current_actions=q1_cur.mean().item(),
            cql_q2_current_actions=q2_cur.mean().item(),
            cql_q1_next_actions=q1_next.mean().item(),
            cql_q2_next_actions=q2_next.mean().item(),
        )
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()
        self.actor_optimizer.zero_grad()
        policy_loss.backward()
        self.actor_optimizer.step()
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        qf_loss.backward(retain_graph=True)
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()
        _corl_soft_update(self.target_critic_1, self.critic_1, c.tau)
        _corl_soft_update(self.target_critic_2, self.critic_2, c.tau)
        return log


# ---------------------------------------------------------------------- weights: CORL -> batched agent
def pair_to_ensemble(
    m1: nn.Sequential, m2: nn.Sequential, prefix: str = "net.net."
) -> dict[str, torch.Tensor]:
    """State dict of an `EnsembleMLP`-backed module holding two `nn.Sequential` MLPs' weights."""
    out: dict[str, torch.Tensor] = {}
    for i, (l1, l2) in enumerate(zip(m1, m2, strict=True)):
        if isinstance(l1, nn.Linear):
            out[f"{prefix}{i}.weight"] = torch.stack([l1.weight.T, l2.weight.T]).detach().clone()
            out[f"{prefix}{i}.bias"] = torch.stack([l1.bias, l2.bias]).unsqueeze(1).detach().clone()
    return out


def load_corl_iql(agent: IQL, ref: CorlIQL) -> None:
    """Copy the reference's networks into `agent` (twin Q -> ensemble; optimizers start fresh on both)."""
    agent.critic.load_state_dict(pair_to_ensemble(ref.qf.q1, ref.qf.q2))
    agent.critic_target.load_state_dict(pair_to_ensemble(ref.q_target.q1, ref.q_target.q2))
    agent.value.load_state_dict(ref.vf.state_dict())
    agent.actor.load_state_dict(ref.actor.state_dict())


def load_corl_td3bc(agent: TD3BC, ref: CorlTD3BC) -> None:
    agent.critic.load_state_dict(pair_to_ensemble(ref.critic_1, ref.critic_2))
    agent.critic_target.load_state_dict(pair_to_ensemble(ref.critic_1_target, ref.critic_2_target))
    agent.actor.net.load_state_dict(ref.actor.state_dict())
    agent.actor_target.net.load_state_dict(ref.actor_target.state_dict())
