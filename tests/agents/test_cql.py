"""CQL: the conservative penalty with its sampled actions recomputed directly (float64, fixed RNG), the
tanh-Gaussian densities against torch.distributions, the single backward against per-loss gradients,
checkpoints and learning on the PointGoal toy problem."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from agents.cql import CQL, CQLConfig, cql_penalty
from agents.nets import tanh_gaussian_log_prob, tanh_gaussian_sample
from agents.td3bc import critic_head
from tests.agents import toy

SMALL = dict(critic_hidden=(32, 32), actor_hidden=(32, 32), cql_n_actions=4)


_batch = partial(toy.random_batch, n=16, action_low=-0.9, action_high=0.9)


def _agent64(seed: int = 0, **overrides) -> CQL:
    torch.manual_seed(seed)
    agent = CQL(CQLConfig(**{**SMALL, **overrides}), 3, 2)
    for m in (agent.actor, agent.critic, agent.critic_target):
        m.double()
    with torch.no_grad():
        agent.log_alpha.data = agent.log_alpha.data.double()
        agent.log_alpha_prime.data = agent.log_alpha_prime.data.double()
    return agent


def _corl_dist(mean, log_std):
    return TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform(cache_size=1))


def test_tanh_gaussian_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 1, 3, generator=g, dtype=torch.float64)
    log_std = torch.randn(5, 1, 3, generator=g, dtype=torch.float64) * 0.5 - 0.5
    eps = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    a, lp = tanh_gaussian_sample(mean, log_std, eps)
    assert a.shape == (5, 7, 3) and lp.shape == (5, 7)
    torch.testing.assert_close(a, torch.tanh(mean + log_std.exp() * eps), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(lp, _corl_dist(mean, log_std).log_prob(a).sum(-1), rtol=1e-8, atol=1e-8)
    data = torch.rand(5, 7, 3, generator=g, dtype=torch.float64) * 1.8 - 0.9
    torch.testing.assert_close(
        tanh_gaussian_log_prob(mean, log_std, data),
        _corl_dist(mean, log_std).log_prob(data).sum(-1),
        rtol=1e-10,
        atol=1e-10,
    )


def test_penalty_with_sampled_actions_matches_direct_computation():
    """Fix the RNG, take the actions the update sampled, and recompute the per-head gap head by head."""
    agent = _agent64()
    batch = _batch(3, 2, seed=1, dtype=torch.float64)
    torch.manual_seed(5)
    out = agent.compute_losses(batch)
    obs, nxt, k = batch["observations"], batch["next_observations"], agent.config.cql_n_actions
    rand_a, cur_a, next_a = out["random_actions"], out["current_actions"], out["next_actions"]
    assert rand_a.shape == cur_a.shape == next_a.shape == (16, k, 2)
    assert rand_a.abs().max() <= 1 and rand_a.std() > 0.4  # uniform on [-1, 1]

    # the sampled policy actions come from the policy at s (current) and at s' (next), with their densities
    with torch.no_grad():
        m, ls = agent.actor.mean_log_std(obs)
        nm, nls = agent.actor.mean_log_std(nxt)
    torch.testing.assert_close(
        out["current_log_pi"],
        _corl_dist(m.unsqueeze(1), ls.unsqueeze(1)).log_prob(cur_a).sum(-1),
        rtol=1e-6,
        atol=1e-6,
    )
    torch.testing.assert_close(
        out["next_log_pi"],
        _corl_dist(nm.unsqueeze(1), nls.unsqueeze(1)).log_prob(next_a).sum(-1),
        rtol=1e-6,
        atol=1e-6,
    )

    log_uniform = 2 * math.log(0.5)
    with torch.no_grad():
        for head in (0, 1):
            gaps = []
            for i in range(16):
                s = obs[i].expand(k, -1)  # every penalty action is evaluated at s (CORL, young-geng/CQL)
                terms = torch.cat(
                    [
                        critic_head(agent.critic, s, rand_a[i], head) - log_uniform,
                        critic_head(agent.critic, s, next_a[i], head) - out["next_log_pi"][i],
                        critic_head(agent.critic, s, cur_a[i], head) - out["current_log_pi"][i],
                    ]
                )
                lse = math.log(sum(math.exp(t) for t in terms.tolist()))
                q_data = critic_head(agent.critic, obs[i : i + 1], batch["actions"][i : i + 1], head).item()
                gaps.append(lse - q_data)
            assert out["cql_gap"][head].item() == pytest.approx(np.mean(gaps), rel=1e-10, abs=1e-10)
    td = out["td_loss"].item()
    assert out["critic_loss"].item() == pytest.approx(
        td + agent.config.cql_alpha * out["cql_gap"].sum().item()
    )


def test_penalty_without_importance_sampling_includes_the_data_action():
    g = torch.Generator().manual_seed(0)
    q_data = torch.randn(2, 4, generator=g, dtype=torch.float64)
    q_rand, q_next, q_cur = (torch.randn(2, 4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    lp = torch.randn(4, 3, generator=g, dtype=torch.float64)
    gap = cql_penalty(
        q_data, q_rand, q_next, q_cur, lp, lp, action_dim=2, temperature=2.0, importance_sample=False
    )
    for head in (0, 1):
        direct = []
        for i in range(4):
            terms = (
                [q_data[head, i].item()]
                + q_rand[head, i].tolist()
                + q_next[head, i].tolist()
                + q_cur[head, i].tolist()
            )
            direct.append(2.0 * math.log(sum(math.exp(t / 2.0) for t in terms)) - q_data[head, i].item())
        assert gap[head].item() == pytest.approx(np.mean(direct), rel=1e-12)
    clipped = cql_penalty(q_data, q_rand, q_next, q_cur, lp, lp, action_dim=2, clip_max=0.1)
    assert (clipped <= 0.1 + 1e-12).all()


@pytest.mark.parametrize("overrides", [{}, {"cql_lagrange": True, "cql_max_target_backup": True}])
def test_single_backward_gives_each_network_its_own_gradient(overrides):
    """The one backward over the summed losses equals separate backwards of each loss, as CORL does them."""
    agent = _agent64(**overrides)
    batch = _batch(3, 2, seed=2, dtype=torch.float64)
    groups = {
        "critic": (list(agent.critic.parameters()), "critic_loss"),
        "actor": (list(agent.actor.parameters()), "policy_loss"),
        "alpha": ([agent.log_alpha], "alpha_loss"),
    }
    if overrides:
        groups["alpha_prime"] = ([agent.log_alpha_prime], "alpha_prime_loss")
    torch.manual_seed(9)
    out = agent.compute_losses(batch)
    all_params = [p for params, _ in groups.values() for p in params]
    total_grads = torch.autograd.grad(out["total"], all_params, retain_graph=True, allow_unused=True)
    i = 0
    for name, (params, key) in groups.items():
        own = torch.autograd.grad(out[key], params, retain_graph=True, allow_unused=True)
        for g_total, g_own in zip(total_grads[i : i + len(params)], own, strict=True):
            assert g_own is not None, name
            torch.testing.assert_close(g_total, g_own, rtol=1e-12, atol=1e-12)
        i += len(params)


def test_bc_warmup_uses_dataset_log_likelihood():
    agent = _agent64(bc_steps=2)
    batch = _batch(3, 2, seed=3, dtype=torch.float64)
    torch.manual_seed(0)
    out = agent.compute_losses(batch)
    m, ls = agent.actor.mean_log_std(batch["observations"])
    lp_data = _corl_dist(m, ls).log_prob(batch["actions"]).sum(-1)
    expected = (out["alpha"] * out["log_pi"] - lp_data).mean()
    assert out["policy_loss"].item() == pytest.approx(expected.item(), rel=1e-8)


def test_update_metrics_and_targets():
    torch.manual_seed(0)
    agent = CQL(CQLConfig(**SMALL), 3, 2)
    before = [p.detach().clone() for p in agent.critic_target.parameters()]
    metrics = agent.update(_batch(3, 2))
    for v in metrics.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and torch.isfinite(v)
    for b, t, s in zip(before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(t, b + agent.config.tau * (s - b), rtol=0, atol=1e-6)
    assert agent.log_alpha.item() != 0.0  # the temperature took a step
    assert agent.log_alpha_prime.item() == 1.0  # Lagrange off: untouched


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = CQL(CQLConfig(**SMALL), 3, 2, obs_mean=np.ones(3), obs_std=np.full(3, 2.0))
    for t in range(3):
        a.update(_batch(3, 2, seed=t))
    torch.manual_seed(11)
    b = CQL(CQLConfig(**SMALL), 3, 2)
    b.load_state_dict(toy.round_trip(a.state_dict()))
    toy.assert_continues_identically(a, b, [_batch(3, 2, seed=30 + t) for t in range(2)], modules=["critic_target"])
    assert torch.equal(a.log_alpha, b.log_alpha)


def test_learns_point_goal_from_expert_heavy_data():
    # 3e-4 for the policy and temperature (CORL: 3e-5) so that a few hundred updates suffice
    cfg = CQLConfig(**SMALL, max_steps=700, actor_lr=3e-4, alpha_lr=3e-4)
    agent = toy.fit(CQL, cfg, n_expert=40, n_random=10, steps=cfg.max_steps)
    ret, rand, expert = toy.evaluate(agent.act), toy.random_return(), toy.expert_return()
    assert ret > rand + 0.5 * (expert - rand), (ret, rand, expert)


def test_corl_reference_update_runs():
    """The benchmark's re-creation of CORL's CQL step runs and logs finite values (guards it against rot)."""
    from tests.reference.corl import CorlCQL

    torch.manual_seed(0)
    ref = CorlCQL(3, 2, CQLConfig(**SMALL))
    log = ref.update(_batch(3, 2))
    assert all(math.isfinite(v) for v in log.values())
    assert log["cql_qf1_diff"] > 0  # logsumexp over 3k actions exceeds the data action's value at init
