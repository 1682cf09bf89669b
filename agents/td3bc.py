"""TD3+BC for offline RL: TD3 (twin critics, target policy smoothing, delayed actor and target updates) whose
actor maximises λ·Q(s, π(s)) − (π(s) − a)² with λ = α / mean|Q| (no gradient through λ).

Paper: Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021,
https://arxiv.org/abs/2106.06860 (official code: https://github.com/sfujim/TD3_BC). Reference implementation
we match: CORL `algorithms/offline/td3_bc.py`, https://github.com/corl-team/CORL.

Defaults are the paper's MuJoCo settings (same in CORL): α = 2.5, policy noise 0.2 clipped at 0.5, actor and
target updates every 2nd critic update, τ = 0.005, γ = 0.99, Adam 3e-4 for actor and critics, 256-256 MLPs,
batch 256, observations standardised with the dataset's mean and std (eps 1e-3), rewards untouched.

Deviations
- From CORL / the paper: the twin critics are one batched `EnsembleCritic` with one Adam (fused kernel); per
  parameter this is the same as CORL's two critics with one Adam each. Metrics are detached tensors (no
  `.item()`). The actor's Q1(s, π(s)) is evaluated with the critic's weights detached, so its backward
  computes no critic-weight gradients that CORL computes and then discards (critic grads are zeroed before
  each critic step). None of these changes the updates.
- The delayed actor update counts updates with a Python int (`step`, saved in the state dict): the actor, the
  target actor and the target critics move on updates 2, 4, 6, … (1-based), as in CORL and the paper.
  `actor_loss` in the metrics is the most recent actor loss (0 before the first actor update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents.base import BATCH_KEYS, REWARD_TRANSFORMS, OfflineAgent
from agents.nets import (
    DeterministicPolicy,
    EnsembleCritic,
    EnsembleLinear,
    frozen_copy,
    fused_adam,
    soft_update,
)
from agents.stacked import SeedStack


@dataclass(frozen=True)
class TD3BCConfig:
    batch_size: int = 256  # transitions per update
    discount: float = 0.99  # γ
    tau: float = 0.005  # EMA rate of the target actor and target critics (applied on actor updates)
    alpha: float = 2.5  # α in λ = α / mean|Q|: weight of the Q term against behaviour cloning
    policy_noise: float = (
        0.2  # std of the Gaussian noise added to the target action (target policy smoothing)
    )
    noise_clip: float = 0.5  # the target-action noise is clipped to [−noise_clip, noise_clip]
    policy_freq: int = 2  # the actor and the targets are updated every policy_freq critic updates
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    hidden: tuple[int, ...] = (256, 256)  # hidden sizes of the actor and of each critic
    normalize_observations: bool = True  # standardise observations with dataset mean/std (paper, CORL)
    reward_transform: str = (
        "none"  # see agents.base.REWARD_TRANSFORMS (the paper leaves MuJoCo rewards as is)
    )
    max_steps: int = 1_000_000  # gradient updates in a run
    eval_every: int = 5000  # updates between evaluations
    eval_episodes: int = 10  # episodes per evaluation

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(
                f"reward_transform must be one of {REWARD_TRANSFORMS}, got {self.reward_transform!r}"
            )
        if self.policy_freq < 1:
            raise ValueError(f"policy_freq must be >= 1, got {self.policy_freq}")


# ---- losses (pure functions) ----


def smoothed_target_actions(
    target_actions: torch.Tensor, noise: torch.Tensor, noise_clip: float
) -> torch.Tensor:
    """Target policy smoothing: clip(π'(s') + clip(noise, ±noise_clip), −1, 1); `noise` is already scaled by
    the policy-noise std."""
    return (target_actions + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td_target(rewards, terminals, next_q: torch.Tensor, discount: float) -> torch.Tensor:
    """r + γ (1 − d) min_i Q'_i(s', ã); next_q is (n, B)."""
    return rewards + discount * (1.0 - terminals) * next_q.min(0).values


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the heads of each head's MSE to the target (CORL: mse(Q1) + mse(Q2)); q is (n, B)."""
    return (q - target).square().mean(1).sum()


def actor_loss(
    q1: torch.Tensor, policy_actions: torch.Tensor, actions: torch.Tensor, alpha: float
) -> torch.Tensor:
    """−λ·mean Q1(s, π(s)) + mean (π(s) − a)² with λ = α / mean|Q1| treated as a constant."""
    lmbda = alpha / q1.abs().mean().detach()
    return -lmbda * q1.mean() + (policy_actions - actions).square().mean()


def critic_head(
    critic: EnsembleCritic, obs: torch.Tensor, action: torch.Tensor, index: int = 0
) -> torch.Tensor:
    """Q_index(s, a) -> (B,) with the critic's weights detached: gradients reach only the inputs."""
    x = torch.cat([obs, action], dim=-1)
    for layer in critic.net.net:
        if isinstance(layer, EnsembleLinear):
            x = torch.addmm(layer.bias[index].detach(), x, layer.weight[index].detach())
        else:
            x = layer(x)
    return x.squeeze(-1)


# ---- agent ----


class TD3BC(OfflineAgent):
    """TD3+BC agent (see module docstring). `update` takes one batch of already-prepared transitions."""

    STATE_PARTS = ("actor", "actor_target", "critic", "critic_target", "actor_optim", "critic_optim", "obs_norm")
    STATE_INTS = ("step",)

    def __init__(self, config: TD3BCConfig, obs_dim: int, action_dim: int, **kwargs):
        super().__init__(config, obs_dim, action_dim, **kwargs)  # obs_mean, obs_std, device
        c = config
        self.actor = DeterministicPolicy(obs_dim, action_dim, c.hidden).to(self.device)
        self.actor_target = frozen_copy(self.actor)
        self.critic = EnsembleCritic(obs_dim, action_dim, 2, c.hidden).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.actor_optim = fused_adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_optim = fused_adam(self.critic.parameters(), lr=c.critic_lr)
        self.step = 0  # updates done (Python int: deciding on the delayed actor update needs no host sync)
        self._last_actor_loss = torch.zeros((), device=self.device)

    def critic_losses(self, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """The twin-critic loss against the smoothed TD target; `noise` is the target-action noise (B, A)."""
        c = self.config
        obs, actions, rewards, next_obs, terminals = (batch[k] for k in BATCH_KEYS)
        with torch.no_grad():
            next_actions = smoothed_target_actions(self.actor_target(next_obs), noise, c.noise_clip)
            target = td_target(rewards, terminals, self.critic_target(next_obs, next_actions), c.discount)
        q = self.critic(obs, actions)
        return {"critic_loss": critic_loss(q, target), "q_mean": q.detach().mean()}

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The actor loss through the current (already updated) critic's first head."""
        pi = self.actor(obs)
        return actor_loss(critic_head(self.critic, obs, pi, 0), pi, actions, self.config.alpha)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        self.step += 1
        with torch.no_grad():
            noise = torch.randn_like(batch["actions"]) * c.policy_noise
        out = self.critic_losses(batch, noise)
        self.critic_optim.zero_grad(set_to_none=True)
        out["critic_loss"].backward()
        self.critic_optim.step()

        if self.step % c.policy_freq == 0:
            loss_pi = self.actor_losses(batch["observations"], batch["actions"])
            self.actor_optim.zero_grad(set_to_none=True)
            loss_pi.backward()
            self.actor_optim.step()
            soft_update(self.critic_target, self.critic, c.tau)
            soft_update(self.actor_target, self.actor, c.tau)
            self._last_actor_loss = loss_pi.detach()
        return {
            "critic_loss": out["critic_loss"].detach(),
            "actor_loss": self._last_actor_loss,
            "q_mean": out["q_mean"],
        }

    @staticmethod
    def stack(agents, rng, device):
        return TD3BCStack(agents, rng, device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.policy_input(obs)
        return self.actor.act(obs).clamp(-1.0, 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_actor_loss": self._last_actor_loss.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._last_actor_loss = state["last_actor_loss"].to(self.device).clone()


class TD3BCStack(SeedStack):
    """K TD3+BC agents updated as one (see `agents.stacked`): `TD3BC.update` over stacked parameters, the
    target-action noise of member k drawn from member k's generator."""

    def __init__(self, agents, rng, device):
        super().__init__(agents, rng, device)
        self.last_actor_loss = torch.stack([a._last_actor_loss for a in self.agents])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a = self.template
        c = a.config
        for member in self.agents:
            member.step += 1
        with torch.no_grad():
            noise = self.draw(lambda k: torch.randn_like(batch["actions"][k])) * c.policy_noise
        out = self.call(a.critic_losses, batch, noise)
        critic_optim, actor_optim = self.optimizers["critic_optim"], self.optimizers["actor_optim"]
        critic_optim.zero_grad(set_to_none=True)
        out["critic_loss"].sum().backward()
        critic_optim.step()
        if a.step % c.policy_freq == 0:
            loss_pi = self.call(a.actor_losses, batch["observations"], batch["actions"])
            actor_optim.zero_grad(set_to_none=True)
            loss_pi.sum().backward()
            actor_optim.step()
            self.soft_update("critic_target", "critic", c.tau)
            self.soft_update("actor_target", "actor", c.tau)
            self.last_actor_loss = loss_pi.detach()
        return {"critic_loss": out["critic_loss"].detach(), "actor_loss": self.last_actor_loss,
                "q_mean": out["q_mean"]}

    def sync_extra(self) -> None:
        for k, member in enumerate(self.agents):
            member._last_actor_loss = self.last_actor_loss[k].clone()
