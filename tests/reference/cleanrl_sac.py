"""CleanRL's SAC update (vwxyzjn/cleanrl, `cleanrl/sac_continuous_action.py`) re-created as written there: two
separate `SoftQNetwork`s (256-256), `Actor` with `fc_mean`/`fc_logstd` and tanh-rescaled log-std, one Adam over
both critics, the actor step and the temperature step with its extra no-grad actor forward and its `.item()`,
and the per-parameter Python-loop target update. CleanRL runs the actor `policy_frequency` (2) times every
`policy_frequency` steps; per update on average that is one actor step per critic step, which is what `update`
does (the same work as `agents.sac.SAC.update`). `suite bench agents` times both."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MAX, LOG_STD_MIN = 2, -5


class CleanRLSoftQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CleanRLActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mean = nn.Linear(256, act_dim)
        self.fc_logstd = nn.Linear(256, act_dim)
        self.register_buffer("action_scale", torch.ones(act_dim))
        self.register_buffer("action_bias", torch.zeros(act_dim))

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return mean, log_std

    def get_action(self, x):
        mean, log_std = self(x)
        std = log_std.exp()
        normal = torch.distributions.Normal(mean, std)
        x_t = normal.rsample()
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t)
        log_prob -= torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        log_prob = log_prob.sum(1, keepdim=True)
        mean = torch.tanh(mean) * self.action_scale + self.action_bias
        return action, log_prob, mean


class CleanRLSAC:
    """CleanRL's update loop body (policy_frequency 1 per update on average, target_network_frequency 1)."""

    def __init__(self, obs_dim: int, act_dim: int, gamma: float = 0.99, tau: float = 0.005,
                 q_lr: float = 1e-3, policy_lr: float = 3e-4):
        self.actor = CleanRLActor(obs_dim, act_dim)
        self.qf1, self.qf2 = CleanRLSoftQ(obs_dim, act_dim), CleanRLSoftQ(obs_dim, act_dim)
        self.qf1_target, self.qf2_target = CleanRLSoftQ(obs_dim, act_dim), CleanRLSoftQ(obs_dim, act_dim)
        self.qf1_target.load_state_dict(self.qf1.state_dict())
        self.qf2_target.load_state_dict(self.qf2.state_dict())
        self.q_optimizer = torch.optim.Adam(list(self.qf1.parameters()) + list(self.qf2.parameters()), lr=q_lr)
        self.actor_optimizer = torch.optim.Adam(list(self.actor.parameters()), lr=policy_lr)
        self.target_entropy = -float(act_dim)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.alpha = self.log_alpha.exp().item()
        self.a_optimizer = torch.optim.Adam([self.log_alpha], lr=q_lr)
        self.gamma, self.tau = gamma, tau

    def update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        with torch.no_grad():
            next_state_actions, next_state_log_pi, _ = self.actor.get_action(data["next_observations"])
            qf1_next_target = self.qf1_target(data["next_observations"], next_state_actions)
            qf2_next_target = self.qf2_target(data["next_observations"], next_state_actions)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - self.alpha * next_state_log_pi
            next_q_value = data["rewards"].flatten() + (1 - data["terminals"].flatten()) * self.gamma * (
                min_qf_next_target
            ).view(-1)
        qf1_a_values = self.qf1(data["observations"], data["actions"]).view(-1)
        qf2_a_values = self.qf2(data["observations"], data["actions"]).view(-1)
        qf_loss = F.mse_loss(qf1_a_values, next_q_value) + F.mse_loss(qf2_a_values, next_q_value)
        self.q_optimizer.zero_grad()
        qf_loss.backward()
        self.q_optimizer.step()

        pi, log_pi, _ = self.actor.get_action(data["observations"])
        min_qf_pi = torch.min(self.qf1(data["observations"], pi), self.qf2(data["observations"], pi))
        actor_loss = ((self.alpha * log_pi) - min_qf_pi).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        with torch.no_grad():
            _, log_pi, _ = self.actor.get_action(data["observations"])
        alpha_loss = (-self.log_alpha.exp() * (log_pi + self.target_entropy)).mean()
        self.a_optimizer.zero_grad()
        alpha_loss.backward()
        self.a_optimizer.step()
        self.alpha = self.log_alpha.exp().item()

        for qf, qf_t in ((self.qf1, self.qf1_target), (self.qf2, self.qf2_target)):
            for param, target_param in zip(qf.parameters(), qf_t.parameters(), strict=True):
                target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        return {"qf_loss": qf_loss.item(), "actor_loss": actor_loss.item()}
