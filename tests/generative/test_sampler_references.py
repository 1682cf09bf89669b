"""Sampler pieces against independent references (closed forms written out here), to kill the mutants that
survived test_samplers.py (`tox -e mutation`, see tox.ini).

Equivalent mutants left alive:
- karras_sigmas, ``device=device`` dropped or set to None in its three tensor constructors (σmax, the index
  ramp, σmin; 6 mutants): the default device is the CPU, which is what the tests run on (a CUDA run would tell
  them apart; the GPU tests do not build schedules).
"""

import numpy as np
import pytest
import torch

from generative.samplers.karras import karras_sigmas


def _edm_sigmas(smax, smin, n_levels, rho):
    """Karras et al. 2022, eq. 5: σ_i = (σmax^(1/ρ) + i/(N-1) (σmin^(1/ρ) - σmax^(1/ρ)))^ρ for i < N, then σ_N = 0;
    here N - 1 = n_levels - 2 (the final 0 is one of the levels)."""
    n = n_levels - 1
    i = np.arange(n)
    levels = (smax ** (1 / rho) + i / max(n - 1, 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.append(levels, 0.0)


def test_karras_sigmas_is_the_edm_schedule_with_rho_7_by_default():
    got = karras_sigmas(80.0, 0.002, 6)
    assert got.dtype == torch.float64 and got.shape == (6,)
    np.testing.assert_allclose(got.numpy(), _edm_sigmas(80.0, 0.002, 6, 7.0), rtol=1e-13)
    np.testing.assert_allclose(karras_sigmas(80.0, 0.002, 6, rho=3.0).numpy(), _edm_sigmas(80.0, 0.002, 6, 3.0),
                               rtol=1e-13)
    # a σmax that float32 cannot hold: the schedule is computed in the requested dtype throughout
    np.testing.assert_allclose(karras_sigmas(0.3, 0.01, 4).numpy(), _edm_sigmas(0.3, 0.01, 4, 7.0), rtol=1e-14)


def test_karras_sigmas_shortest_schedules():
    two = karras_sigmas(0.3, 0.01, 2)  # one Euler step from σmax to 0
    assert two.dtype == torch.float64 and two.tolist() == [0.3, 0.0]
    three = karras_sigmas(0.3, 0.01, 3)
    np.testing.assert_allclose(three.numpy(), [0.3, 0.01, 0.0], rtol=1e-14)
    assert karras_sigmas(0.3, 0.01, 2, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2 levels"):
        karras_sigmas(0.3, 0.01, 1)


def test_karras_sigmas_batched_rows_are_the_single_schedules():
    smax = torch.tensor([80.0, 5.0, 0.3], dtype=torch.float64)
    got = karras_sigmas(smax, 0.002, 5)
    assert got.shape == (3, 5)
    for row, s in zip(got, smax.tolist(), strict=True):
        np.testing.assert_allclose(row.numpy(), _edm_sigmas(s, 0.002, 5, 7.0), rtol=1e-13)
    assert karras_sigmas(smax, 0.002, 2).shape == (3, 2)
