"""`suite new-method NAME`: the skeleton of a method plug-in package, ready to `pip install -e` and run.

The package registers its method through the entry-point group ``odice_suite.methods`` with the same
`suite.methods.MethodSpec` the built-in methods use; nothing in the suite is edited. The agent follows the
interface of ``agents.base`` (``__init__(config, obs_dim, action_dim, *, obs_mean, obs_std, device)``,
``update(batch) -> dict of 0-d tensors``, ``act(obs)`` in [-1, 1], ``state_dict`` / ``load_state_dict`` of
tensors and plain values, so checkpoints stay pickle-free). ``examples/suite-method-example`` was written by
this command (``suite new-method linear-bc --out examples``, folder renamed).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from .errors import SuiteError

PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{name}: an odice-suite method plug-in"
requires-python = ">=3.10"
dependencies = ["odice-suite", "torch"]

# the suite finds the method here: `python -m suite ls methods`, `python -m suite run {name} TASK`
[project.entry-points."odice_suite.methods"]
{name} = "{module}:method"

[tool.setuptools]
packages = ["{module}"]
'''

INIT = '''"""{name}: a tiny offline-RL method as a suite plug-in (a linear policy fitted to the dataset's actions by
mean-squared error, i.e. linear behaviour cloning). Replace the agent with yours; keep the interface."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.methods import MethodSpec


@dataclass(frozen=True)
class {cls}Config:
    lr: float = 1e-2  # Adam learning rate
    batch_size: int = 256  # transitions per update (the runner samples the batch)
    normalize_observations: bool = True  # the runner standardises observations with the dataset's statistics
    reward_transform: str = "none"  # none | d4rl_locomotion | antmaze (see agents.base.prepare_data)


class {cls}:
    """The agent: built by the runner, updated once per batch, asked for actions in [-1, 1] at evaluation."""

    def __init__(self, config: {cls}Config, obs_dim: int, action_dim: int, *, obs_mean=None, obs_std=None,
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
        return {{"loss": loss.detach()}}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.policy((obs - self.mean) / self.std))

    def state_dict(self) -> dict:
        return {{"policy": self.policy.state_dict(), "optim": self.optim.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optim.load_state_dict(state["optim"])


method = MethodSpec(
    name="{name}",
    entry_point="{module}:{cls}",
    config="{module}:{cls}Config",
    task_kinds=("offline-rl", "offline-il"),
    description="{name}: linear behaviour cloning (plug-in example)",
)
'''

README = '''# {name}: an odice-suite method plug-in

    pip install -e .                                   # registers "{name}" with the suite (entry point)
    python -m suite ls methods                         # {name} is listed
    python -m suite run {name} hopper-medium --steps 20000 --build-missing
    python -m suite validate runs/{name}               # digest, scores, provenance, dataset checksum
    python -m suite audit runs/{name}                  # re-runs the first evaluation interval and compares
    python -m suite submit runs/{name}/hopper-medium-v0/<run>/record.json    # validate + audit + copy

Edit `{module}/__init__.py`: the agent class, its config dataclass (every field is a `--set key=value`
option and lands in the record) and the `MethodSpec`.
'''


def _names(name: str) -> tuple[str, str, str]:
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise SuiteError(f"method name {name!r}: use lower-case letters, digits, '-' or '_', starting with a letter")
    module = "suite_" + name.replace("-", "_")
    cls = "".join(p.capitalize() for p in re.split(r"[-_]", name))
    if keyword.iskeyword(cls) or not cls.isidentifier():
        raise SuiteError(f"method name {name!r} does not make a Python class name")
    return f"suite-{name}", module, cls


def new_method(name: str, out: str | Path = ".", force: bool = False) -> Path:
    """Write ``<out>/suite-<name>/`` (pyproject.toml with the entry point, the package, a README)."""
    from . import methods

    dist, module, cls = _names(name)
    if name in methods.registry:
        raise SuiteError(f"a method {name!r} is already registered; choose another name")
    root = Path(out) / dist
    if root.exists() and not force:
        raise SuiteError(f"{root} exists; choose another --out or pass --force")
    (root / module).mkdir(parents=True, exist_ok=True)
    fmt = {"name": name, "dist": dist, "module": module, "cls": cls}
    (root / "pyproject.toml").write_text(PYPROJECT.format(**fmt))
    (root / module / "__init__.py").write_text(INIT.format(**fmt))
    (root / "README.md").write_text(README.format(**fmt))
    return root
