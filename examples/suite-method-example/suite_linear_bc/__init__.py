"""linear-bc: a tiny offline-RL method as a suite plug-in (a linear policy fitted to the dataset's actions by
mean-squared error, i.e. linear behaviour cloning). Replace the agent with yours; keep the interface."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.methods import MethodSpec


@dataclass(frozen=True)
class LinearBcConfig:
    lr: float = 1e-2  # Adam learning rate
    batch_size: int = 256  # transitions per update (the runner samples the batch)
    normalize_observations: bool = True  # the runner standardises observations with the dataset's statistics
    reward_transform: str = "none"  # none | d4rl_locomotion | antmaze (see agents.base.prepare_data)


class LinearBc:
    """The agent: built by the runner, updated once per batch, asked for actions in [-1, 1] at evaluation."""

    def __init__(self, config: LinearBcConfig, obs_dim: int, action_dim: int, *, obs_mean=None, obs_std=None,
                 device="cpu"):
        self.config = config
        self.device = torch.device(device)
        self.mean = torch.as_tensor(obs_mean if obs_mean is not None else 0.0, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(obs_std if obs_std is not None else 1.0, dtype=torch.float32, device=device)
        self.policy = torch.nn.Linear(obs_dim, action_dim).to(self.device)
        self.optim = torch.optim.Adam(self.policy.parameters(), lr=config.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # the runner's batch already holds normalised observations when normalize_observations is set
        pred = torch.tanh(self.policy(batch["observations"]))
        loss = (pred - batch["actions"]).pow(2).mean()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.policy((obs - self.mean) / self.std))

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optim.load_state_dict(state["optim"])


method = MethodSpec(
    name="linear-bc",
    entry_point="suite_linear_bc:LinearBc",
    config="suite_linear_bc:LinearBcConfig",
    task_kinds=("offline-rl", "offline-il"),
    description="linear-bc: linear behaviour cloning (plug-in example)",
)
