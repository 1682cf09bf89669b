"""Conservative Q-learning (CQL-H, SAC-based) for offline RL: soft actor-critic whose critics also minimise
logsumexp_a Q(s, a) − Q(s, a_data), the log-sum-exp estimated from uniform actions and current-policy actions
with importance weights.

Paper: Kumar, Zhou, Tucker, Levine, "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS
2020, https://arxiv.org/abs/2006.04779. Reference implementation we match: CORL `algorithms/offline/cql.py`,
https://github.com/corl-team/CORL (itself a port of https://github.com/young-geng/CQL).

Defaults are CORL's MuJoCo settings: min-Q weight (`cql_alpha`) 10, 10 sampled actions of each kind,
importance sampling on, Lagrange off, no max-backup, no entropy term in the backup, automatic entropy
temperature with target −action_dim (its Adam uses the policy learning rate), Adam 3e-5 for the policy and
3e-4 for the critics, target EMA 5e-3 every update, γ = 0.99, batch 256, 256-256-256 critics with orthogonal
initialisation (last layer gain 1e-2), a 256-256-256 tanh-Gaussian policy whose log-std is `multiplier·raw +
offset` with learnable multiplier (1) and offset (−1), clamped to [−20, 2], and last layer initialised
Xavier-uniform with gain 1e-2; observations standardised, rewards untouched.

Deviations
- From the paper: as CORL (and young-geng/CQL): the importance-sampled estimator leaves the data action out of
  the log-sum-exp; the "next" policy actions are sampled at s' but evaluated at s; the target uses clipped
  double-Q without the entropy term; the Lagrange variant is optional and off.
- From CORL, without changing the mathematics: twin critics are one batched `EnsembleCritic`, and every critic
  value the loss needs at s (data, uniform, current, next actions; both heads) is ONE batched forward pass;
  the policy network is evaluated once per state and its k samples per state drawn from that one output (CORL
  runs the network on k copies of each state, which gives the same distribution); the temperature, policy and
  critic losses take ONE backward pass (they use only pre-update quantities, so each parameter gets exactly
  CORL's gradient; the policy's Q(s, π(s)) uses detached critic weights, matching CORL where those critic
  gradients are discarded); one fused Adam with a parameter group per CORL optimizer; metrics are detached
  tensors (no `.item()`).
- From CORL: the random stream is consumed in a different order (same distributions, different draws).
- From CORL: in the optional BC warm-up (`bc_steps`, 0 on MuJoCo) dataset actions are clipped to ±(1 − 1e-6)
  before atanh, where CORL would produce an infinite log-density for actions at the bounds.
- `cql_clip_diff_min/max` use None for "no clipping" (CORL: ±inf), which keeps configs plain JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from agents.base import BATCH_KEYS, REWARD_TRANSFORMS, OfflineAgent
from agents.nets import (
    EnsembleCritic,
    EnsembleLinear,
    TanhGaussianPolicy,
    frozen_copy,
    fused_adam,
    soft_update,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
)
from agents.stacked import SeedStack


@dataclass(frozen=True)
class CQLConfig:
    batch_size: int = 256  # transitions per update
    discount: float = 0.99  # γ
    tau: float = 5e-3  # EMA rate of the target critics
    target_update_period: int = 1  # target EMA every this many updates
    actor_lr: float = 3e-5  # Adam learning rate of the policy
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    alpha_lr: float = 3e-5  # Adam learning rate of log(entropy temperature) (CORL: the policy's)
    alpha_multiplier: float = 1.0  # entropy temperature = alpha_multiplier * exp(log_alpha)
    auto_alpha: bool = True  # learn the entropy temperature towards target_entropy
    target_entropy: float | None = None  # None means −action_dim
    backup_entropy: bool = False  # subtract α·log π(a'|s') in the TD target (SAC); off in CORL
    cql_alpha: float = 10.0  # weight of the conservative penalty ("min-Q weight")
    cql_n_actions: int = 10  # actions of each kind (uniform, π(·|s), π(·|s')) per state in the penalty
    cql_importance_sample: bool = True  # importance-weighted log-sum-exp (data action left out)
    cql_temp: float = 1.0  # temperature of the log-sum-exp
    cql_lagrange: bool = False  # tune the penalty weight to hold the gap at cql_target_action_gap
    cql_target_action_gap: float = -1.0  # target of the Lagrange variant
    cql_lagrange_lr: float = 3e-4  # Adam learning rate of log(alpha_prime) (CORL: the critics')
    cql_max_target_backup: bool = False  # target = max over cql_n_actions policy actions of min-Q
    cql_clip_diff_min: float | None = None  # lower clip of logsumexp − Q(s, a_data) per sample (None: none)
    cql_clip_diff_max: float | None = None  # upper clip of the same (None: none)
    bc_steps: int = 0  # updates at the start where the policy does maximum likelihood instead (AntMaze)
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # hidden sizes of each critic (CORL: 3 layers)
    actor_hidden: tuple[int, ...] = (256, 256, 256)  # hidden sizes of the policy
    orthogonal_init: bool = True  # orthogonal critic initialisation (gain √2, last layer 1e-2), zero biases
    log_std_multiplier: float = 1.0  # initial value of the learnable log-std multiplier
    log_std_offset: float = -1.0  # initial value of the learnable log-std offset
    log_std_min: float = -20.0  # log-std clamp
    log_std_max: float = 2.0  # log-std clamp
    reward_scale: float = 1.0  # rewards are used as r * reward_scale + reward_bias (CORL's AntMaze option)
    reward_bias: float = 0.0  # see reward_scale
    normalize_observations: bool = True  # standardise observations with dataset mean/std (CORL)
    reward_transform: str = "none"  # see agents.base.REWARD_TRANSFORMS
    max_steps: int = 1_000_000  # gradient updates in a run
    eval_every: int = 5000  # updates between evaluations
    eval_episodes: int = 10  # episodes per evaluation

    def __post_init__(self):
        object.__setattr__(self, "critic_hidden", tuple(int(h) for h in self.critic_hidden))
        object.__setattr__(self, "actor_hidden", tuple(int(h) for h in self.actor_hidden))
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(
                f"reward_transform must be one of {REWARD_TRANSFORMS}, got {self.reward_transform!r}"
            )
        if self.cql_n_actions < 1 or self.target_update_period < 1:
            raise ValueError("cql_n_actions and target_update_period must be >= 1")


# ---- pieces (pure functions) ----


def cql_penalty(
    q_data: torch.Tensor,
    q_rand: torch.Tensor,
    q_next: torch.Tensor,
    q_cur: torch.Tensor,
    next_log_pi: torch.Tensor,
    cur_log_pi: torch.Tensor,
    *,
    action_dim: int,
    temperature: float = 1.0,
    importance_sample: bool = True,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> torch.Tensor:
    """Per-head conservative gap mean_s[T·logsumexp_a(Q(s, a)/T) − Q(s, a_data)] -> (n,).

    q_data (n, B); q_rand, q_next, q_cur (n, B, k) at uniform actions, π(·|s') actions and π(·|s) actions, all
    evaluated at s; next_log_pi, cur_log_pi (B, k) their log-densities. With importance sampling each term is
    divided by its proposal density (uniform on [−1, 1]^A: 0.5^A) and the data action is left out."""
    if importance_sample:
        log_uniform = action_dim * math.log(0.5)
        cat = torch.cat([q_rand - log_uniform, q_next - next_log_pi, q_cur - cur_log_pi], dim=-1)
    else:
        cat = torch.cat([q_rand, q_data.unsqueeze(-1), q_next, q_cur], dim=-1)
    gap = torch.logsumexp(cat / temperature, dim=-1) * temperature - q_data
    if clip_min is not None or clip_max is not None:
        gap = gap.clamp(clip_min, clip_max)
    return gap.mean(-1)


def orthogonal_init_(critic: EnsembleCritic) -> None:
    """CORL's critic init per head: orthogonal weights (gain √2; last layer 1e-2), zero biases."""
    layers = [m for m in critic.modules() if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            gain = 1e-2 if i == len(layers) - 1 else math.sqrt(2.0)
            for j in range(layer.n):
                nn.init.orthogonal_(layer.weight[j].T, gain=gain)
            layer.bias.zero_()


class CQLPolicy(nn.Module):
    """CORL's CQL policy: a tanh-Gaussian MLP whose log-std is multiplier·raw + offset (both learnable),
    clamped; last layer Xavier-uniform with gain 1e-2 and zero bias. `act` is tanh(mean)."""

    def __init__(self, obs_dim: int, action_dim: int, c: CQLConfig):
        super().__init__()
        self.base = TanhGaussianPolicy(
            obs_dim, action_dim, c.actor_hidden, log_std_min=c.log_std_min, log_std_max=c.log_std_max
        )
        last = self.base.trunk[-1]
        nn.init.xavier_uniform_(last.weight, gain=1e-2)
        nn.init.zeros_(last.bias)
        self.log_std_multiplier = nn.Parameter(torch.tensor(float(c.log_std_multiplier)))
        self.log_std_offset = nn.Parameter(torch.tensor(float(c.log_std_offset)))
        self.log_std_min, self.log_std_max = c.log_std_min, c.log_std_max

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.base.trunk(obs).chunk(2, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(
            self.log_std_min, self.log_std_max
        )
        return mean, log_std

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.base.act(obs)


# ---- agent ----


class CQL(OfflineAgent):
    """CQL agent (see module docstring). `update` takes one batch of already-prepared transitions."""

    STATE_PARTS = ("actor", "critic", "critic_target", "optim", "obs_norm")
    STATE_TENSORS = ("log_alpha", "log_alpha_prime")
    STATE_INTS = ("step",)
    NUMERICS = 2  # 2026-12-02: the one tanh-Gaussian sample / log-density of agents.nets (rounding moved)

    def __init__(self, config: CQLConfig, obs_dim: int, action_dim: int, **kwargs):
        super().__init__(config, obs_dim, action_dim, **kwargs)  # obs_mean, obs_std, device
        c = config
        self.actor = CQLPolicy(obs_dim, action_dim, c).to(self.device)
        self.critic = EnsembleCritic(obs_dim, action_dim, 2, c.critic_hidden)
        if c.orthogonal_init:
            orthogonal_init_(self.critic)
        else:  # CORL still initialises the last layer Xavier-uniform with gain 1e-2
            last = [m for m in self.critic.modules() if isinstance(m, EnsembleLinear)][-1]
            with torch.no_grad():
                for j in range(last.n):
                    nn.init.xavier_uniform_(last.weight[j].T, gain=1e-2)
                last.bias.zero_()
        self.critic = self.critic.to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.log_alpha = nn.Parameter(torch.zeros((), device=self.device))
        self.log_alpha_prime = nn.Parameter(torch.ones((), device=self.device))  # CORL starts it at 1.0
        self.target_entropy = -float(action_dim) if c.target_entropy is None else float(c.target_entropy)
        # one optimizer, one parameter group per CORL optimizer (unused groups get no gradient and stay put)
        self.optim = fused_adam(
            [
                {"params": list(self.actor.parameters()), "lr": c.actor_lr},
                {"params": list(self.critic.parameters()), "lr": c.critic_lr},
                {"params": [self.log_alpha], "lr": c.alpha_lr},
                {"params": [self.log_alpha_prime], "lr": c.cql_lagrange_lr},
            ]
        )
        self.step = 0  # updates done (Python int)

    def _q_frozen(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """All critic heads with detached weights (gradients reach the actions only)."""
        params = {name: p.detach() for name, p in self.critic.named_parameters()}
        return functional_call(self.critic, params, (obs, actions))

    def draw_noise(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every random draw of one update, in the order the update uses them: the policy sample at s, the
        target-action sample(s) at s', the uniform, π(·|s) and π(·|s') penalty actions."""
        c = self.config
        (b, a_dim), k = actions.shape, c.cql_n_actions
        like = dict(device=actions.device, dtype=actions.dtype)
        noise = {"policy": torch.randn(b, a_dim, **like)}
        noise["target"] = torch.randn(b, k, a_dim, **like) if c.cql_max_target_backup else torch.randn(b, a_dim, **like)
        noise["uniform"] = torch.empty(b, k, a_dim, **like).uniform_(-1.0, 1.0)
        noise["current"] = torch.randn(b, k, a_dim, **like)
        noise["next"] = torch.randn(b, k, a_dim, **like)
        return noise

    def compute_losses(self, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor] | None = None
                       ) -> dict[str, torch.Tensor]:
        """All losses of one update (before any parameter moves) and the sampled actions they used; `noise`
        as `draw_noise` gives it (drawn here when not given)."""
        c = self.config
        obs, actions, rewards, next_obs, terminals = (batch[k] for k in BATCH_KEYS)
        if noise is None:
            noise = self.draw_noise(actions)
        if c.reward_scale != 1.0 or c.reward_bias != 0.0:
            rewards = rewards * c.reward_scale + c.reward_bias
        b, a_dim, k = actions.shape[0], actions.shape[-1], c.cql_n_actions
        out: dict[str, torch.Tensor] = {}

        # policy at s (with gradient) and at s' (without): one network pass per state
        mean, log_std = self.actor.mean_log_std(obs)
        with torch.no_grad():
            next_mean, next_log_std = self.actor.mean_log_std(next_obs)
        new_actions, log_pi = tanh_gaussian_sample(mean, log_std, noise["policy"])

        # entropy temperature
        if c.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
            alpha = self.log_alpha.detach().exp() * c.alpha_multiplier
        else:
            alpha_loss = torch.zeros((), device=obs.device, dtype=obs.dtype)
            alpha = torch.full((), c.alpha_multiplier, device=obs.device, dtype=obs.dtype)

        # policy
        if self.step < c.bc_steps:  # CORL: total_it <= bc_steps with total_it counted from 1
            policy_loss = (alpha * log_pi - tanh_gaussian_log_prob(mean, log_std, actions)).mean()
        else:
            q_new = self._q_frozen(obs, new_actions).min(0).values
            policy_loss = (alpha * log_pi - q_new).mean()

        # TD target
        with torch.no_grad():
            if c.cql_max_target_backup:
                next_a, next_lp = tanh_gaussian_sample(next_mean.unsqueeze(1), next_log_std.unsqueeze(1),
                                                       noise["target"])
                next_obs_k = next_obs.unsqueeze(1).expand(b, k, -1).reshape(b * k, -1)
                tq = self.critic_target(next_obs_k, next_a.reshape(b * k, a_dim)).min(0).values.view(b, k)
                target_q, idx = tq.max(-1)
                next_lp = next_lp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
            else:
                next_a, next_lp = tanh_gaussian_sample(next_mean, next_log_std, noise["target"])
                target_q = self.critic_target(next_obs, next_a).min(0).values
            if c.backup_entropy:
                target_q = target_q - alpha * next_lp
            td_target = rewards + c.discount * (1.0 - terminals) * target_q

            # penalty actions: uniform, π(·|s) and π(·|s'), k of each per state, no gradient
            rand_a = noise["uniform"]
            cur_a, cur_lp = tanh_gaussian_sample(
                mean.detach().unsqueeze(1),
                log_std.detach().unsqueeze(1),
                noise["current"],
            )
            next_pa, next_plp = tanh_gaussian_sample(
                next_mean.unsqueeze(1),
                next_log_std.unsqueeze(1),
                noise["next"],
            )

        # every Q(s, ·) the critic loss needs, both heads, one batched pass: (n, B, 1 + 3k)
        m = 1 + 3 * k
        all_a = torch.cat([actions.unsqueeze(1), rand_a, cur_a, next_pa], dim=1).reshape(b * m, a_dim)
        q_all = self.critic(obs.unsqueeze(1).expand(b, m, -1).reshape(b * m, -1), all_a).view(-1, b, m)
        q_data = q_all[..., 0]
        q_rand, q_cur, q_next = q_all[..., 1:].split(k, dim=-1)
        td_loss = (q_data - td_target).square().mean(-1).sum()  # CORL: mse(Q1) + mse(Q2)
        gap = cql_penalty(
            q_data,
            q_rand,
            q_next,
            q_cur,
            next_plp,
            cur_lp,
            action_dim=a_dim,
            temperature=c.cql_temp,
            importance_sample=c.cql_importance_sample,
            clip_min=c.cql_clip_diff_min,
            clip_max=c.cql_clip_diff_max,
        )  # (n,)
        if c.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            penalty = (alpha_prime.detach() * c.cql_alpha * (gap - c.cql_target_action_gap)).sum()
            alpha_prime_loss = (
                -0.5 * (alpha_prime * c.cql_alpha * (gap.detach() - c.cql_target_action_gap)).sum()
            )
            out["alpha_prime"], out["alpha_prime_loss"] = alpha_prime.detach(), alpha_prime_loss
        else:
            penalty = c.cql_alpha * gap.sum()
            alpha_prime_loss = None
        critic_loss = td_loss + penalty

        total = alpha_loss + policy_loss + critic_loss
        if alpha_prime_loss is not None:
            total = total + alpha_prime_loss
        out.update(
            total=total,
            policy_loss=policy_loss,
            alpha_loss=alpha_loss,
            critic_loss=critic_loss,
            td_loss=td_loss,
            cql_gap=gap,
            alpha=alpha,
            log_pi=log_pi,
            q_data=q_data,
            td_target=td_target,
            random_actions=rand_a,
            current_actions=cur_a,
            current_log_pi=cur_lp,
            next_actions=next_pa,
            next_log_pi=next_plp,
        )
        return out

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        losses = self.compute_losses(batch)
        self.optim.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optim.step()
        self.step += 1
        if self.step % c.target_update_period == 0:
            soft_update(self.critic_target, self.critic, c.tau)
        return self.metrics(losses)

    @staticmethod
    def stack(agents, rng, device):
        return CQLStack(agents, rng, device)

    def metrics(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The logged statistics of one update's losses (per member in a stack: reductions over the last
        dimensions only)."""
        c = self.config
        metrics = {
            "critic_loss": losses["critic_loss"].detach(),
            "td_loss": losses["td_loss"].detach(),
            "cql_gap": losses["cql_gap"].detach().mean(),
            "policy_loss": losses["policy_loss"].detach(),
            "alpha_loss": losses["alpha_loss"].detach(),
            "alpha": losses["alpha"],
            "log_pi": losses["log_pi"].detach().mean(),
            "q_mean": losses["q_data"].detach().mean(),
        }
        if c.cql_lagrange:
            metrics["alpha_prime"] = losses["alpha_prime"]
        return metrics

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.policy_input(obs)
        return self.actor.act(obs)



class CQLStack(SeedStack):
    """K CQL agents updated as one (see `agents.stacked`): `CQL.update` over stacked parameters, member k's
    samples drawn from member k's generator."""

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a = self.template
        c = a.config
        noise = self.draw(lambda k: a.draw_noise(batch["actions"][k]))
        losses = self.call(a.compute_losses, batch, noise)
        optim = self.optimizers["optim"]
        optim.zero_grad(set_to_none=True)
        losses["total"].sum().backward()
        optim.step()
        for member in self.agents:
            member.step += 1
        if a.step % c.target_update_period == 0:
            self.soft_update("critic_target", "critic", c.tau)
        return vmap(a.metrics)(losses)
