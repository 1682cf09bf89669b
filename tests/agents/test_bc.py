"""BC (CORL any-percent BC settings): learning on expert toy data, Gaussian option, state-dict round trip."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from agents.base import prepare_data
from agents.bc import BC, BCConfig
from tests.agents import toy

TINY = BCConfig(hidden=(32, 32), lr=1e-3, batch_size=128)


def test_defaults_follow_corl():
    c = BCConfig()
    assert (c.hidden, c.lr, c.batch_size, c.max_steps, c.eval_every, c.eval_episodes) == (
        (256, 256), 3e-4, 256, 1_000_000, 5000, 10)
    assert c.normalize_observations and c.policy == "deterministic"
    with pytest.raises(ValueError):
        BCConfig(policy="diffusion")


@pytest.mark.parametrize("policy", ["deterministic", "gaussian"])
def test_learns_from_expert_data(policy):
    arrays, ends = toy.make_dataset(30, 0)
    cfg = replace(TINY, policy=policy)
    prep = prepare_data(arrays, normalize_observations=True, reward_transform=cfg.reward_transform,
                        episode_ends=ends)
    torch.manual_seed(0)
    agent = BC(cfg, toy.OBS_DIM, toy.ACT_DIM, obs_mean=prep.obs_mean, obs_std=prep.obs_std)
    toy.train(agent, prep.arrays, 800, batch_size=cfg.batch_size, seed=0)
    rand, expert, ret = toy.random_return(), toy.expert_return(), toy.evaluate(agent.act)
    assert ret > rand + 0.7 * (expert - rand), (ret, rand, expert)


def test_mse_loss_and_metrics():
    torch.manual_seed(1)
    agent = BC(TINY, 3, 2)
    obs, act = torch.randn(16, 3), torch.rand(16, 2) * 2 - 1
    expected = ((agent.policy(obs) - act) ** 2).mean()
    metrics = agent.update({"observations": obs, "actions": act, "rewards": torch.zeros(16),
                            "next_observations": obs, "terminals": torch.zeros(16)})
    loss = metrics["policy_loss"]
    assert loss.dim() == 0 and not loss.requires_grad
    torch.testing.assert_close(loss, expected.detach())


def test_state_dict_round_trip():
    torch.manual_seed(2)
    arrays, _ = toy.make_dataset(5, 0)  # 200 transitions: six batches of 32
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    batches = [{k: v[i * 32:(i + 1) * 32] for k, v in tensors.items()} for i in range(6)]
    a = BC(replace(TINY, policy="gaussian"), 2, 2, obs_mean=torch.ones(2), obs_std=2 * torch.ones(2))
    for b in batches[:3]:
        a.update(b)
    state = copy.deepcopy(a.state_dict())
    b_agent = BC(replace(TINY, policy="gaussian"), 2, 2)
    b_agent.load_state_dict(state)
    obs = torch.randn(5, 2)
    assert torch.equal(a.act(obs), b_agent.act(obs))
    for b in batches[3:]:
        assert torch.equal(a.update(b)["policy_loss"], b_agent.update(b)["policy_loss"])
    assert torch.equal(a.act(obs), b_agent.act(obs))
