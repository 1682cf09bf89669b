"""O-DICE: the orthogonal-gradient update against autograd (float64), agreement with a re-creation of the
official update step, variants, learning on the PointGoal toy problem, state-dict round trip, divergence
path, configs."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from agents.base import config_from_dict
from agents.bc import BC, BCConfig
from agents.odice import ODICE, ODICEConfig
from tests.agents import toy
from tests.reference.odice_official import OfficialODICE, load_official_into, twin_to_ensemble_state

CONFIG_DIR = Path(__file__).resolve().parents[2] / "agents" / "configs" / "odice"
TINY = ODICEConfig(value_hidden=(8, 8), policy_hidden=(16, 16))


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


random_batch = partial(toy.random_batch, obs_dim=4, act_dim=2, terminal_every=7)


def pearson_f_star(y):  # written out independently of the agent: ω = max(y/2 + 1, 0), f* = yω − (ω − 1)²
    omega = torch.where(y / 2 + 1 > 0, y / 2 + 1, torch.zeros_like(y))
    return y * omega - (omega - 1) ** 2


def flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def expected_orthogonal_gradient(value, target, batch, lam, eta, gamma):
    """g_f + (g_b − ⟨g_f, g_b⟩/max(‖g_f‖², 1e-10)·g_f) + ∇(1−λ)·mean V(s), by autograd on a copy."""
    value = copy.deepcopy(value)
    params = list(value.parameters())
    s, s2, r = batch["observations"], batch["next_observations"], batch["rewards"]
    nd = 1 - batch["terminals"]
    with torch.no_grad():
        t_s, t_s2 = target(s).min(0).values, target(s2).min(0).values
    v_s = value(s)
    g_f = flat(torch.autograd.grad(lam * pearson_f_star(r + gamma * nd * t_s2 - v_s).mean(), params))
    loss_b = lam * eta * pearson_f_star(r + gamma * nd * value(s2) - t_s).mean()
    g_b = flat(torch.autograd.grad(loss_b, params))
    g_v = flat(torch.autograd.grad((1 - lam) * value(s).mean(), params))
    coef = (g_f @ g_b) / max(float(g_f @ g_f), 1e-10)
    return g_f + (g_b - coef * g_f) + g_v, g_f, g_b


def applied_gradient(agent):
    return flat([p.grad for p in agent.value.parameters()])



@pytest.mark.parametrize("layer_norm", [False, True])
def test_applied_gradient_is_orthogonal_update(float64, layer_norm):
    torch.manual_seed(0)
    cfg = replace(TINY, value_layer_norm=layer_norm, lam=0.7, eta=0.8)
    agent = ODICE(cfg, 4, 2)
    # make target and online differ, as after training
    with torch.no_grad():
        for p in agent.value_target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    batch = random_batch()
    expected, g_f, g_b = expected_orthogonal_gradient(agent.value, agent.value_target, batch, 0.7, 0.8, 0.99)
    assert abs(float(g_f @ g_b)) > 1e-8  # the projection actually does something here
    agent.update(batch)
    torch.testing.assert_close(applied_gradient(agent), expected, rtol=1e-10, atol=1e-12)
    # the backward part that is applied is orthogonal to the forward gradient
    coef = (g_f @ g_b) / (g_f @ g_f)
    assert abs(float((g_b - coef * g_f) @ g_f)) < 1e-10 * float(g_f @ g_f)


def test_orthogonal_with_eta_zero_equals_semi_gradient(float64):
    torch.manual_seed(1)
    ortho = ODICE(replace(TINY, eta=0.0), 4, 2)
    semi = ODICE(replace(TINY, gradient="semi"), 4, 2)
    semi.load_state_dict(copy.deepcopy(ortho.state_dict()))
    for seed in range(3):
        batch = random_batch(seed=seed)
        m_o, m_s = ortho.update(batch), semi.update(batch)
        torch.testing.assert_close(applied_gradient(ortho), applied_gradient(semi), rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(m_o["policy_loss"], m_s["policy_loss"])
    for a, b in zip(ortho.value.parameters(), semi.value.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_true_gradient_is_plain_full_gradient(float64):
    torch.manual_seed(2)
    agent = ODICE(replace(TINY, gradient="true"), 4, 2)
    batch = random_batch()
    value = copy.deepcopy(agent.value)
    s, s2, r, nd = batch["observations"], batch["next_observations"], batch["rewards"], 1 - batch["terminals"]
    v = value(s)
    loss = 0.4 * v.mean() + 0.6 * pearson_f_star(r + 0.99 * nd * value(s2) - v).mean()
    expected = flat(torch.autograd.grad(loss, list(value.parameters())))
    agent.update(batch)
    torch.testing.assert_close(applied_gradient(agent), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gradient", ["orthogonal", "semi", "true"])
@pytest.mark.parametrize("f_divergence", ["pearson_chi2", "reverse_kl"])
def test_matches_official_update_step(float64, gradient, f_divergence):
    """Several full updates (V, target, policy) agree with the re-creation of the official code."""
    cfg = ODICEConfig(value_hidden=(16, 16), policy_hidden=(32, 32), gradient=gradient,
                      f_divergence=f_divergence)
    torch.manual_seed(3)
    official = OfficialODICE(cfg, 5, 2)
    agent = ODICE(cfg, 5, 2)
    load_official_into(agent, official)
    for seed in range(4):
        batch = random_batch(obs_dim=5, act_dim=2, n=64, seed=seed)
        if f_divergence == "reverse_kl":
            batch["rewards"] = 0.1 * batch["rewards"]
        ref = official.update(batch)
        metrics = agent.update(batch)
        assert float(metrics["policy_loss"]) == pytest.approx(ref["policy_loss"], rel=1e-10, abs=1e-12)
    for key, value in twin_to_ensemble_state(official.vf).items():
        torch.testing.assert_close(agent.value.state_dict()[key], value, rtol=1e-9, atol=1e-12)
    for key, value in twin_to_ensemble_state(official.vf_target).items():
        torch.testing.assert_close(agent.value_target.state_dict()[key], value, rtol=1e-9, atol=1e-12)
    for key, value in official.policy.state_dict().items():
        torch.testing.assert_close(agent.policy.state_dict()[key], value, rtol=1e-9, atol=1e-12)


def test_single_value_head_and_reward_scale():
    torch.manual_seed(4)
    agent = ODICE(replace(TINY, twin_v=False, reward_scale=3.0, value_layer_norm=False), 4, 2)
    assert agent.value(torch.zeros(5, 4)).shape == (1, 5)
    batch = random_batch()
    metrics = agent.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    # reward_scale multiplies the rewards in the value targets, exactly: the same agent without it, fed 3 r,
    # takes the same step
    torch.manual_seed(4)
    plain = ODICE(replace(TINY, twin_v=False, reward_scale=1.0, value_layer_norm=False), 4, 2)
    ref = plain.update({**batch, "rewards": batch["rewards"] * 3.0})
    for k in metrics:
        torch.testing.assert_close(metrics[k], ref[k], rtol=0, atol=0)
    for a, b in zip(agent.value.parameters(), plain.value.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(4)
    other = ODICE(replace(TINY, twin_v=False, reward_scale=1.0, value_layer_norm=False), 4, 2)
    assert not torch.equal(other.update(batch)["forward_loss"], metrics["forward_loss"])  # the scale matters


def test_metrics_are_detached_scalars_and_actions_bounded():
    torch.manual_seed(5)
    agent = ODICE(TINY, 4, 2, obs_mean=torch.ones(4), obs_std=2 * torch.ones(4))
    metrics = agent.update(random_batch())
    assert {"forward_loss", "backward_loss", "projection_coef", "policy_loss", "v_mean"} <= set(metrics)
    for v in metrics.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
    a = agent.act(100 * torch.randn(7, 4))
    assert a.shape == (7, 2) and float(a.abs().max()) <= 1.0


def test_act_normalises_observations_when_configured():
    torch.manual_seed(6)
    mean, std = torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([2.0, 0.5, 1.0, 4.0])
    cfg = replace(TINY, normalize_observations=True, policy_tanh_mean=True)
    agent = ODICE(cfg, 4, 2, obs_mean=mean, obs_std=std)
    obs = torch.randn(3, 4)
    torch.testing.assert_close(agent.act(obs), agent.policy.net((obs - mean) / std).clamp(-1, 1))


def test_state_dict_round_trip():
    torch.manual_seed(7)
    a = ODICE(TINY, 4, 2, obs_mean=torch.zeros(4), obs_std=torch.ones(4))
    for seed in range(3):
        a.update(random_batch(seed=seed))
    torch.manual_seed(99)
    b = ODICE(TINY, 4, 2)
    b.load_state_dict(toy.round_trip(a.state_dict()))
    toy.assert_continues_identically(a, b, [random_batch(seed=seed) for seed in range(3, 6)], modules=["value_target"])


@pytest.mark.parametrize("gradient", ["orthogonal", "semi", "true"])
def test_divergence_gives_nan_metrics_without_raising(gradient):
    torch.manual_seed(8)
    agent = ODICE(replace(TINY, gradient=gradient), 4, 2)
    batch = random_batch()
    batch["rewards"][0] = float("nan")
    metrics = agent.update(batch)  # must not raise: the runner detects divergence from the metrics
    assert torch.isnan(metrics["policy_loss"])
    assert torch.isnan(metrics["residual_mean"])


def test_config_validation():
    with pytest.raises(ValueError):
        ODICEConfig(gradient="sideways")
    with pytest.raises(ValueError):
        ODICEConfig(f_divergence="hellinger")
    assert ODICEConfig(value_hidden=[64, 64]).value_hidden == (64, 64)


def test_per_task_config_files():
    """One file per task id (namespace included, version left out): the suite's MuJoCo tasks and the D4RL
    ones have files of their own, with the same values today (the official per-task settings)."""
    configs = dict(toy.per_task_configs("odice", ODICEConfig))
    for env in ("hopper", "halfcheetah", "walker2d"):
        for level in ("medium", "medium-replay", "medium-expert", "expert"):
            assert configs[f"{env}-{level}"] == configs[f"d4rl/{env}-{level}"]
    assert {"hopper-expert-1traj", "walker2d-expert-1traj"} <= set(configs)
    for f in sorted(CONFIG_DIR.rglob("*.json")):
        raw = json.loads(f.read_text())
        assert list(raw) == sorted(raw), f"{f.name}: keys not sorted"
        assert "_source" in raw
        cfg = config_from_dict(ODICEConfig, {k: v for k, v in raw.items() if not k.startswith("_")})
        if f.stem.endswith("1traj"):
            assert cfg.reward_transform == "zero" and cfg.lam == 0.4 and cfg.max_steps == 500_000
            assert cfg.normalize_observations and cfg.policy_tanh_mean and cfg.value_lr == 1e-4
        else:
            assert "unverified" in raw["_source"]


def test_learns_better_than_bc_on_mixed_data():
    """PointGoal, half expert and half random episodes: O-DICE's policy clearly beats BC's (same budget)."""
    steps, batch_size = 1200, 128
    cfg = ODICEConfig(value_hidden=(32, 32), policy_hidden=(32, 32), value_lr=1e-3, policy_lr=1e-3,
                      batch_size=batch_size)
    odice = toy.fit(ODICE, cfg, 20, 20, steps, batch_size=batch_size,
                    normalize_observations=cfg.normalize_observations)
    bc_cfg = BCConfig(hidden=(32, 32), lr=1e-3, batch_size=batch_size)
    bc = toy.fit(BC, bc_cfg, 20, 20, steps, batch_size=batch_size, reward_transform="none")

    rand, expert = toy.random_return(), toy.expert_return()
    r_odice, r_bc = toy.evaluate(odice.act), toy.evaluate(bc.act)
    gap = expert - rand
    assert r_odice > r_bc + 0.25 * gap, (r_odice, r_bc, rand, expert)
    assert r_odice > rand + 0.7 * gap, (r_odice, rand, expert)


def test_benchmark_case_runs():
    """Smoke test of the speed benchmark's case (no timing assertions: speed belongs to benchmarks)."""
    from suite.bench.agents_odice import time_case
    from suite.bench.timing import random_batches

    row = time_case("orthogonal", 1, random_batches(3, batch_size=32), blocks=1)
    assert row["threads"] == 1 and row["ours_updates_per_s"] > 0 and row["official_updates_per_s"] > 0
