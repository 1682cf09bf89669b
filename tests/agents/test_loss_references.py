"""The agents' module-level loss pieces against independent references (scipy, the networks' own forward,
the definition of orthogonal initialisation), and the one Gaussian head's densities in `agents.nets` that BC,
IQL, O-DICE, CQL and SAC share, written to kill the mutants that survived the per-agent tests
(`tox -e mutation`, see tox.ini).

Mutants left alive on purpose, because they are equivalent (no input within the function's contract tells
them apart):
- iql.expectile_loss, ``diff < 0`` -> ``diff <= 0``: at diff = 0 the weight multiplies diff² = 0, and the
  gradient 2·w·diff is 0 as well, whichever weight is taken.
- cql.cql_penalty, ``gap.mean(-1)`` -> ``gap.mean(+1)``: the gap is (n, B) by contract (q_data is (n, B)), so
  axis 1 is axis -1.
- td3bc.critic_head, ``cat(dim=-1)`` -> ``cat(dim=+1)`` and ``squeeze(-1)`` -> ``squeeze(+1)``: torch.addmm only
  takes 2-D inputs, so obs/action are (B, d) and the output (B, 1): axis 1 is axis -1 in both places.
"""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from agents import cql, nets, td3bc
from agents.cql import CQLConfig
from agents.nets import EnsembleCritic, EnsembleLinear


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gaussian_log_prob_matches_scipy_on_batched_ensembles():
    """Summed over the *last* (action) axis for any leading shape: (K seeds, B, A) with K, B, A all different
    (a 2-D (B, A) input cannot tell sum(-1) from sum(1), nor shape[-1] from shape[1])."""
    k, b, a = 2, 5, 3
    mean, log_std, act = _rand(k, b, a, seed=1), 0.3 * _rand(k, b, a, seed=2), _rand(k, b, a, seed=3)
    want = stats.norm.logpdf(act.numpy(), loc=mean.numpy(), scale=np.exp(log_std.numpy())).sum(-1)
    got = nets.gaussian_log_prob(mean, log_std, act)
    assert got.shape == (k, b)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def _tanh_gaussian_reference(mean, log_std, actions, eps=1e-6):
    """log density of a = tanh(u), u ~ N(mean, std²): log N(atanh a) − log(1 − a²), with a clipped into
    [−1 + eps, 1 − eps] first (change of variables; float64 keeps 1 − a² ≈ 2e-6 exact enough)."""
    a = np.clip(actions, -1 + eps, 1 - eps)
    u = np.arctanh(a)
    return (stats.norm.logpdf(u, loc=mean, scale=np.exp(log_std)) - np.log1p(-(a**2))).sum(-1)


def test_tanh_gaussian_log_prob_clips_boundary_and_outside_actions():
    """Actions at exactly ±1 (the box edges, common in datasets) and beyond are clipped to ±(1 − eps) before
    atanh; without the clip (or with a wrong bound) atanh gives ±inf or nan."""
    actions = torch.tensor([[1.0, -1.0], [1.5, -1.5], [0.3, -0.999]], dtype=torch.float64)
    mean, log_std = 0.2 * _rand(3, 2, seed=4), 0.1 * _rand(3, 2, seed=5)
    got = nets.tanh_gaussian_log_prob(mean, log_std, actions)
    want = _tanh_gaussian_reference(mean.numpy(), log_std.numpy(), actions.numpy())
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)


def _penalty_reference(q_data, q_rand, q_next, q_cur, next_lp, cur_lp, action_dim, temp, importance, lo, hi):
    """CQL(H)'s gap per head, from the formula in the CQL paper / CORL (numpy + scipy logsumexp)."""
    if importance:
        parts = [q_rand - action_dim * math.log(0.5), q_next - next_lp[None], q_cur - cur_lp[None]]
    else:
        parts = [q_rand, q_data[..., None], q_next, q_cur]
    gap = temp * special.logsumexp(np.concatenate(parts, -1) / temp, axis=-1) - q_data
    gap = np.clip(gap, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
    return gap.mean(-1)


def _penalty_inputs(n=2, b=6, k=3):
    return (_rand(n, b, seed=6), _rand(n, b, k, seed=7), _rand(n, b, k, seed=8), _rand(n, b, k, seed=9),
            _rand(b, k, seed=10), _rand(b, k, seed=11))


def test_cql_penalty_defaults_are_the_configs_and_match_the_formula():
    """Called with its defaults, cql_penalty is the importance-sampled log-sum-exp at temperature 1: the
    values CQLConfig (and CORL) default to."""
    cfg = CQLConfig()
    args = _penalty_inputs()
    got = cql.cql_penalty(*args, action_dim=3)
    want = _penalty_reference(*(a.numpy() for a in args), 3, cfg.cql_temp, cfg.cql_importance_sample, None, None)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("lo,hi", [(3.2, None), (None, 2.8), (2.6, 3.4)])
def test_cql_penalty_clips_each_sample_on_either_side(lo, hi):
    args = _penalty_inputs()
    got = cql.cql_penalty(*args, action_dim=2, temperature=0.7, clip_min=lo, clip_max=hi)
    want = _penalty_reference(*(a.numpy() for a in args), 2, 0.7, True, lo, hi)
    unclipped = _penalty_reference(*(a.numpy() for a in args), 2, 0.7, True, None, None)
    assert not np.allclose(want, unclipped)  # the clip binds on these inputs (their gaps are 1.06-5.23)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_orthogonal_init_gains_per_layer_and_head():
    """Orthogonal with gain g means every singular value of each head's weight equals g: √2 for the hidden
    layers, 1e-2 for the output layer (CORL's init); biases zero."""
    torch.manual_seed(0)
    critic = EnsembleCritic(4, 2, n=3, hidden=(8, 6))
    cql.orthogonal_init_(critic)
    layers = [m for m in critic.modules() if isinstance(m, EnsembleLinear)]
    assert len(layers) == 3
    for i, layer in enumerate(layers):
        gain = 1e-2 if i == len(layers) - 1 else math.sqrt(2.0)
        for j in range(layer.n):
            s = torch.linalg.svdvals(layer.weight[j].detach().double())
            torch.testing.assert_close(s, torch.full_like(s, gain), rtol=1e-5, atol=1e-7)
        assert torch.count_nonzero(layer.bias) == 0
    w = torch.stack([layers[0].weight[j].detach().flatten() for j in range(3)])
    assert not torch.allclose(w[0], w[1])  # heads drawn independently


def test_critic_head_is_the_critics_own_head():
    """critic_head(critic, obs, a, index) equals the ensemble's forward at that head; the default is head 0."""
    torch.manual_seed(1)
    critic = EnsembleCritic(3, 2, n=2, hidden=(8, 8))
    obs, act = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    full = critic(obs, act)
    torch.testing.assert_close(td3bc.critic_head(critic, obs, act), full[0])
    torch.testing.assert_close(td3bc.critic_head(critic, obs, act, index=1), full[1])
