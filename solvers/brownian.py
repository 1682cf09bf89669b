"""Brownian motion for SDE solves; every source of randomness is explicit.

Protocol used by the SDE solvers: ``increment(t, dt, levy=False)`` returns ``W(t + dt) - W(t)``
(shape ``(B, *noise_shape)``), or with ``levy=True`` the pair ``(dW, U)`` with
``U = ∫_t^{t+dt} (W_r - W_t) dr`` (needed by SRA1). ``t``/``dt`` are ``(B,)``; ``dt`` may be negative
(integration backwards in time) and is zero for samples that have finished.

* :class:`BrownianIncrements` draws fresh normals from a ``torch.Generator`` on every call: the fastest
  choice for fixed-step solves, but the path is only defined by the order of calls.
* :class:`BrownianInterval` is a *stateless* Brownian path that can be queried at any ``(t, dt)``: a
  virtual binary tree over ``[t0, t1]`` built with the Lévy (Brownian-bridge) construction, carrying the
  space-time Lévy area so that ``U`` is consistent too. The normals of a tree node come from a
  counter-based hash of ``(seed_i, node, element)``, so the same seed gives the same path in any query
  order, and sample ``i`` depends only on ``seeds[i]`` (and its own ``t0_i, t1_i``). Values are exact in law
  at the dyadic points of depth ``depth``; inside a leaf (width ``|t1 - t0| / 2**depth``) the conditional
  mean given the leaf's increment and Lévy area is used.
"""

from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply) on int64 tensors holding values in [0, 2**32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def safe_sqrt(a: torch.Tensor) -> torch.Tensor:
    """sqrt of a non-negative tensor via rsqrt (exact 0 at 0). Elementwise ``sqrt`` is dispatched to the
    thread pool even for tiny tensors in recent CPU builds of torch, which is slow on busy machines."""
    return a * torch.rsqrt(a + torch.finfo(a.dtype).tiny)


def _bview(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(v.shape[0], *([1] * (ndim - 1)))


class BrownianIncrements:
    """Independent increments drawn from ``generator`` at each call (call-order defined path)."""

    def __init__(self, shape, generator: torch.Generator, dtype=None, device=None):
        self.shape = tuple(shape)
        self.generator = generator
        self.dtype = dtype or torch.get_default_dtype()
        self.device = device if device is not None else generator.device
        self._key = None  # the last dt tensor seen, and its broadcastable sqrt(|dt|)
        self._sq = None

    def increment(self, t, dt, levy: bool = False):
        if dt is not self._key:  # fixed-step loops pass the same dt object for equal steps
            self._key, self._sq = dt, _bview(safe_sqrt(dt.abs()), len(self.shape))
        sq = self._sq
        dw = torch.randn(self.shape, generator=self.generator, dtype=self.dtype, device=self.device) * sq
        if not levy:
            return dw
        h = torch.randn(self.shape, generator=self.generator, dtype=self.dtype, device=self.device)
        h = h * (sq * (1.0 / math.sqrt(12.0)))
        return dw, _bview(dt, len(self.shape)) * (h + 0.5 * dw)


class BrownianInterval:
    """Queryable Brownian path on ``[t0, t1]`` per sample (see the module docstring).

    ``seed`` is an int (sample ``i`` then uses the pair ``(seed, i)``) or an int64 tensor ``(B,)`` of
    per-sample seeds. ``shape`` is ``(B, *noise_shape)``.
    """

    def __init__(self, t0, t1, shape, seed, *, depth: int = 20, dtype=None, device=None):
        self.shape = tuple(shape)
        b = self.shape[0]
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if depth > 30:
            raise ValueError("depth must be <= 30")
        self.depth = depth
        kw = dict(dtype=self.dtype, device=self.device)
        self.t0 = torch.as_tensor(t0, **kw).expand(b).clone()
        t1 = torch.as_tensor(t1, **kw).expand(b)
        self.span = (t1 - self.t0).abs()
        self.sign = torch.where(t1 >= self.t0, 1.0, -1.0).to(**kw)
        if isinstance(seed, int):
            seeds = _hash32(torch.full((b,), seed & _M32, dtype=torch.int64, device=self.device)) ^ _hash32(
                torch.arange(b, dtype=torch.int64, device=self.device) + 0x632BE5AB
            )
        else:
            seeds = torch.as_tensor(seed, dtype=torch.int64, device=self.device)
            if seeds.shape != (b,):
                raise ValueError("seed tensor must have shape (B,)")
        self.seeds = _hash32(seeds)
        n = math.prod(self.shape[1:])
        j = torch.arange(n, dtype=torch.int64, device=self.device)
        self._elem_a = _hash32(2 * j + 0x3C6EF372)
        self._elem_b = _hash32(2 * j + 0x1B873593)
        # root: W over the whole span and its space-time Levy area H
        z1, z2 = self._normals(torch.zeros(b, dtype=torch.int64, device=self.device))
        sq = self.span.sqrt().unsqueeze(-1)
        self._w_root = z1 * sq
        self._h_root = z2 * sq / math.sqrt(12.0)

    def _normals(self, node: torch.Tensor):
        """Two standard normals per element for tree node ``node`` (heap index) of each sample."""
        key = _hash32(self.seeds ^ _hash32(node)).unsqueeze(-1)
        ua = (_hash32(key ^ self._elem_a).to(self.dtype) + 0.5) * (1.0 / 2**32)
        ub = (_hash32(key ^ self._elem_b).to(self.dtype) + 0.5) * (1.0 / 2**32)
        r = torch.sqrt(-2.0 * torch.log(ua))
        ang = (2.0 * math.pi) * ub
        return r * torch.cos(ang), r * torch.sin(ang)

    def _evaluate(self, u: torch.Tensor):
        """(W(u), K(u)) with u = |t - t0| in [0, span], K(u) = ∫_0^u W; flat (B, N)."""
        b = self.shape[0]
        u = torch.minimum(torch.clamp(u, min=0.0), self.span)
        a = torch.zeros_like(u)
        h = self.span.clone()
        wa = torch.zeros_like(self._w_root)
        ka = torch.zeros_like(self._w_root)
        wi, hi = self._w_root, self._h_root
        node = torch.ones(b, dtype=torch.int64, device=self.device)
        for _ in range(self.depth):
            z1, z2 = self._normals(node)
            sqh = h.sqrt().unsqueeze(-1)
            # split (W, H) of [a, a+h] at the midpoint, conditioned on both (Levy construction)
            alpha = 1.5 * hi + 0.25 * sqh * z1
            w1 = 0.5 * wi + alpha
            hb = hi - 0.5 * alpha
            hc = sqh * z2 * (1.0 / math.sqrt(48.0))
            h1, h2 = hb + hc, hb - hc
            half = 0.5 * h
            right = u >= a + half
            rc = right.unsqueeze(-1)
            ka = torch.where(rc, ka + half.unsqueeze(-1) * (wa + h1 + 0.5 * w1), ka)
            wa = torch.where(rc, wa + w1, wa)
            wi = torch.where(rc, wi - w1, w1)
            hi = torch.where(rc, h2, h1)
            a = torch.where(right, a + half, a)
            node = 2 * node + right.long()
            h = half
        f = ((u - a) / h).unsqueeze(-1)
        hh = h.unsqueeze(-1)
        w = wa + f * wi + 6.0 * f * (1.0 - f) * hi
        k = ka + hh * (f * wa + 0.5 * f * f * wi + (3.0 * f * f - 2.0 * f * f * f) * hi)
        return w, k

    def evaluate(self, t) -> torch.Tensor:
        """W(t) - W(t0), shape (B, *noise_shape)."""
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device).expand(self.shape[0])
        w, _ = self._evaluate((t - self.t0).abs())
        return w.view(self.shape)

    def increment(self, t, dt, levy: bool = False):
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device).expand(self.shape[0])
        dt = torch.as_tensor(dt, dtype=self.dtype, device=self.device).expand(self.shape[0])
        us = (t - self.t0).abs()
        ut = (t + dt - self.t0).abs()
        ws, ks = self._evaluate(us)
        wt, kt = self._evaluate(ut)
        dw = (wt - ws).view(self.shape)
        if not levy:
            return dw
        uu = self.sign.unsqueeze(-1) * (kt - ks - (ut - us).unsqueeze(-1) * ws)
        return dw, uu.view(self.shape)
