"""IQL: the losses against direct computations (float64), one update against CORL's update step, checkpoints,
the per-task config files, and learning on the PointGoal toy problem."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from agents.iql import IQL, IQLConfig, awr_actor_loss, expectile_loss
from agents.nets import gaussian_log_prob
from tests.agents import toy
from tests.reference.corl import CorlIQL, load_corl_iql, pair_to_ensemble

SMALL = dict(hidden=(32, 32))


_batch = partial(toy.random_batch, n=64)


def test_expectile_loss_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(50, generator=g, dtype=torch.float64)
    for tau in (0.5, 0.7, 0.9):
        direct = np.mean([(tau if x >= 0 else 1 - tau) * x**2 for x in u.tolist()])
        assert expectile_loss(u, tau).item() == pytest.approx(direct, rel=1e-12)
    # tau = 0.5 is half the mean squared error; a larger tau pushes the minimiser above the mean
    assert expectile_loss(u, 0.5).item() == pytest.approx(0.5 * u.square().mean().item(), rel=1e-12)
    v = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        expectile_loss(u - v, 0.9).backward()
        opt.step()
    assert v.item() > u.mean().item() + 0.3


def test_awr_actor_loss_matches_direct_computation():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    log_std = torch.randn(3, generator=g, dtype=torch.float64) * 0.3
    actions = torch.rand(40, 3, generator=g, dtype=torch.float64) * 2 - 1
    adv = torch.randn(40, generator=g, dtype=torch.float64) * 2.0  # some weights above the 100 cap
    beta, cap = 3.0, 100.0

    log_prob = gaussian_log_prob(mean, log_std, actions)
    reference = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(log_prob, reference, rtol=1e-12, atol=1e-12)

    loss = awr_actor_loss(log_prob, adv, beta, cap)
    weights = [min(math.exp(beta * a), cap) for a in adv.tolist()]
    assert any(w == cap for w in weights) and any(w < 1 for w in weights)
    direct = -np.mean([w * lp for w, lp in zip(weights, reference.tolist(), strict=True)])
    assert loss.item() == pytest.approx(direct, rel=1e-12)
    # no gradient reaches the advantage (it comes from V and the target Q)
    adv_req = adv.clone().requires_grad_(True)
    awr_actor_loss(gaussian_log_prob(mean, log_std, actions), adv_req, beta, cap).backward()
    assert adv_req.grad is None and mean.grad is not None


def _corl_pair(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = IQLConfig(**{**SMALL, "max_steps": 50, **overrides})
    ref = CorlIQL(5, 2, cfg)
    agent = IQL(cfg, 5, 2)
    for m in (ref.qf, ref.q_target, ref.vf, ref.actor):
        m.double()
    for m in (agent.critic, agent.critic_target, agent.value, agent.actor):
        m.double()
    load_corl_iql(agent, ref)
    return agent, ref


def test_updates_match_corl_update_step():
    """Five updates of the batched single-backward agent equal five of CORL's three-step update (float64)."""
    agent, ref = _corl_pair()
    for t in range(5):
        batch = _batch(5, 2, seed=t, dtype=torch.float64)
        ref.update(batch)
        agent.update(batch)
    sd = agent.critic.state_dict()
    for k, v in pair_to_ensemble(ref.qf.q1, ref.qf.q2).items():
        torch.testing.assert_close(sd[k], v, rtol=1e-9, atol=1e-9)
    sd = agent.critic_target.state_dict()
    for k, v in pair_to_ensemble(ref.q_target.q1, ref.q_target.q2).items():
        torch.testing.assert_close(sd[k], v, rtol=1e-9, atol=1e-9)
    for a, b in zip(agent.value.parameters(), ref.vf.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(agent.actor.parameters(), ref.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert agent.actor_lr(agent.step) == pytest.approx(ref.actor_optimizer.param_groups[0]["lr"], rel=1e-12)


def test_cosine_actor_schedule_and_metrics():
    torch.manual_seed(0)
    agent = IQL(IQLConfig(**SMALL, max_steps=10), 4, 2)
    for t in range(5):
        metrics = agent.update(_batch(4, 2, seed=t))
    assert agent.step == 5
    assert agent.actor_lr(agent.step) == pytest.approx(0.5 * 3e-4)  # halfway down the cosine
    assert agent.optim.param_groups[2]["lr"] == pytest.approx(agent.actor_lr(4))  # the lr the 5th update used
    assert (
        agent.optim.param_groups[0]["lr"] == agent.optim.param_groups[1]["lr"] == 3e-4
    )  # Q and V keep theirs
    assert set(metrics) >= {"value_loss", "critic_loss", "actor_loss"}
    for v in metrics.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and torch.isfinite(v)


def test_act_normalises_raw_observations():
    torch.manual_seed(0)
    mean, std = np.array([1.0, -2.0, 0.5], np.float32), np.array([2.0, 0.5, 3.0], np.float32)
    agent = IQL(IQLConfig(**SMALL), 3, 2, obs_mean=mean, obs_std=std)
    raw = torch.randn(6, 3)
    expected = agent.actor.net((raw - torch.as_tensor(mean)) / torch.as_tensor(std)).clamp(-1, 1)
    torch.testing.assert_close(agent.act(raw), expected)
    assert agent.act(raw).abs().max() <= 1.0


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = IQL(IQLConfig(**SMALL, max_steps=100), 5, 2, obs_mean=np.zeros(5), obs_std=np.full(5, 2.0))
    for t in range(4):
        a.update(_batch(5, 2, seed=t))
    torch.manual_seed(123)  # different initial weights
    b = IQL(IQLConfig(**SMALL, max_steps=100), 5, 2)
    b.load_state_dict(toy.round_trip(a.state_dict()))
    assert b.step == a.step == 4
    toy.assert_continues_identically(a, b, [_batch(5, 2, seed=10 + t) for t in range(3)], modules=["critic_target"])
    assert a.optim.param_groups[2]["lr"] == b.optim.param_groups[2]["lr"]


def test_learns_point_goal_from_expert_heavy_data():
    # the toy's 40-step episodes make "return_range" scale rewards ~25x more than on 1000-step MuJoCo
    # episodes; unscaled rewards (about -1 per step) are the MuJoCo-like regime here
    cfg = IQLConfig(**SMALL, max_steps=1000, reward_transform="none")
    agent = toy.fit(IQL, cfg, n_expert=40, n_random=10, steps=cfg.max_steps)
    ret, rand, expert = toy.evaluate(agent.act), toy.random_return(), toy.expert_return()
    assert ret > rand + 0.6 * (expert - rand), (ret, rand, expert)


def test_benchmark_harness_smoke():
    """The benchmark harness on tiny networks: it alternates both updates and reports ratios."""
    from suite.bench.timing import compare

    torch.manual_seed(0)
    cfg = IQLConfig(hidden=(8, 8))
    row = compare(IQL(cfg, 11, 3).update, CorlIQL(11, 3, cfg).update, blocks=2, per_block=1, warmup=1)
    assert row["updates_per_s"] > 0 and row["reference_updates_per_s"] > 0 and row["speedup"] > 0
    assert row["blocks"] == 2


def test_policy_dropout_is_off_when_acting():
    torch.manual_seed(0)
    agent = IQL(IQLConfig(hidden=(32, 32), actor_dropout=0.5), 3, 2)
    obs = torch.randn(8, 3)
    assert torch.equal(agent.act(obs), agent.act(obs))
    assert agent.actor.training  # back in training mode for the next update
    agent.update(_batch(3, 2))
