"""Implicit Q-learning (IQL) for offline RL: expectile regression of V towards the twin target Q, a TD
regression of Q towards r + γV(s'), and advantage-weighted regression of a Gaussian policy.

Paper: Kostrikov, Nair, Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022,
https://arxiv.org/abs/2110.06169 (official JAX code: https://github.com/ikostrikov/implicit_q_learning).
Reference implementation we match: CORL `algorithms/offline/iql.py`, https://github.com/corl-team/CORL.

Defaults are the paper's / CORL's MuJoCo settings: expectile 0.7, temperature β = 3, advantage weights
exp(β·A) clipped at 100, 256-256 MLPs, Adam 3e-4 for Q, V and π, cosine decay of the policy's learning rate
over the whole run, target-Q EMA 0.005, γ = 0.99, batch 256, rewards scaled by 1000 / (max − min episode
return), observations standardised with the dataset's statistics (CORL). AntMaze uses expectile 0.9, β = 10
and rewards r − 1 (the paper's AntMaze settings; no AntMaze task is registered, so no config file holds them).

Deviations
- From CORL: the three losses are summed and take ONE backward pass and ONE optimizer step. This gives exactly
  CORL's update: in CORL the V step, the Q step and the policy step each use quantities computed before any of
  the three steps (V(s') and the advantage come from the V network before its step, the policy's advantage
  weights from the target Q), and no loss depends on parameters another loss updates.
- From CORL: the twin critics are one batched `EnsembleCritic`; one fused Adam with a parameter group per
  network replaces CORL's three Adams (same per-parameter update); the actor's cosine learning rate is set in
  closed form from the update counter (CORL's `CosineAnnealingLR` computes the same values recursively);
  metrics are returned as detached tensors instead of `.item()` per loss; the Gaussian log-density is written
  out instead of building a `torch.distributions.Normal` each step. None of these changes the mathematics.
- From CORL: the policy's log-std is clamped to [−5, 2] as in the official IQL code (CORL clamps to [−20, 2]);
  `log_std_min` sets it.
- From the paper: none beyond the official code's choices above (which are what the paper's numbers used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from agents.base import BATCH_KEYS, REWARD_TRANSFORMS, OfflineAgent
from agents.nets import (
    EnsembleCritic,
    GaussianPolicy,
    frozen_copy,
    fused_adam,
    gaussian_log_prob,
    mlp,
    soft_update,
)
from agents.stacked import LoopStack, SeedStack


@dataclass(frozen=True)
class IQLConfig:
    batch_size: int = 256  # transitions per update
    discount: float = 0.99  # γ
    tau: float = 0.005  # EMA rate of the target twin Q
    expectile: float = 0.7  # expectile τ of the V regression (0.9 on AntMaze)
    temperature: float = 3.0  # inverse temperature β of the advantage weights (10 on AntMaze)
    exp_adv_max: float = 100.0  # advantage weights exp(β·A) are clipped at this value
    actor_lr: float = 3e-4  # Adam learning rate of the policy (initial value of the cosine schedule)
    critic_lr: float = 3e-4  # Adam learning rate of the twin Q
    value_lr: float = 3e-4  # Adam learning rate of V
    cosine_actor_lr: bool = True  # cosine decay of the policy's learning rate over max_steps (paper, CORL)
    hidden: tuple[int, ...] = (256, 256)  # hidden sizes of the policy, of each Q and of V
    actor_dropout: float | None = None  # dropout in the policy MLP (0.1 on Kitchen/Adroit in the paper)
    log_std_min: float = (
        -5.0
    )  # lower clamp of the policy's state-independent log-std (official code; CORL −20)
    log_std_max: float = 2.0  # upper clamp of the log-std
    normalize_observations: bool = True  # standardise observations with dataset mean/std (CORL)
    reward_transform: str = "return_range"  # see agents.base.REWARD_TRANSFORMS ("antmaze" on AntMaze)
    max_steps: int = 1_000_000  # gradient updates in a run (also the length of the cosine schedule)
    eval_every: int = 5000  # updates between evaluations
    eval_episodes: int = 10  # episodes per evaluation

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(
                f"reward_transform must be one of {REWARD_TRANSFORMS}, got {self.reward_transform!r}"
            )
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")


# ---- losses (pure functions) ----


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |τ − 1(u < 0)| · u² with u = Q − V: the asymmetric L2 loss whose minimiser is the τ-expectile."""
    weight = expectile + (1.0 - 2.0 * expectile) * (diff < 0).to(diff.dtype)  # τ above, 1 − τ below zero
    return (weight * diff.square()).mean()


def advantage_weights(adv: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """exp(β·A) clipped from above at `max_weight`, with no gradient (A is detached)."""
    return torch.exp(temperature * adv.detach()).clamp(max=max_weight)


def awr_actor_loss(
    log_prob: torch.Tensor, adv: torch.Tensor, temperature: float, max_weight: float
) -> torch.Tensor:
    """Advantage-weighted regression: −mean(min(exp(β·A), max) · log π(a|s))."""
    return -(advantage_weights(adv, temperature, max_weight) * log_prob).mean()


def q_regression_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the n heads of each head's MSE to the (detached) target; q is (n, B), target (B,)."""
    return (q - target).square().mean()


# ---- agent ----


class IQL(OfflineAgent):
    """IQL agent (see module docstring). `update` takes one batch of already-prepared transitions."""

    STATE_PARTS = ("critic", "critic_target", "value", "actor", "optim", "obs_norm")  # the actor's schedule is
    STATE_INTS = ("step",)  # a function of `step`

    def __init__(self, config: IQLConfig, obs_dim: int, action_dim: int, **kwargs):
        super().__init__(config, obs_dim, action_dim, **kwargs)  # obs_mean, obs_std, device
        c = config
        self.critic = EnsembleCritic(obs_dim, action_dim, 2, c.hidden).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.value = mlp(obs_dim, 1, c.hidden).to(self.device)
        self.actor = GaussianPolicy(
            obs_dim,
            action_dim,
            c.hidden,
            tanh_mean=True,
            dropout=c.actor_dropout,
            log_std_min=c.log_std_min,
            log_std_max=c.log_std_max,
        ).to(self.device)
        # one fused Adam, one parameter group per network (CORL: three Adams with the same settings)
        self.optim = fused_adam(
            [
                {"params": list(self.critic.parameters()), "lr": c.critic_lr},
                {"params": list(self.value.parameters()), "lr": c.value_lr},
                {"params": list(self.actor.parameters()), "lr": c.actor_lr},
            ]
        )
        self.step = 0  # updates done (Python int: no host sync)

    # ---- one training step ----

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The three losses of one update (all from pre-update quantities) and the logged statistics."""
        c = self.config
        obs, actions, rewards, next_obs, terminals = (batch[k] for k in BATCH_KEYS)
        with torch.no_grad():
            target_q = self.critic_target(obs, actions).min(0).values
            next_v = self.value(next_obs).squeeze(-1)
            q_target = rewards + c.discount * (1.0 - terminals) * next_v
        v = self.value(obs).squeeze(-1)
        adv = target_q - v
        value_loss = expectile_loss(adv, c.expectile)
        q = self.critic(obs, actions)
        critic_loss = q_regression_loss(q, q_target)
        mean = self.actor.net(obs)
        log_std = self.actor.log_std.clamp(c.log_std_min, c.log_std_max)
        actor_loss = awr_actor_loss(
            gaussian_log_prob(mean, log_std, actions), adv, c.temperature, c.exp_adv_max
        )
        return {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
                "v_mean": v.detach().mean(), "adv_mean": adv.detach().mean()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.losses(batch)
        # the three losses share no parameters: one backward gives each network exactly its own gradient
        self.optim.zero_grad(set_to_none=True)
        (out["value_loss"] + out["critic_loss"] + out["actor_loss"]).backward()
        self.optim.param_groups[2]["lr"] = self.actor_lr(self.step)  # the actor's group
        self.optim.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        self.step += 1
        return {k: v.detach() for k, v in out.items()}

    @staticmethod
    def stack(agents, rng, device):
        """K IQL agents as one (`agents.stacked`); with actor dropout (drawn inside the forward pass) they
        run one after another instead."""
        return (LoopStack if agents[0].config.actor_dropout else IQLStack)(agents, rng, device)

    def actor_lr(self, step: int) -> float:
        """Policy learning rate of update `step` (0-based): cosine from actor_lr to 0 over max_steps (the
        closed form of CORL's CosineAnnealingLR(T_max=max_steps) stepped once per update)."""
        c = self.config
        if not c.cosine_actor_lr:
            return c.actor_lr
        return c.actor_lr * 0.5 * (1.0 + math.cos(math.pi * step / c.max_steps))

    # ---- acting ----

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.policy_input(obs)
        if not self.config.actor_dropout:
            return self.actor.act(obs)
        training = self.actor.training
        self.actor.eval()  # dropout off when acting
        try:
            return self.actor.act(obs)
        finally:
            self.actor.train(training)

    # ---- checkpoints ----



class IQLStack(SeedStack):
    """K IQL agents updated as one (see `agents.stacked`): `IQL.update` over stacked parameters."""

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a, optim = self.template, self.optimizers["optim"]
        out = self.call(a.losses, batch)  # every entry (K,)
        optim.zero_grad(set_to_none=True)
        (out["value_loss"] + out["critic_loss"] + out["actor_loss"]).sum().backward()
        optim.param_groups[2]["lr"] = a.actor_lr(a.step)  # the members are at the same update
        optim.step()
        self.soft_update("critic_target", "critic", a.config.tau)
        for member in self.agents:
            member.step += 1
        return {k: v.detach() for k, v in out.items()}
