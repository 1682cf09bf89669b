"""K seeds as one stacked agent (`agents.stacked`): member k follows the single agent of seed k.

The maths is checked in float64, where the stacked update and K single updates differ only by rounding
(measured: at most ~1e-13 relative on parameters, Adam moments and losses after 100 updates on these small
networks), so a tolerance of rtol 1e-9 fails for any real difference (a reduction over the member dimension,
a member drawing another member's noise, a projection across members). Float32 is checked on the first 10
updates with rtol 1e-4 / atol 1e-5: batched kernels round differently, and over 100 updates Adam amplifies
those roundings (elements whose gradient is near zero) to ~1e-3 relative (measured: TD3+BC actor loss 7e-4,
O-DICE policy loss 9e-4), which is float noise, not a different algorithm."""

from __future__ import annotations

import pytest
import torch

from agents.bc import BC, BCConfig
from agents.cql import CQL, CQLConfig
from agents.iql import IQL, IQLConfig
from agents.odice import ODICE, ODICEConfig
from agents.stacked import LoopStack, SeedStack, rng_state, stack_agents
from agents.td3bc import TD3BC, TD3BCConfig

H = (16, 16)
CASES = {
    "odice": (ODICE, ODICEConfig(value_hidden=H, policy_hidden=H)),
    "odice-semi": (ODICE, ODICEConfig(value_hidden=H, policy_hidden=H, gradient="semi")),
    "odice-true": (ODICE, ODICEConfig(value_hidden=H, policy_hidden=H, gradient="true")),
    "iql": (IQL, IQLConfig(hidden=H, max_steps=200)),
    "td3bc": (TD3BC, TD3BCConfig(hidden=H)),
    "cql": (CQL, CQLConfig(critic_hidden=H, actor_hidden=H, cql_n_actions=3)),
    "bc": (BC, BCConfig(hidden=H)),
    "bc-gaussian": (BC, BCConfig(hidden=H, policy="gaussian")),
}
SEEDS = (0, 3, 7)
OBS, ACT, B = 5, 2, 8


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _batches(seed: int, n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1000 + seed)
    dt = torch.get_default_dtype()
    return [{
        "observations": torch.randn(B, OBS, generator=g, dtype=dt),
        "actions": torch.rand(B, ACT, generator=g, dtype=dt) * 1.8 - 0.9,
        "rewards": torch.randn(B, generator=g, dtype=dt),
        "next_observations": torch.randn(B, OBS, generator=g, dtype=dt),
        "terminals": (torch.rand(B, generator=g) < 0.1).to(dt),
    } for _ in range(n)]


def _build(cls, config, seed):
    """An agent built right after seeding (as the runner does) and the generator state it goes on with."""
    torch.manual_seed(seed)
    agent = cls(config, OBS, ACT)
    return agent, rng_state(torch.device("cpu"))


def _single_runs(cls, config, seeds, n):
    """Each seed's own agent and metrics, its noise from the global generator as in a single-seed run."""
    agents, metrics = [], []
    for s in seeds:
        agent, _ = _build(cls, config, s)
        metrics.append([agent.update(b) for b in _batches(s, n)])
        agents.append(agent)
    return agents, metrics


def _stacked_run(cls, config, seeds, n, stack=None):
    if stack is None:
        members, rngs = zip(*[_build(cls, config, s) for s in seeds], strict=True)
        stack = stack_agents(list(members), list(rngs), "cpu")
    streams = [_batches(s, n) for s in seeds]
    metrics = [stack.update({k: torch.stack([st[j][k] for st in streams]) for k in streams[0][0]})
               for j in range(n)]
    stack.sync()
    return stack, metrics


def _assert_close(a, b, rtol, atol, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], rtol, atol, f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, rtol, atol, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m: f"{path}: {m}")
    else:
        assert a == b, path


def _compare(singles, single_metrics, stack, stack_metrics, members, rtol, atol):
    for i, m in enumerate(members):
        _assert_close(singles[i].state_dict(), stack.agents[m].state_dict(), rtol, atol)
        for j, step in enumerate(single_metrics[i]):
            _assert_close(step, {k: v[m] for k, v in stack_metrics[j].items()}, rtol, atol, f"update {j}")


def _first_weight(state):
    return state if isinstance(state, torch.Tensor) else _first_weight(next(iter(state.values())))


@pytest.mark.parametrize("name", CASES)
def test_each_member_is_its_seeds_single_run_float64(name, float64):
    """100 updates for each agent; 20 for the variants (O-DICE semi/true gradient, Gaussian BC)."""
    cls, config = CASES[name]
    n = 20 if "-" in name else 100
    singles, single_metrics = _single_runs(cls, config, SEEDS[:2], n)
    stack, stack_metrics = _stacked_run(cls, config, SEEDS[:2], n)
    assert isinstance(stack, SeedStack)  # the vectorised path, not the one-after-another fallback
    _compare(singles, single_metrics, stack, stack_metrics, range(2), rtol=1e-9, atol=1e-12)
    # the seeds really differ (the comparison above is not between copies of one run)
    assert not torch.equal(*(_first_weight(a.state_dict()) for a in stack.agents))


@pytest.mark.parametrize("name", ["odice", "iql", "td3bc", "cql", "bc"])
def test_each_member_is_its_seeds_single_run_float32(name):
    cls, config = CASES[name]
    singles, single_metrics = _single_runs(cls, config, SEEDS[:2], 10)
    stack, stack_metrics = _stacked_run(cls, config, SEEDS[:2], 10)
    _compare(singles, single_metrics, stack, stack_metrics, range(2), rtol=1e-4, atol=1e-5)


def test_dropping_a_member_leaves_the_others_on_their_runs(float64):
    """`keep` (a diverged seed is dropped): the remaining members go on exactly as their single runs, from
    the synced state and optimizer moments of the larger stack."""
    cls, config = CASES["td3bc"]
    singles, single_metrics = _single_runs(cls, config, (0, 7), 20)
    stack, first = _stacked_run(cls, config, SEEDS, 10)
    stack = stack.keep([0, 2])
    streams = [_batches(s, 20)[10:] for s in (0, 7)]
    rest = [stack.update({k: torch.stack([st[j][k] for st in streams]) for k in streams[0][0]})
            for j in range(10)]
    stack.sync()
    for i in range(2):
        _assert_close(singles[i].state_dict(), stack.agents[i].state_dict(), 1e-9, 1e-12)
    _assert_close(single_metrics[1][-1], {k: v[1] for k, v in rest[-1].items()}, 1e-9, 1e-12)


def test_a_nan_member_does_not_reach_the_others(float64):
    cls, config = CASES["odice"]
    singles, _ = _single_runs(cls, config, (0, 7), 10)
    members, rngs = zip(*[_build(cls, config, s) for s in SEEDS], strict=True)
    stack = stack_agents(list(members), list(rngs), "cpu")
    with torch.no_grad():
        stack.params("value")[0][1].fill_(float("nan"))  # member 1 (seed 3) is broken
    stack, metrics = _stacked_run(cls, config, SEEDS, 10, stack)
    assert torch.isnan(metrics[-1]["policy_loss"][1]) and torch.isfinite(metrics[-1]["policy_loss"][[0, 2]]).all()
    for i, m in enumerate((0, 2)):
        _assert_close(singles[i].state_dict(), stack.agents[m].state_dict(), 1e-9, 1e-12)


def test_iql_with_dropout_runs_one_after_another():
    """Dropout draws inside the forward pass, which vmap cannot give each member's own stream: the K
    agents update in turn (LoopStack) and still reproduce their single runs exactly."""
    config = IQLConfig(hidden=H, actor_dropout=0.1, max_steps=10)
    singles, single_metrics = _single_runs(IQL, config, SEEDS, 5)
    stack, stack_metrics = _stacked_run(IQL, config, SEEDS, 5)
    assert type(stack) is LoopStack
    _compare(singles, single_metrics, stack, stack_metrics, range(len(SEEDS)), rtol=0, atol=0)
