"""Soft actor-critic, online (Haarnoja et al. 2018, https://arxiv.org/abs/1801.01290, and the automatic
temperature of https://arxiv.org/abs/1812.05905), used to train the behaviour policies that collect the
suite's datasets. Also the behaviour-policy file format: `save_behaviour_policy` / `load_behaviour_policy`.

Deviations from the paper, all as in CORL / cleanRL:
- no separate state-value network (the 2018 v2 algorithm: twin Q with clipped double-Q and target Q EMA);
- the twin critics are one batched `EnsembleCritic`;
- the temperature loss is written in log-alpha, -(log_alpha * (log_pi + target_entropy)).mean(), which has the
  same fixed point as the paper's alpha form and is what the reference implementations use.

Like every agent it does no environment, seeding or file I/O (the file helpers at the bottom are plain
functions the training loop calls); it draws its noise from torch's global generator, which the caller seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from agents.base import Stateful
from agents.nets import EnsembleCritic, TanhGaussianPolicy, frozen_copy, soft_update


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one op per parameter group; torch's CPU default is a Python loop over the
    parameters, ~10 ops each). Same update rule; the fused kernel rounds differently in the last bit."""
    return torch.optim.Adam(params, lr=lr, fused=True)


@dataclass(frozen=True)
class SACConfig:
    hidden: tuple[int, ...] = (256, 256)  # hidden sizes of the actor and of each critic (paper: 256-256)
    n_critics: int = 2  # clipped double-Q: the target uses the minimum over this many critics
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # target critic EMA rate per update
    actor_lr: float = 3e-4  # Adam learning rate of the policy
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    alpha_lr: float = 3e-4  # Adam learning rate of log(alpha)
    batch_size: int = 256  # transitions per update (read by the training loop, which samples the batch)
    init_alpha: float = 1.0  # initial entropy temperature
    target_entropy: float | None = None  # entropy target of the automatic temperature; None means -action_dim
    autotune_alpha: bool = True  # learn alpha (True) or keep init_alpha fixed


class SAC(Stateful):
    """SAC agent: `update(batch)` does one critic, one actor and one temperature step and one target EMA."""

    # recorded in every training run: the numerics changed (same algorithm) when the update was made faster
    IMPLEMENTATION = "sac/2 (fused Adam, explicit tanh-Gaussian sample, in-place ReLU; 2026-12-02)"
    STATE_PARTS = ("actor", "critic", "critic_target", "actor_optim", "critic_optim", "alpha_optim")
    STATE_TENSORS = ("log_alpha",)

    def __init__(self, config: SACConfig, obs_dim: int, action_dim: int, device: str | torch.device = "cpu"):
        self.config = config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.device = torch.device(device)
        self.actor = TanhGaussianPolicy(obs_dim, action_dim, config.hidden).to(self.device)
        self.critic = EnsembleCritic(obs_dim, action_dim, config.n_critics, config.hidden).to(self.device)
        self.critic_target = frozen_copy(self.critic)
        self.log_alpha = torch.tensor(math.log(config.init_alpha), device=self.device, requires_grad=True)
        self.target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
        self.actor_optim = adam(self.actor.parameters(), config.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), config.critic_lr)
        self.alpha_optim = adam([self.log_alpha], config.alpha_lr)
        self._critic_params = list(self.critic.parameters())

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    # ---- losses (pure functions of the batch and the current networks) ----

    def critic_loss(
        self, batch: dict[str, torch.Tensor], alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch["next_observations"])
            next_q = self.critic_target(batch["next_observations"], next_action).min(0).values
            soft_value = next_q - alpha * next_log_prob
            target = batch["rewards"] + self.config.gamma * (1.0 - batch["terminals"]) * soft_value
        q = self.critic(batch["observations"], batch["actions"])  # (n, B)
        # sum over critics of each critic's mean squared TD error (CORL / cleanRL)
        loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        return loss, q.detach()

    def actor_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_prob = self.actor.sample(obs)
        q = self.critic(obs, action).min(0).values
        return (alpha * log_prob - q).mean(), log_prob.detach()

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        return -(self.log_alpha * (log_prob + self.target_entropy)).mean()

    # ---- one training step ----

    def _critic_step(self, batch: dict[str, torch.Tensor], alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        critic_loss, q = self.critic_loss(batch, alpha)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()
        return critic_loss, q

    def update_critic(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A critic step and the target EMA only (actor and temperature frozen): policy evaluation of the
        current actor, used to fit fresh critics to a given actor before `update` starts improving it (a run
        that continues from a shipped policy, `train_sac(init_actor=...)`)."""
        critic_loss, q = self._critic_step(batch, self.alpha)
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {"critic_loss": critic_loss.detach(), "q_mean": q.mean()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        alpha = self.alpha
        critic_loss, q = self._critic_step(batch, alpha)

        # the actor's gradient flows through the critic's input only: freeze its weights for this backward
        for p in self._critic_params:
            p.requires_grad_(False)
        actor_loss, log_prob = self.actor_loss(batch["observations"], alpha)
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()
        for p in self._critic_params:
            p.requires_grad_(True)

        metrics = {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.mean(),
            "entropy": -log_prob.mean(),
            "alpha": alpha,
        }
        if self.config.autotune_alpha:
            alpha_loss = self.alpha_loss(log_prob)
            self.alpha_optim.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optim.step()
            metrics["alpha_loss"] = alpha_loss.detach()

        soft_update(self.critic_target, self.critic, self.config.tau)
        return metrics

    # ---- acting ----

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions in [-1, 1] for a batch of observations: tanh(mean) if deterministic, else a sample."""
        if deterministic:
            return self.actor.act(obs)
        return self.actor.sample(obs)[0]

    @torch.no_grad()
    def sample_action(self, obs: torch.Tensor) -> torch.Tensor:
        """A stochastic action (exploration during training, dataset collection)."""
        return self.actor.sample(obs)[0]

    # (state_dict / load_state_dict: agents.base.Stateful over STATE_PARTS / STATE_TENSORS)


# ---- behaviour-policy files ----

BEHAVIOUR_FORMAT = "tanh_gaussian_policy/v1"


def save_behaviour_policy(
    policy: TanhGaussianPolicy, path: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """Write a policy's weights as safetensors (atomically). The header metadata (strings only) records
    what `load_behaviour_policy` needs to rebuild it: obs_dim, action_dim, hidden sizes, log-std bounds; the
    caller's `metadata` is added, JSON-encoding any value that is not a string."""
    from safetensors.torch import save_file

    first = policy.trunk[0]
    hidden = [m.out_features for m in policy.trunk if isinstance(m, torch.nn.Linear)][:-1]
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=BEHAVIOUR_FORMAT,
        obs_dim=str(first.in_features),
        action_dim=str(policy.action_dim),
        hidden=",".join(str(h) for h in hidden),
        log_std_min=repr(float(policy.log_std_min)),
        log_std_max=repr(float(policy.log_std_max)),
    )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_behaviour_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a behaviour-policy file (all values are strings)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_behaviour_policy(path: str | Path, device: str | torch.device = "cpu") -> TanhGaussianPolicy:
    """Rebuild a `TanhGaussianPolicy` from a file written by `save_behaviour_policy` (in eval mode)."""
    from safetensors.torch import load_file

    meta = read_behaviour_metadata(path)
    if meta.get("format") != BEHAVIOUR_FORMAT:
        raise ValueError(
            f"{path}: not a behaviour-policy file (format {meta.get('format')!r}, want {BEHAVIOUR_FORMAT!r})"
        )
    hidden = tuple(int(h) for h in meta["hidden"].split(",") if h)
    policy = TanhGaussianPolicy(
        int(meta["obs_dim"]),
        int(meta["action_dim"]),
        hidden,
        log_std_min=float(meta["log_std_min"]),
        log_std_max=float(meta["log_std_max"]),
    )
    policy.load_state_dict(load_file(str(path), device=str(device)))
    return policy.to(device).eval()


def config_dict(config: SACConfig) -> dict[str, Any]:
    """The resolved config as a JSON-serialisable dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(asdict(config).items())}
