"""O-DICE: DICE with the orthogonal-gradient update (Mao, Xu, Zhang, Zhan, ICLR 2024).

Paper: https://arxiv.org/abs/2402.00348 . Official code: https://github.com/maoliyuan/ODICE-Pytorch
(`odice.py`, `main_odice_rl.py`, `main_odice_il.py`, `configs/offline_{RL,IL}.yaml`, `run_offline_il.sh`).

Value learning (V-DICE, twin V heads V_1, V_2 and an EMA target V̄ whose heads are combined by a min):

    δf_i = r + γ(1−d)·min_j V̄_j(s′) − V_i(s)     forward residual, gradient through V_i(s) only
    δb_i = r + γ(1−d)·V_i(s′) − min_j V̄_j(s)     backward residual, gradient through V_i(s′) only
    L_f = λ·mean_{i,batch} f*(δf),  L_b = λ·η·mean_{i,batch} f*(δb),  L_v = (1−λ)·mean_{i,batch} V_i(s)
    g = ∇L_v + g_f + (g_b − ⟨g_f, g_b⟩ / max(‖g_f‖², 1e-10) · g_f),   g_f = ∇L_f, g_b = ∇L_b

with the gradients flattened over *all* V parameters (both heads) as one vector, then one Adam step. The
twin heads combine exactly as in the official code: per-head residuals against the min of the target heads,
mean over heads and batch (`TwinV.both` for the online heads, `TwinV.forward` = min for the target). Policy
extraction is weighted behaviour cloning with weight min(w(δf), 100), δf detached and taken per head before
the V step (so the weight of a sample is the mean over heads of the per-head weights), loss −mean weight·log
π(a|s).

Variants (`gradient`): "orthogonal" (O-DICE), "semi" (forward gradient only: the official `semi_g_update`),
"true" (the official `true_g_update`: the full gradient of λ·mean f*(r + γ(1−d)V(s′) − V(s)) + (1−λ)·mean V(s)
with the *online* V in both places and no η; the policy weights use that residual).

Deviations from the paper / official code, and why:
- Speed, identical maths: the two heads are one batched network (`nets.EnsembleValue`, with a per-head
  LayerNorm, see below); V̄(s) and V̄(s′) are one forward pass on [s; s′]; g_f, g_b and ∇L_v come from
  `torch.autograd.grad` into one preallocated flat buffer (no per-step flattening of parameter lists), the
  projection coefficient stays a tensor (the official code calls `.item()` on it and on `max(‖g_f‖²,
  1e-10)`), the combined gradient is written straight into `.grad` views of a flat buffer; Adam is the
  fused kernel (`fused=True`; the official code uses the default for-loop Adam); the EMA is one fused
  `lerp`. Results equal the official update up to float rounding (checked in the tests).
- The Gaussian log-density is computed in closed form (sum of per-dimension Normal log-densities) instead of
  `MultivariateNormal(mean, scale_tril=diag(std))`: the same value, without a batched triangular solve and
  without `torch.distributions`' argument validation (a host synchronisation per step).
- The official TwinV has a LayerNorm per head; `nets.EnsembleMLP` gives each member its own LayerNorm
  affine (`nets.EnsembleLayerNorm`), so the batched heads match it.
- AntMaze rewards: the official code uses −3 where r = 0 and 0 where r = 1. The suite's reward transforms
  have no such entry, so the AntMaze configs use `reward_transform="antmaze"` (r − 1) and `reward_scale=3`,
  which gives the same −3 / 0 rewards for AntMaze's binary rewards.
- Offline IL: the official code uses the T-th trajectory (T = 1, i.e. the *second* episode, by default; T ∈
  {1, 10, 20, 30} in `run_offline_il.sh`) of the expert dataset with rewards set to 0, and its last
  transition's next observation is the next episode's first observation. The suite's `*-expert-1traj` tasks
  keep the first episode; which episode is kept is the task's business, not the agent's.
- Per-task λ and η are given in the paper's appendix D, which could not be read here: the per-task config
  files use the official code defaults (λ = 0.6, η = 1.0) and say "unverified" in their `_source` key.
- Host-side logging every 10k steps (wandb) is replaced by returning detached 0-d tensors every step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from .base import OfflineAgent
from .nets import EnsembleValue, GaussianPolicy, frozen_copy, fused_adam, gaussian_log_prob, soft_update
from .stacked import SeedStack

GRADIENTS = ("orthogonal", "true", "semi")
F_DIVERGENCES = ("pearson_chi2", "reverse_kl")


@dataclass(frozen=True)
class ODICEConfig:
    # --- protocol (official configs/offline_RL.yaml) ---
    batch_size: int = 256  # transitions per update
    max_steps: int = 1_000_000  # gradient steps (paper: 1M for offline RL, 500k for offline IL)
    eval_every: int = 5000  # steps between evaluations (AntMaze: 20000)
    eval_episodes: int = 10  # episodes per evaluation (AntMaze: 50)
    # --- data ---
    normalize_observations: bool = False  # official RL: False; offline IL: True
    # r * 1000 / (max − min episode return); IL: "zero"; AntMaze: "antmaze"
    reward_transform: str = "return_range"
    # extra factor on batch rewards inside update (AntMaze: 3 with "antmaze" gives the official −3 / 0)
    reward_scale: float = 1.0
    # --- objective ---
    discount: float = 0.99  # γ
    lam: float = 0.6  # λ: weight of the f-divergence term (official code default; per task in appendix D)
    eta: float = 1.0  # η: weight of the backward gradient
    f_divergence: str = "pearson_chi2"  # "pearson_chi2" (paper default) or "reverse_kl"
    gradient: str = "orthogonal"  # "orthogonal" (O-DICE), "semi" (forward only) or "true" (full gradient)
    max_weight: float = 100.0  # cap on the policy weight w(δf) (official EXP_ADV_MAX)
    # --- value networks ---
    value_hidden: tuple[int, ...] = (256, 256)  # hidden sizes of each V head
    value_layer_norm: bool = True  # LayerNorm in V (RL MuJoCo: True; AntMaze and IL: False)
    twin_v: bool = True  # two V heads (official: False on antmaze-large-* and antmaze-umaze-diverse)
    value_lr: float = 2e-4  # Adam learning rate of V (IL: 1e-4)
    target_update_rate: float = 0.005  # EMA rate of the target V (official `beta`)
    # --- policy ---
    policy_hidden: tuple[int, ...] = (1024, 1024)  # hidden sizes of the Gaussian policy MLP
    policy_tanh_mean: bool = False  # tanh on the mean (official `use_tanh`: RL False, IL True)
    policy_lr: float = 2e-4  # Adam learning rate of the policy (IL: 1e-4)
    # Adam (L2, not AdamW) weight decay of the policy; IL: hopper 1e-5, walker2d 1e-3
    policy_weight_decay: float = 1e-4
    log_std_min: float = -5.0  # clamp of the state-independent log-std
    log_std_max: float = 2.0

    def __post_init__(self):
        object.__setattr__(self, "value_hidden", tuple(int(h) for h in self.value_hidden))
        object.__setattr__(self, "policy_hidden", tuple(int(h) for h in self.policy_hidden))
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if self.f_divergence not in F_DIVERGENCES:
            raise ValueError(f"f_divergence must be one of {F_DIVERGENCES}, got {self.f_divergence!r}")


# --------------------------------------------------------------------------------- pure functions
def f_star(y: torch.Tensor, name: str) -> torch.Tensor:
    """Convex conjugate f*(y) of the f-divergence's generator (after the closed-form inner maximisation)."""
    if name == "reverse_kl":
        return torch.exp(y - 1)
    omega = torch.clamp_min(y / 2 + 1, 0.0)  # Pearson χ²: ω* = max(y/2 + 1, 0)
    return y * omega - (omega - 1) ** 2


def f_prime_inverse(y: torch.Tensor, name: str) -> torch.Tensor:
    """w(y) = (f′)⁻¹(y): the density-ratio weight of a residual (policy-extraction weight)."""
    if name == "reverse_kl":
        return torch.exp(y - 1)
    return torch.clamp_min(y, 0.0)


def orthogonal_combination(g_f: torch.Tensor, g_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g_f + (g_b − c·g_f) with c = ⟨g_f, g_b⟩ / max(‖g_f‖², 1e-10), for flat vectors; returns (vector, c)."""
    c = torch.dot(g_f, g_b) / torch.dot(g_f, g_f).clamp_min(1e-10)
    return g_b + (1 - c) * g_f, c


# --------------------------------------------------------------------------------------- networks
def make_value(obs_dim: int, n: int, hidden: tuple[int, ...], layer_norm: bool) -> EnsembleValue:
    """n V heads as one batched `EnsembleValue`, each head with its own LayerNorm (as the official TwinV)."""
    return EnsembleValue(obs_dim, n, hidden, layer_norm=layer_norm)


# ------------------------------------------------------------------------------------------ agent
class ODICE(OfflineAgent):
    """O-DICE agent: `update(batch)` does one V step (orthogonal / semi / true gradient), one EMA step of the
    target and one weighted-BC policy step, and returns detached 0-d metric tensors."""

    STATE_PARTS = ("value", "value_target", "policy", "v_optimizer", "policy_optimizer", "obs_norm")
    NUMERICS = 2  # 2026-12-02: the one Gaussian log-density of agents.nets (float32 rounding moved)

    def __init__(self, config: ODICEConfig, obs_dim: int, action_dim: int, **kwargs):
        super().__init__(config, obs_dim, action_dim, **kwargs)  # obs_mean, obs_std, device
        c = config
        n_heads = 2 if c.twin_v else 1
        self.value = make_value(obs_dim, n_heads, c.value_hidden, c.value_layer_norm).to(self.device)
        self.value_target = frozen_copy(self.value)
        self.policy = GaussianPolicy(obs_dim, action_dim, c.policy_hidden, tanh_mean=c.policy_tanh_mean,
                                     log_std_min=c.log_std_min, log_std_max=c.log_std_max).to(self.device)
        self._v_params = list(self.value.parameters())
        self._t_params = list(self.value_target.parameters())
        self.v_optimizer = fused_adam(self._v_params, lr=c.value_lr)
        self.policy_optimizer = fused_adam(self.policy.parameters(), lr=c.policy_lr,
                                           weight_decay=c.policy_weight_decay)
        # One flat buffer per gradient (rows: g_f, g_b, ∇L_v) and one for the applied gradient, whose
        # per-parameter views are the parameters' .grad: combining is a few vector ops, no flattening.
        p0 = self._v_params[0]
        numel = sum(p.numel() for p in self._v_params)
        self._parts = torch.zeros(3, numel, dtype=p0.dtype, device=p0.device)
        self._grad_flat = torch.zeros(numel, dtype=p0.dtype, device=p0.device)
        offset = 0
        for p in self._v_params:
            p.grad = self._grad_flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    # ---------------------------------------------------------------------------------- value step
    def _flat_grad(self, loss: torch.Tensor, row: int, retain: bool) -> torch.Tensor:
        grads = torch.autograd.grad(loss, self._v_params, retain_graph=retain, allow_unused=True)
        out = self._parts[row]
        torch.cat([g.reshape(-1) if g is not None else torch.zeros_like(p).reshape(-1)
                   for g, p in zip(grads, self._v_params, strict=True)], out=out)
        return out

    def value_losses(self, obs, next_obs, rewards, not_done) -> dict[str, torch.Tensor]:
        """The V losses of one update for `config.gradient` ("loss" for "true"; "forward" + "value" for
        "semi"; "forward", "value" and "backward" for "orthogonal"), the per-head residual the policy weights
        use (detached) and the logged statistics."""
        c = self.config
        lam, gamma, fname = c.lam, c.discount, c.f_divergence
        b = obs.shape[0]
        out: dict[str, torch.Tensor] = {}
        if c.gradient == "true":
            v_all = self.value(torch.cat([obs, next_obs]))  # (n, 2B): online V on s and s′, gradient via both
            v, v_next = v_all[:, :b], v_all[:, b:]
            residual = rewards + gamma * not_done * v_next - v
            out["loss"] = (1 - lam) * v.mean() + lam * f_star(residual, fname).mean()
            out["value_loss"] = out["loss"].detach()
            pi_residual = residual.detach()
        else:
            with torch.no_grad():
                if c.gradient == "semi":
                    target_next = self.value_target(next_obs).amin(0)
                else:
                    t = self.value_target(torch.cat([obs, next_obs])).amin(0)  # min over target heads
                    target, target_next = t[:b], t[b:]
            v = self.value(obs)  # (n, B)
            forward_residual = rewards + gamma * not_done * target_next - v
            out["forward"] = lam * f_star(forward_residual, fname).mean()
            out["value"] = (1 - lam) * v.mean()
            pi_residual = forward_residual.detach()
            out["forward_loss"] = out["forward"].detach()
            if c.gradient == "orthogonal":
                v_next = self.value(next_obs)
                backward_residual = rewards + gamma * not_done * v_next - target
                out["backward"] = (lam * c.eta) * f_star(backward_residual, fname).mean()
                out["backward_loss"] = out["backward"].detach()
        out["v_mean"] = v.detach().mean()
        out["residual"] = pi_residual
        out["residual_mean"] = pi_residual.mean()
        return out

    def _value_step(self, obs, next_obs, rewards, not_done):
        """One V step; returns (forward residual per head, detached; metrics)."""
        c = self.config
        out = self.value_losses(obs, next_obs, rewards, not_done)
        metrics = {k: out[k] for k in ("value_loss", "forward_loss", "backward_loss") if k in out}
        if c.gradient == "true":
            self._grad_flat.copy_(self._flat_grad(out["loss"], 0, retain=False))
        elif c.gradient == "semi":
            self._grad_flat.copy_(self._flat_grad(out["forward"] + out["value"], 0, retain=False))
        else:
            g_f = self._flat_grad(out["forward"], 0, retain=True)
            g_v = self._flat_grad(out["value"], 2, retain=False)
            g_b = self._flat_grad(out["backward"], 1, retain=False)
            combined, coef = orthogonal_combination(g_f, g_b)
            torch.add(combined, g_v, out=self._grad_flat)
            metrics["projection_coef"] = coef.detach()
        self.v_optimizer.step()
        soft_update(self.value_target, self.value, c.target_update_rate)
        metrics["v_mean"] = out["v_mean"]
        metrics["residual_mean"] = out["residual_mean"]
        return out["residual"], metrics

    # --------------------------------------------------------------------------------- policy step
    def policy_loss(self, obs, actions, residual) -> dict[str, torch.Tensor]:
        """Weighted behaviour cloning: −mean w·log π(a|s), w = min(w(δf), max_weight) averaged over heads."""
        c = self.config
        # per-head weights averaged over heads = the official mean over (heads, batch) of weight * bc_loss
        weight = f_prime_inverse(residual, c.f_divergence).clamp_max(c.max_weight).mean(0)
        mean = self.policy.net(obs)
        log_std = self.policy.log_std.clamp(c.log_std_min, c.log_std_max)
        loss = -(weight * gaussian_log_prob(mean, log_std, actions)).mean()
        return {"policy_loss": loss, "weight_mean": weight.mean(), "weight_max": weight.max()}

    def _policy_step(self, obs, actions, residual) -> dict[str, torch.Tensor]:
        out = self.policy_loss(obs, actions, residual)
        self.policy_optimizer.zero_grad(set_to_none=True)
        out["policy_loss"].backward()
        self.policy_optimizer.step()
        return {"policy_loss": out["policy_loss"].detach(), "weight_mean": out["weight_mean"],
                "weight_max": out["weight_max"]}

    # ----------------------------------------------------------------------------------- interface
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, next_obs = batch["observations"], batch["next_observations"]
        rewards = batch["rewards"]
        if self.config.reward_scale != 1.0:
            rewards = rewards * self.config.reward_scale
        not_done = 1.0 - batch["terminals"]
        residual, metrics = self._value_step(obs, next_obs, rewards, not_done)
        metrics.update(self._policy_step(obs, batch["actions"], residual))
        return metrics

    @staticmethod
    def stack(agents, rng, device):
        return ODICEStack(agents, rng, device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        obs = self.policy_input(obs)
        return self.policy.act(obs)




class ODICEStack(SeedStack):
    """K O-DICE agents updated as one (see `agents.stacked`): `ODICE.update` over stacked parameters. The
    orthogonal projection couples all V parameters of one agent, so it is taken per member: each member's
    gradients flattened to one row, `orthogonal_combination` vmapped over the rows."""

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a = self.template
        c = a.config
        obs, next_obs, rewards = batch["observations"], batch["next_observations"], batch["rewards"]
        if c.reward_scale != 1.0:
            rewards = rewards * c.reward_scale
        not_done = 1.0 - batch["terminals"]
        out = self.call(a.value_losses, obs, next_obs, rewards, not_done)
        params = self.params("value")

        def grad(loss, retain):
            return self.flat(torch.autograd.grad(loss.sum(), params, retain_graph=retain, allow_unused=True),
                             params)

        metrics = {k: out[k] for k in ("value_loss", "forward_loss", "backward_loss") if k in out}
        if c.gradient == "true":
            flat = grad(out["loss"], False)
        elif c.gradient == "semi":
            flat = grad(out["forward"] + out["value"], False)
        else:
            g_f, g_v, g_b = grad(out["forward"], True), grad(out["value"], False), grad(out["backward"], False)
            combined, coef = vmap(orthogonal_combination)(g_f, g_b)
            flat = combined + g_v
            metrics["projection_coef"] = coef
        self.set_grads(params, flat)
        self.optimizers["v_optimizer"].step()
        self.soft_update("value_target", "value", c.target_update_rate)
        metrics["v_mean"], metrics["residual_mean"] = out["v_mean"], out["residual_mean"]

        pi = self.call(a.policy_loss, obs, batch["actions"], out["residual"])
        policy_optimizer = self.optimizers["policy_optimizer"]
        policy_optimizer.zero_grad(set_to_none=True)
        pi["policy_loss"].sum().backward()
        policy_optimizer.step()
        metrics.update({k: v.detach() for k, v in pi.items()})
        return metrics
