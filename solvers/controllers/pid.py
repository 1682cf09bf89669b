"""Adaptive PID step-size controller with per-sample step sizes (Söderlind's PID form, as in diffrax).

With the scaled error norm ``e_n`` (RMS over each sample of ``err / (atol + rtol max(|y0|, |y1|))``)
and ``k`` the solver order, the proposed factor is

    safety · e_n^(−β1) · e_{n−1}^(−β2) · e_{n−2}^(−β3),
    β1 = (pcoeff + icoeff + dcoeff)/k, β2 = −(pcoeff + 2 dcoeff)/k, β3 = dcoeff/k,

clipped to ``[factormin, factormax]`` (``≤ 1`` after a rejection). ``pcoeff = dcoeff = 0, icoeff = 1``
(the default) is the classical integral controller. A step is accepted when ``e_n ≤ 1``; each sample
keeps its own ``t`` and ``dt``. A sample whose step would fall below ``dtmin`` stops with status
``STEP_SIZE_TOO_SMALL``. ``dt0=None`` selects the first step by Hairer's algorithm (two evaluations).

``check_every``: the loop asks the device "are all samples done?" only every ``check_every`` steps
(one host sync per check; default 8 on accelerators, 1 on CPU where a check costs nothing). Finished
samples take zero-length steps meanwhile, which cost compute but are not counted in their statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PIDController:
    rtol: float = 1e-3
    atol: float = 1e-6
    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    dtmin: float | None = None
    dtmax: float | None = None
    safety: float = 0.9
    factormin: float = 0.2
    factormax: float = 10.0
    check_every: int | None = None  # None: every step on CPU (a sync is free there), every 8 on GPUs
    adaptive = True

    @property
    def uses_history(self) -> bool:
        return self.pcoeff != 0.0 or self.dcoeff != 0.0

    def error_norm(self, err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        scale = torch.maximum(y0.abs(), y1.abs()).mul_(self.rtol).add_(self.atol)
        r = err / scale
        # vector_norm rather than sqrt: elementwise sqrt/exp run multi-threaded even on tiny tensors in
        # recent CPU builds, which costs milliseconds per call on a busy 2-core machine
        return torch.linalg.vector_norm(r.flatten(1), dim=1).mul_(r[0].numel() ** -0.5)

    def factor(self, errn, prev1, prev2, order: int, accept):
        """Step-size factor; ``errn`` must be NaN-free (NaN errors are mapped to inf by the loop)."""
        k = float(order)
        b1 = (self.pcoeff + self.icoeff + self.dcoeff) / k
        fac = errn.clamp(min=1e-12).pow_(-b1).mul_(self.safety)
        if not self.uses_history:
            # a rejected step has errn > 1, so safety * errn^(-b1) < 1 already
            return fac.clamp_(self.factormin, self.factormax)
        b2 = -(self.pcoeff + 2 * self.dcoeff) / k
        if b2 != 0.0:
            fac = fac * prev1.clamp(min=1e-12).pow(-b2)
        b3 = self.dcoeff / k
        if b3 != 0.0:
            fac = fac * prev2.clamp(min=1e-12).pow(-b3)
        upper = torch.where(accept, self.factormax, 1.0)
        return torch.minimum(fac.clamp_(min=self.factormin), upper)

    def update(self, err, y0, y1, dt_step, active, e1, e2, order: int, direction):
        """The one controller update every adaptive loop uses (eager and compiled alike).

        Returns ``(accept, dt_new, errn, small)`` per sample: ``accept`` (error norm ≤ 1, NaN rejected),
        the proposed next step (clipped to ``dtmax``; raised to ``dtmin`` after an accepted step), the error
        norm (for the PID history) and ``small`` (an active sample rejected with a proposal below ``dtmin``:
        it stops with ``STEP_SIZE_TOO_SMALL``; ``None`` without ``dtmin``).
        """
        errn = self.error_norm(err, y0, y1).nan_to_num(nan=float("inf"))
        accept = errn <= 1.0
        dt_new = dt_step * self.factor(errn, e1, e2, order, accept)
        if self.dtmax is not None:
            dt_new = dt_new.clamp(-self.dtmax, self.dtmax)
        small = None
        if self.dtmin is not None:
            small_dt = dt_new.abs() < self.dtmin
            small = active & ~accept & small_dt
            dt_new = torch.where(accept & active & small_dt, self.dtmin * direction, dt_new)
        return accept, dt_new, errn, small

    def initial_step(self, terms, t0, y0, direction, order: int, f0=None, span=None):
        """Hairer, Nørsett & Wanner (II.4) starting step, per sample; returns |dt| and #evaluations."""
        nf = 0
        if f0 is None:
            f0 = terms.vf(t0, y0)
            nf += 1
        scale = y0.abs() * self.rtol + self.atol

        def rms(x):
            return torch.linalg.vector_norm((x / scale).flatten(1), dim=1) * (x[0].numel() ** -0.5)

        d0, d1 = rms(y0), rms(f0)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp(min=1e-30))
        if span is not None:
            h0 = torch.minimum(h0, span)
        hd = h0 * direction
        f1 = terms.vf(t0 + hd, y0 + hd.view(-1, *([1] * (y0.dim() - 1))) * f0)
        nf += 1
        d2 = rms(f1 - f0) / h0
        dm = torch.maximum(d1, d2)
        h1 = torch.where(
            dm <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / dm.clamp(min=1e-30)) ** (1.0 / order)
        )
        h = torch.minimum(100 * h0, h1)
        if self.dtmax is not None:
            h = h.clamp(max=self.dtmax)
        return h, nf


def IController(rtol: float = 1e-3, atol: float = 1e-6, **kw) -> PIDController:
    """The integral controller: a PIDController with pcoeff = dcoeff = 0, icoeff = 1."""
    return PIDController(rtol=rtol, atol=atol, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, **kw)
