"""Small agents used only to exercise runner paths that a real agent should never take (divergence)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NaNAgentConfig:
    nan_after: int = 50  # updates before the loss turns non-finite
    batch_size: int = 32
    normalize_observations: bool = False
    reward_transform: str = "none"


class NaNAgent:
    """A linear policy fitted by MSE whose reported loss becomes NaN after `nan_after` updates."""

    def __init__(self, config, obs_dim, action_dim, *, obs_mean=None, obs_std=None, device="cpu"):
        self.config = config
        self.net = torch.nn.Linear(obs_dim, action_dim)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-3)
        self.n = 0

    def update(self, batch):
        loss = ((self.net(batch["observations"]) - batch["actions"]) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.n += 1
        bad = loss * float("nan") if self.n > self.config.nan_after else loss
        return {"loss": bad.detach()}

    def act(self, obs):
        return self.net(obs).clamp(-1, 1)

    def state_dict(self):
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "n": self.n}

    def load_state_dict(self, sd):
        self.net.load_state_dict(sd["net"])
        self.opt.load_state_dict(sd["opt"])
        self.n = sd["n"]
