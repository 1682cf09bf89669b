"""Speed of `agents.odice.ODICE.update` against a faithful re-creation of the official O-DICE update step.

The reference (`OfficialODICE`) re-creates `odice.py` of https://github.com/maoliyuan/ODICE-Pytorch as it
runs: two separate V MLPs (`TwinV`: `both` stacks the heads, `forward` takes their min), backward passes
into `.grad`, per-step flattening of the parameter gradients with `torch.cat`, `.item()` on the projection
coefficient, `MultivariateNormal` log-densities, a Python loop for the EMA and plain (for-loop) Adam. It is
also the reference the tests compare one update of the fast agent against (`load_official_into`).

`run(quick)` times both on random hopper-shaped batches (obs 11, act 3, batch 256, the paper's networks) in
the same process with `torch.set_num_threads(2)` (and again with 1 thread), alternating timing blocks so
that load from other processes hits both alike, and reports updates/s, process CPU time per update and the
ratios (medians over blocks). `python -m suite.bench.agents_odice [--quick]` prints one JSON line per case,
once per allocator setting (see `run`)."""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from agents.odice import ODICE, ODICEConfig

from ..allocator import keep_freed_memory

EXP_ADV_MAX = 100.0


# --------------------------------------------------------------------------- official re-creation
def _official_mlp(dims: list[int], layer_norm: bool = False, output_activation=None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if layer_norm:
            layers.append(nn.LayerNorm(dims[i + 1]))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class OfficialTwinV(nn.Module):
    def __init__(self, obs_dim: int, layer_norm: bool = True, hidden: int = 256, n_hidden: int = 2):
        super().__init__()
        dims = [obs_dim, *([hidden] * n_hidden), 1]
        self.v1 = _official_mlp(dims, layer_norm)
        self.v2 = _official_mlp(dims, layer_norm)

    def both(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.v1(obs).squeeze(-1), self.v2(obs).squeeze(-1)], dim=0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.min(self.both(obs), dim=0)[0]


class OfficialGaussianPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 1024, n_hidden: int = 2,
                 use_tanh: bool = False):
        super().__init__()
        self.use_tanh = use_tanh
        self.net = _official_mlp([obs_dim, *([hidden] * n_hidden), act_dim])
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> MultivariateNormal:
        mean = self.net(obs)
        if self.use_tanh:
            mean = torch.tanh(mean)
        std = torch.exp(self.log_std.clamp(-5.0, 2.0))
        return MultivariateNormal(mean, scale_tril=torch.diag(std))


def _official_f_star(residual: torch.Tensor, name: str) -> torch.Tensor:
    if name == "reverse_kl":
        return torch.exp(residual - 1)
    omega = torch.max(residual / 2 + 1, torch.zeros_like(residual))
    return residual * omega - (omega - 1) ** 2


def _official_f_prime_inverse(residual: torch.Tensor, name: str) -> torch.Tensor:
    if name == "reverse_kl":
        return torch.exp(residual - 1)
    return torch.max(residual, torch.zeros_like(residual))


class OfficialODICE:
    """The official update steps (orthogonal / true / semi), written as the official code executes them."""

    def __init__(self, config: ODICEConfig, obs_dim: int, act_dim: int):
        c = self.config = config
        assert c.twin_v and len(set(c.value_hidden)) == 1 and len(set(c.policy_hidden)) == 1
        self.vf = OfficialTwinV(obs_dim, c.value_layer_norm, c.value_hidden[0], len(c.value_hidden))
        self.vf_target = copy.deepcopy(self.vf).requires_grad_(False)
        self.policy = OfficialGaussianPolicy(obs_dim, act_dim, c.policy_hidden[0], len(c.policy_hidden),
                                             c.policy_tanh_mean)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=c.value_lr, foreach=False)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.policy_lr,
                                                 weight_decay=c.policy_weight_decay, foreach=False)
        self.last_coef = 0.0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fn = {"orthogonal": self.orthogonal_update, "true": self.true_update, "semi": self.semi_update}
        return fn[self.config.gradient](batch["observations"], batch["actions"], batch["next_observations"],
                                        batch["rewards"] * self.config.reward_scale, batch["terminals"])

    def _ema(self) -> None:
        beta = self.config.target_update_rate
        for tp, sp in zip(self.vf_target.parameters(), self.vf.parameters(), strict=True):
            tp.data.mul_(1.0 - beta).add_(sp.data, alpha=beta)

    def _policy_update(self, observations, actions, pi_residual) -> float:
        weight = _official_f_prime_inverse(pi_residual, self.config.f_divergence)
        weight = torch.clamp_max(weight, EXP_ADV_MAX).detach()
        bc_losses = -self.policy(observations).log_prob(actions)
        policy_loss = torch.mean(weight * bc_losses)
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        return policy_loss.item()

    def orthogonal_update(self, observations, actions, next_observations, rewards, terminals):
        c = self.config
        lam, fname = c.lam, c.f_divergence
        with torch.no_grad():
            target_v = self.vf_target(observations)
            target_v_next = self.vf_target(next_observations)
        v = self.vf.both(observations)
        v_next = self.vf.both(next_observations)
        forward_residual = rewards + (1.0 - terminals) * c.discount * target_v_next - v
        backward_residual = rewards + (1.0 - terminals) * c.discount * v_next - target_v
        forward_loss = torch.mean(lam * _official_f_star(forward_residual, fname))
        backward_loss = torch.mean(lam * c.eta * _official_f_star(backward_residual, fname))
        pi_residual = forward_residual.clone().detach()

        self.v_optimizer.zero_grad(set_to_none=True)
        forward_list, backward_list = [], []
        forward_loss.backward(retain_graph=True)
        for p in self.vf.parameters():
            forward_list.append(p.grad.clone().detach().reshape(-1))
        backward_loss.backward()
        for i, p in enumerate(self.vf.parameters()):
            backward_list.append(p.grad.clone().detach().reshape(-1) - forward_list[i])
        g_f, g_b = torch.cat(forward_list), torch.cat(backward_list)
        coef = (torch.dot(g_f, g_b) / max(torch.dot(g_f, g_f), 1e-10)).item()
        g_f = (1 - coef) * g_f + g_b
        idx = 0
        for i, g in enumerate(forward_list):
            forward_list[i] = g_f[idx: idx + g.shape[0]]
            idx += g.shape[0]
        self.v_optimizer.zero_grad(set_to_none=True)
        torch.mean((1 - lam) * v).backward()
        for i, p in enumerate(self.vf.parameters()):
            p.grad += forward_list[i].reshape(p.grad.shape)
        self.v_optimizer.step()
        self._ema()
        self.last_coef = coef
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}

    def true_update(self, observations, actions, next_observations, rewards, terminals):
        c = self.config
        v = self.vf.both(observations)
        v_next = self.vf.both(next_observations)
        residual = rewards + (1.0 - terminals) * c.discount * v_next - v
        pi_residual = residual.clone().detach()
        v_loss = torch.mean((1 - c.lam) * v + c.lam * _official_f_star(residual, c.f_divergence))
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()
        self._ema()
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}

    def semi_update(self, observations, actions, next_observations, rewards, terminals):
        c = self.config
        with torch.no_grad():
            target_v_next = self.vf_target(next_observations)
        v = self.vf.both(observations)
        residual = rewards + (1.0 - terminals) * c.discount * target_v_next - v
        pi_residual = residual.clone().detach()
        v_loss = torch.mean((1 - c.lam) * v + c.lam * _official_f_star(residual, c.f_divergence))
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()
        self._ema()
        return {"policy_loss": self._policy_update(observations, actions, pi_residual)}


# ------------------------------------------------------------- weights: official -> batched agent
def _twin_to_ensemble_state(twin: OfficialTwinV) -> dict[str, torch.Tensor]:
    """State dict of `agents.odice.make_value` (EnsembleValue, per-head LayerNorm) with `twin`'s weights."""
    out: dict[str, torch.Tensor] = {}
    for i, (m1, m2) in enumerate(zip(twin.v1, twin.v2, strict=True)):
        if isinstance(m1, nn.Linear):
            out[f"net.net.{i}.weight"] = torch.stack([m1.weight.T, m2.weight.T]).detach().clone()
            out[f"net.net.{i}.bias"] = torch.stack([m1.bias, m2.bias]).unsqueeze(1).detach().clone()
        elif isinstance(m1, nn.LayerNorm):
            out[f"net.net.{i}.weight"] = torch.stack([m1.weight, m2.weight]).detach().clone()
            out[f"net.net.{i}.bias"] = torch.stack([m1.bias, m2.bias]).detach().clone()
    return out


@torch.no_grad()
def load_official_into(agent: ODICE, official: OfficialODICE) -> None:
    """Give `agent` the official re-creation's V, target V and policy weights (not optimizer state)."""
    agent.value.load_state_dict(_twin_to_ensemble_state(official.vf))
    agent.value_target.load_state_dict(_twin_to_ensemble_state(official.vf_target))
    agent.policy.load_state_dict(official.policy.state_dict())


# ----------------------------------------------------------------------------------------- timing
def _batch(obs_dim: int, act_dim: int, batch_size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "observations": torch.randn(batch_size, obs_dim, generator=gen),
        "actions": torch.rand(batch_size, act_dim, generator=gen) * 2 - 1,
        "rewards": torch.randn(batch_size, generator=gen),
        "next_observations": torch.randn(batch_size, obs_dim, generator=gen),
        "terminals": (torch.rand(batch_size, generator=gen) < 0.01).float(),
    }


def _time_block(update, batches) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per update over `batches`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        update(b)
    n = len(batches)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def _case(gradient: str, threads: int, batches, blocks: int) -> dict:
    torch.set_num_threads(threads)
    obs_dim, act_dim = batches[0]["observations"].shape[1], batches[0]["actions"].shape[1]
    config = ODICEConfig(gradient=gradient)
    torch.manual_seed(0)
    official = OfficialODICE(config, obs_dim, act_dim)
    ours = ODICE(config, obs_dim, act_dim)
    load_official_into(ours, official)
    for b in batches[:3]:  # warm-up (allocator, Adam state)
        official.update(b)
        ours.update(b)
    t_official, t_ours = [], []
    for _ in range(blocks):  # alternate, so background load hits both alike
        t_official.append(_time_block(official.update, batches))
        t_ours.append(_time_block(ours.update, batches))
    wall_off = statistics.median(t[0] for t in t_official) * 1e3
    wall_ours = statistics.median(t[0] for t in t_ours) * 1e3
    cpu_off = statistics.median(t[1] for t in t_official) * 1e3
    cpu_ours = statistics.median(t[1] for t in t_ours) * 1e3
    return {
        "benchmark": "agents.odice.update", "gradient": gradient, "threads": threads,
        "batch_size": batches[0]["rewards"].shape[0], "obs_dim": obs_dim, "act_dim": act_dim,
        "official_ms": round(wall_off, 2), "ours_ms": round(wall_ours, 2),
        "official_updates_per_s": round(1e3 / wall_off, 1), "ours_updates_per_s": round(1e3 / wall_ours, 1),
        "speedup": round(wall_off / wall_ours, 2),
        # process CPU time per update (all threads): less sensitive to other processes than wall time
        "official_cpu_ms": round(cpu_off, 2), "ours_cpu_ms": round(cpu_ours, 2),
        "cpu_speedup": round(cpu_off / cpu_ours, 2),
    }


def _run_here(quick: bool) -> list[dict]:
    """All cases in this process, with the allocator setting `suite run` uses unless SUITE_MALLOC=default."""
    malloc = "keep-freed" if keep_freed_memory() else "default"
    threads_before = torch.get_num_threads()
    try:
        blocks, per_block = (3, 10) if quick else (7, 25)
        gen = torch.Generator().manual_seed(0)
        batches = [_batch(11, 3, 256, gen) for _ in range(per_block)]  # hopper-shaped
        gradients = ("orthogonal",) if quick else ("orthogonal", "semi", "true")
        rows = [_case(g, threads, batches, blocks) for threads in (2, 1) for g in gradients]
    finally:
        torch.set_num_threads(threads_before)
    return [{**row, "malloc": malloc} for row in rows]


def run(quick: bool = False) -> list[dict]:
    """Headline: 2 threads, wall clock; also 1 thread (CPU time is the robust number on a shared machine).

    Each allocator setting (suite/allocator.py) needs a fresh process, so the cases run twice in
    subprocesses: "keep-freed" (as `suite run` trains) and "default" (glibc's defaults, as the official code
    runs). Within a process both implementations get the same setting; the last row puts ours as `suite run`
    trains next to the official update as it runs by default (measured in different processes, minutes
    apart: compare on an idle machine)."""
    rows: list[dict] = []
    for malloc in ("keep-freed", "default"):
        cmd = [sys.executable, "-m", "suite.bench.agents_odice", "--here"] + (["--quick"] if quick else [])
        env = {**os.environ, "SUITE_MALLOC": malloc}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    shipped = {(r["gradient"], r["threads"]): r for r in rows if r["malloc"] == "keep-freed"}
    as_shipped = [
        {
            "benchmark": "agents.odice.update as shipped", "gradient": r["gradient"], "threads": r["threads"],
            "ours_malloc": "keep-freed", "official_malloc": "default",
            "ours_updates_per_s": ours["ours_updates_per_s"], "official_updates_per_s": r["official_updates_per_s"],
            "speedup": round(r["official_ms"] / ours["ours_ms"], 2),
            "cpu_speedup": round(r["official_cpu_ms"] / ours["ours_cpu_ms"], 2),
        }
        for r in rows
        if r["malloc"] == "default" and (ours := shipped.get((r["gradient"], r["threads"]))) is not None
    ]
    return rows + as_shipped


if __name__ == "__main__":
    for row in (_run_here if "--here" in sys.argv else run)(quick="--quick" in sys.argv):
        print(json.dumps(row))
