"""Shared helpers for the solver tests (float64, one thread: the CI box is a busy 2-core machine)."""

import pytest
import torch

from tests.threads import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


class GridBrownian:
    """A Brownian path fixed on a fine uniform grid (increments and time integrals), queried exactly at
    grid-aligned (t, dt): lets convergence tests reuse one path at several step sizes cheaply."""

    def __init__(self, t0, t1, shape, fine_steps, seed):
        g = torch.Generator().manual_seed(seed)
        b = shape[0]
        self.t0, self.h, self.m = t0, (t1 - t0) / fine_steps, fine_steps
        dw = torch.randn(fine_steps, *shape, generator=g, dtype=torch.float64) * abs(self.h) ** 0.5
        hh = torch.randn(fine_steps, *shape, generator=g, dtype=torch.float64) * (abs(self.h) / 12) ** 0.5
        w = torch.cat([torch.zeros(1, *shape, dtype=torch.float64), dw.cumsum(0)])
        # K(t) = ∫_{t0}^t W: each fine cell adds h (W_left + H + dW / 2)
        cell = self.h * (w[:-1] + hh + 0.5 * dw)
        k = torch.cat([torch.zeros(1, *shape, dtype=torch.float64), cell.cumsum(0)])
        self.w, self.k, self.b = w, k, b

    def _at(self, table, t):
        i = torch.round((t - self.t0) / self.h).long().clamp(0, self.m)
        return table[i, torch.arange(self.b)]

    def value(self, t):
        return self._at(self.w, torch.as_tensor(t, dtype=torch.float64).expand(self.b))

    def increment(self, t, dt, levy=False):
        ws, wt = self._at(self.w, t), self._at(self.w, t + dt)
        if not levy:
            return wt - ws
        ks, kt = self._at(self.k, t), self._at(self.k, t + dt)
        u = kt - ks - dt.view(-1, *([1] * (ws.dim() - 1))) * ws
        return wt - ws, u


def fit_slope(hs, errs):
    x = torch.log(torch.tensor(hs, dtype=torch.float64))
    y = torch.log(torch.tensor(errs, dtype=torch.float64))
    xm, ym = x.mean(), y.mean()
    return float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
