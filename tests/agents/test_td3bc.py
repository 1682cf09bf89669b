"""TD3+BC: target policy smoothing and the λ-weighted actor loss against direct computations (float64), the
delayed actor, one update against CORL's update step, checkpoints and learning on the PointGoal toy problem.
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest
import torch

from agents.td3bc import TD3BC, TD3BCConfig, actor_loss, critic_head, smoothed_target_actions
from tests.agents import toy
from tests.reference.corl import CorlTD3BC, load_corl_td3bc, pair_to_ensemble

SMALL = dict(hidden=(32, 32))


_batch = partial(toy.random_batch, n=64)


def _double(agent: TD3BC) -> TD3BC:
    for m in (agent.actor, agent.actor_target, agent.critic, agent.critic_target):
        m.double()
    return agent


def test_target_policy_smoothing_clips_noise_then_action():
    target_actions = torch.tensor([[0.9, -0.2], [0.0, -0.95]], dtype=torch.float64)
    noise = torch.tensor([[0.8, 0.1], [-0.3, -0.7]], dtype=torch.float64)
    out = smoothed_target_actions(target_actions, noise, noise_clip=0.5)
    # 0.9 + min(0.8, 0.5) = 1.4 -> 1; -0.2 + 0.1; 0 - 0.3; -0.95 + max(-0.7, -0.5) = -1.45 -> -1
    expected = torch.tensor([[1.0, -0.1], [-0.3, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


def test_update_critic_target_uses_smoothed_target_policy():
    """Recompute one update's critic loss directly: same noise draw, target actor, min of target critics."""
    torch.manual_seed(0)
    c = TD3BCConfig(**SMALL)
    agent = _double(TD3BC(c, 4, 2))
    before = copy.deepcopy(agent)
    batch = _batch(4, 2, seed=3, dtype=torch.float64)
    torch.manual_seed(42)
    metrics = agent.update(batch)
    torch.manual_seed(42)
    noise = torch.randn_like(batch["actions"]) * c.policy_noise
    with torch.no_grad():
        next_pi = before.actor_target(batch["next_observations"])
        next_a = torch.clamp(next_pi + torch.clamp(noise, -c.noise_clip, c.noise_clip), -1, 1)
        q_next = [critic_head(before.critic_target, batch["next_observations"], next_a, i) for i in (0, 1)]
        y = batch["rewards"] + c.discount * (1 - batch["terminals"]) * torch.minimum(*q_next)
        q = [critic_head(before.critic, batch["observations"], batch["actions"], i) for i in (0, 1)]
        direct = sum(((qi - y) ** 2).mean() for qi in q)
    assert metrics["critic_loss"].item() == pytest.approx(direct.item(), rel=1e-12)
    assert (noise.abs() > c.noise_clip).any()  # the clip was exercised


def test_actor_loss_lambda_is_alpha_over_mean_abs_q_without_gradient():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(30, generator=g, dtype=torch.float64).requires_grad_(True)
    pi = (torch.rand(30, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    a = torch.rand(30, 2, generator=g, dtype=torch.float64) * 2 - 1
    alpha = 2.5
    loss = actor_loss(q, pi, a, alpha)
    qs = q.detach().numpy()
    lam = alpha / np.mean(np.abs(qs))
    direct = -lam * qs.mean() + np.mean((pi.detach().numpy() - a.numpy()) ** 2)
    assert loss.item() == pytest.approx(direct, rel=1e-12)
    loss.backward()
    # λ is a constant: dL/dq_i = -λ / B exactly (no term from differentiating mean|Q|)
    torch.testing.assert_close(q.grad, torch.full_like(q, -lam / 30), rtol=1e-12, atol=0)
    torch.testing.assert_close(pi.grad, 2 * (pi.detach() - a) / pi.numel(), rtol=1e-12, atol=0)


def test_critic_head_is_one_member_of_the_ensemble_with_detached_weights():
    torch.manual_seed(0)
    agent = TD3BC(TD3BCConfig(**SMALL), 4, 2)
    obs, act = torch.randn(9, 4), (torch.rand(9, 2) * 2 - 1).requires_grad_(True)
    full = agent.critic(obs, act)
    for i in (0, 1):
        head = critic_head(agent.critic, obs, act, i)
        torch.testing.assert_close(head, full[i])
    critic_head(agent.critic, obs, act, 0).sum().backward()
    assert act.grad is not None and all(p.grad is None for p in agent.critic.parameters())


def test_delayed_actor_moves_on_even_updates_only():
    torch.manual_seed(0)
    agent = TD3BC(TD3BCConfig(**SMALL), 4, 2)

    def snapshot():
        return [
            p.detach().clone()
            for m in (agent.actor, agent.actor_target, agent.critic_target)
            for p in m.parameters()
        ]

    for step in range(1, 7):
        before_actor = [p.detach().clone() for p in agent.actor.parameters()]
        before_targets = snapshot()
        before_critic = [p.detach().clone() for p in agent.critic.parameters()]
        agent.update(_batch(4, 2, seed=step))
        after_targets = snapshot()
        actor_moved = any(
            not torch.equal(a, b) for a, b in zip(before_actor, agent.actor.parameters(), strict=True)
        )
        targets_moved = any(not torch.equal(a, b) for a, b in zip(before_targets, after_targets, strict=True))
        assert any(
            not torch.equal(a, b) for a, b in zip(before_critic, agent.critic.parameters(), strict=True)
        )  # every step
        assert actor_moved == (step % 2 == 0), step
        assert targets_moved == (step % 2 == 0), step
    assert agent.step == 6


def test_updates_match_corl_update_step():
    """Six updates (three actor updates) equal CORL's update step with the same noise draws (float64)."""
    torch.manual_seed(0)
    cfg = TD3BCConfig(**SMALL)
    ref = CorlTD3BC(5, 2, cfg)
    for m in (
        ref.actor,
        ref.actor_target,
        ref.critic_1,
        ref.critic_2,
        ref.critic_1_target,
        ref.critic_2_target,
    ):
        m.double()
    agent = _double(TD3BC(cfg, 5, 2))
    load_corl_td3bc(agent, ref)
    for t in range(6):
        batch = _batch(5, 2, seed=t, dtype=torch.float64)
        torch.manual_seed(100 + t)
        ref.update(batch)
        torch.manual_seed(100 + t)
        agent.update(batch)
    sd = agent.critic.state_dict()
    for k, v in pair_to_ensemble(ref.critic_1, ref.critic_2).items():
        torch.testing.assert_close(sd[k], v, rtol=1e-10, atol=1e-10)
    sd = agent.critic_target.state_dict()
    for k, v in pair_to_ensemble(ref.critic_1_target, ref.critic_2_target).items():
        torch.testing.assert_close(sd[k], v, rtol=1e-10, atol=1e-10)
    for a, b in zip(agent.actor.net.parameters(), ref.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(agent.actor_target.net.parameters(), ref.actor_target.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = TD3BC(TD3BCConfig(**SMALL), 5, 2, obs_mean=np.ones(5), obs_std=np.full(5, 3.0))
    for t in range(3):  # odd: the next update is an actor update only if the step counter survived
        a.update(_batch(5, 2, seed=t))
    torch.manual_seed(7)
    b = TD3BC(TD3BCConfig(**SMALL), 5, 2)
    b.load_state_dict(toy.round_trip(a.state_dict()))
    toy.assert_continues_identically(a, b, [_batch(5, 2, seed=20 + t) for t in range(3)],
                                     modules=["actor", "actor_target", "critic_target"])


def test_learns_point_goal_from_expert_heavy_data():
    cfg = TD3BCConfig(**SMALL, max_steps=1000)
    agent = toy.fit(TD3BC, cfg, n_expert=40, n_random=10, steps=cfg.max_steps)
    ret, rand, expert = toy.evaluate(agent.act), toy.random_return(), toy.expert_return()
    assert ret > rand + 0.5 * (expert - rand), (ret, rand, expert)
