"""Behaviour cloning as in CORL's `algorithms/offline/any_percent_bc.py` (https://github.com/corl-team/CORL).

A deterministic policy a = tanh(MLP(s)) (256-256, ReLU) regressed onto the dataset actions with the mean
squared error (`F.mse_loss`, mean over batch and action dimensions), Adam lr 3e-4, batch 256, observation
normalisation (dataset mean / std + 1e-3), 1M steps, evaluation every 5k steps over 10 episodes. BC ignores
rewards, so it runs on offline-RL and offline-IL tasks alike.

Deviations from CORL and why:
- `policy="gaussian"` (not in CORL) fits a Gaussian policy with a state-independent log-std
  (`nets.GaussianPolicy`, tanh mean, log-std clamped to [-5, 2]) by negative log-likelihood; evaluation uses
  the mean action.
- CORL's "BC-N%" variants keep the top N% of episodes by return (`keep_best_trajectories`, `frac`); that is
  a data selection done before training, not part of the agent, so it is not here (the CORL "BC" column uses
  all data, which is what this agent does).
- `update` returns detached 0-d tensors instead of calling `.item()` each step (a host synchronisation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import OfflineAgent
from .nets import DeterministicPolicy, GaussianPolicy, fused_adam, gaussian_log_prob
from .stacked import SeedStack

POLICIES = ("deterministic", "gaussian")


@dataclass(frozen=True)
class BCConfig:
    batch_size: int = 256  # transitions per update
    max_steps: int = 1_000_000  # gradient steps
    eval_every: int = 5000  # steps between evaluations
    eval_episodes: int = 10  # episodes per evaluation
    normalize_observations: bool = True  # CORL `normalize`
    reward_transform: str = "none"  # rewards are not used
    policy: str = "deterministic"  # "deterministic" (CORL: MSE) or "gaussian" (NLL)
    hidden: tuple[int, ...] = (256, 256)  # hidden sizes of the policy MLP
    lr: float = 3e-4  # Adam learning rate
    log_std_min: float = -5.0  # Gaussian policy only: clamp of the state-independent log-std
    log_std_max: float = 2.0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")


class BC(OfflineAgent):
    """Behaviour cloning: one Adam step on the MSE (or Gaussian NLL) to the dataset actions per `update`."""

    STATE_PARTS = ("policy", "optimizer", "obs_norm")
    NUMERICS = 2  # 2026-12-02: the one Gaussian log-density of agents.nets (float32 rounding moved)

    def __init__(self, config: BCConfig, obs_dim: int, action_dim: int, **kwargs):
        super().__init__(config, obs_dim, action_dim, **kwargs)  # obs_mean, obs_std, device
        c = config
        if c.policy == "gaussian":
            self.policy = GaussianPolicy(obs_dim, action_dim, c.hidden, tanh_mean=True,
                                         log_std_min=c.log_std_min, log_std_max=c.log_std_max)
        else:
            self.policy = DeterministicPolicy(obs_dim, action_dim, c.hidden)
        self.policy.to(self.device)
        self.optimizer = fused_adam(self.policy.parameters(), lr=c.lr)

    def loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.config.policy == "gaussian":
            mean = self.policy.net(obs)
            log_std = self.policy.log_std.clamp(self.config.log_std_min, self.config.log_std_max)
            return -gaussian_log_prob(mean, log_std, actions).mean()
        return F.mse_loss(self.policy(obs), actions)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.loss(batch["observations"], batch["actions"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"policy_loss": loss.detach()}

    @staticmethod
    def stack(agents, rng, device):
        return BCStack(agents, rng, device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.policy_input(obs)
        return self.policy.act(obs).clamp(-1.0, 1.0)




class BCStack(SeedStack):
    """K BC agents updated as one (see `agents.stacked`): `BC.update` over stacked parameters."""

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.call(self.template.loss, batch["observations"], batch["actions"])  # (K,)
        optimizer = self.optimizers["optimizer"]
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        return {"policy_loss": loss.detach()}
