"""Interpolated control paths for CDEs (as in torchcde).

``LinearInterpolation(ts, xs)`` is piecewise linear. ``HermiteCubicInterpolation(ts, xs)`` is the cubic
Hermite spline with *backward differences*: on ``[t_i, t_{i+1}]`` the knot derivatives are
``(x_i - x_{i-1}) / (t_i - t_{i-1})`` and ``(x_{i+1} - x_i) / (t_{i+1} - t_i)``, so the path is C¹ and
its value on an interval depends only on observations up to its right end (online/causal use).
``ts`` is a shared ``(L,)`` grid, ``xs`` is ``(B, L, channels)``; both paths can be evaluated and
differentiated at per-sample times ``t`` of shape ``(B,)``.
"""

from __future__ import annotations

import torch


class _Path:
    def __init__(self, ts: torch.Tensor, xs: torch.Tensor):
        if ts.dim() != 1 or xs.dim() != 3 or xs.shape[1] != ts.shape[0]:
            raise ValueError("need ts (L,) and xs (B, L, channels)")
        self.ts = ts
        self.xs = xs
        self.h = ts[1:] - ts[:-1]  # (L-1,)
        self.slopes = (xs[:, 1:] - xs[:, :-1]) / self.h.view(1, -1, 1)  # (B, L-1, C)

    def _locate(self, t):
        t = torch.as_tensor(t, dtype=self.ts.dtype, device=self.ts.device).expand(self.xs.shape[0])
        idx = torch.searchsorted(self.ts, t.contiguous(), right=True) - 1
        idx = idx.clamp(0, self.ts.shape[0] - 2)
        frac = (t - self.ts[idx]) / self.h[idx]
        return idx, frac

    @staticmethod
    def _gather(a, idx):
        return a.gather(1, idx.view(-1, 1, 1).expand(-1, 1, a.shape[2])).squeeze(1)


class LinearInterpolation(_Path):
    def evaluate(self, t):
        idx, frac = self._locate(t)
        return self._gather(self.xs, idx) + frac.unsqueeze(-1) * self.h[idx].unsqueeze(-1) * self._gather(
            self.slopes, idx
        )

    def derivative(self, t):
        idx, _ = self._locate(t)
        return self._gather(self.slopes, idx)


class HermiteCubicInterpolation(_Path):
    def __init__(self, ts, xs):
        super().__init__(ts, xs)
        # derivative at the left knot of interval i: backward difference (interval i-1), first one forward
        self.m0 = torch.cat([self.slopes[:, :1], self.slopes[:, :-1]], dim=1)
        self.m1 = self.slopes

    def _coeffs(self, t):
        idx, s = self._locate(t)
        h = self.h[idx].unsqueeze(-1)
        x0 = self._gather(self.xs, idx)
        m0, m1, d = (self._gather(a, idx) for a in (self.m0, self.m1, self.slopes))
        # p(s) = x0 + h m0 s + (3 d - 2 m0 - m1) h s^2 + (m0 + m1 - 2 d) h s^3 with s in [0, 1]
        c2 = (3 * d - 2 * m0 - m1) * h
        c3 = (m0 + m1 - 2 * d) * h
        return s.unsqueeze(-1), h, x0, m0, c2, c3

    def evaluate(self, t):
        s, h, x0, m0, c2, c3 = self._coeffs(t)
        return x0 + s * (h * m0 + s * (c2 + s * c3))

    def derivative(self, t):
        s, h, _, m0, c2, c3 = self._coeffs(t)
        return m0 + s * (2 * c2 + 3 * s * c3) / h
