"""Data distributions whose perturbed marginals are known exactly, and exact distances to them.

For data p_0 = Σ_k w_k N(m_k, Σ_k) and a forward SDE with x_t = a_t x_0 + s_t z, every marginal is again a
Gaussian mixture, p_t = Σ_k w_k N(a_t m_k, a_t² Σ_k + s_t² I), with score
∇log p_t(x) = Σ_k r_k(x) [-(a_t² Σ_k + s_t² I)⁻¹ (x - a_t m_k)], r_k the responsibilities (computed with a
log-sum-exp). Each Σ_k is eigendecomposed once, Σ_k = U_k Λ_k U_kᵀ, so
a_t² Σ_k + s_t² I = U_k (a_t² Λ_k + s_t²) U_kᵀ costs nothing to invert at any t and per-sample times are
cheap. That lets samplers be scored exactly, separately from any network error (REFERENCE.md, "Exact test
problems").

Distances (all float64):

* :func:`gaussian_kl`, :func:`gaussian_w2` — closed forms between Gaussians. For Gaussian data and a
  linear score, the fixed-step samplers output an exact Gaussian
  (see ``sampler_study.exact_gaussian_output``).
* :func:`mmd2_to_mixture` — squared kernel MMD between samples and the *exact* mixture with a Gaussian
  kernel. The two expectations that involve the mixture are evaluated in closed form (a Gaussian kernel
  integrated against a Gaussian is a Gaussian), and the sample-sample term is the unbiased U-statistic, so
  the estimate is unbiased for the true MMD² of the sampler (no noise floor in expectation; its standard
  deviation shrinks like 1/n). It can be slightly negative when the sampler is nearly exact.
* ``GaussianMixture.log_prob`` — exact NLL of samples, reported alongside (not a divergence on its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from generative.sdes import SDE, Generators, gaussian_noise

__all__ = [
    "MRGaussian",
    "GaussianMixture",
    "gaussian",
    "gaussian_2d",
    "ring_gmm_2d",
    "gmm_64d",
    "gaussian_kl",
    "gaussian_w2",
    "mmd2_to_mixture",
    "default_lengthscale",
    "weight_error",
    "mode_w2",
]

_LOG_2PI = math.log(2 * math.pi)


def _per_sample(t: float | Tensor, n: int) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    return t.expand(n) if t.dim() == 0 else t.to(torch.float64)


class GaussianMixture:
    """Σ_k w_k N(m_k, Σ_k) in R^D (float64), with exact marginals under any :class:`~generative.sdes.SDE`.

    Inputs x may have any shape (B, ...) with prod(...) = D; outputs keep it.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = self.weights / self.weights.sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        K, D = self.means.shape
        if self.weights.shape != (K,) or self.covs.shape != (K, D, D):
            raise ValueError("weights (K,), means (K, D), covs (K, D, D) expected")
        self.covs = 0.5 * (self.covs + self.covs.transpose(-1, -2))
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs)  # (K, D), (K, D, D)
        if (self.eigvals <= 0).any():
            raise ValueError("covariances must be positive definite")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def cov(self) -> Tensor:
        d = self.means - self.mean()
        within = torch.einsum("k,kij->ij", self.weights, self.covs)
        return within + torch.einsum("k,ki,kj->ij", self.weights, d, d)

    # --- sampling --------------------------------------------------------------------------------------
    def sample(self, n: int, generator: Generators = None) -> Tensor:
        """n samples of p_0, shape (n, D). With per-sample generators, row i uses only generator i."""
        if generator is None or isinstance(generator, torch.Generator):
            k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
            z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        else:
            k = torch.cat([torch.multinomial(self.weights, 1, generator=g) for g in generator])
            z = gaussian_noise((n, self.dim), generator, dtype=torch.float64)
        root = self.eigvecs[k] * self.eigvals[k].sqrt()[:, None, :]  # U Λ^{1/2}
        return self.means[k] + torch.einsum("nij,nj->ni", root, z)

    def sample_marginal(self, sde: SDE, t: float | Tensor, n: int, generator: Generators = None) -> Tensor:
        """n samples of p_t = a_t p_0 + s_t N(0, I)."""
        x0 = self.sample(n, generator)
        tt = _per_sample(t, n)
        z = gaussian_noise((n, self.dim), generator, dtype=torch.float64)
        return sde.mean_coef(tt)[:, None] * x0 + sde.std(tt)[:, None] * z

    def marginal(self, sde: SDE, t: float) -> GaussianMixture:
        """p_t as a :class:`GaussianMixture` (one time)."""
        tt = torch.tensor([float(t)], dtype=torch.float64)
        a, s = sde.mean_coef(tt)[0], sde.std(tt)[0]
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, a * self.means, a**2 * self.covs + s**2 * eye)

    # --- exact densities and scores -----------------------------------------------------------------------
    def _components(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log N(x; a m_k, a²Σ_k + s² I) (B, K), rotated residuals y (B, K, D), variances
        (B, K, D)."""
        diff = x[:, None, :] - a[:, None, None] * self.means[None]  # (B, K, D)
        y = torch.einsum("kji,bkj->bki", self.eigvecs, diff)  # U_kᵀ (x - a m_k)
        var = a[:, None, None] ** 2 * self.eigvals[None] + s[:, None, None] ** 2
        logn = -0.5 * ((y**2 / var).sum(-1) + var.log().sum(-1) + self.dim * _LOG_2PI)
        return logn, y, var

    def _flatten(self, x: Tensor, t: float | Tensor, sde: SDE | None):
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} dimensions per sample, got {flat.shape[1]}")
        n = flat.shape[0]
        if sde is None:
            return flat, torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        tt = _per_sample(t, n)
        return flat, sde.mean_coef(tt), sde.std(tt)

    def log_prob(self, x: Tensor, sde: SDE | None = None, t: float | Tensor = 0.0) -> Tensor:
        """Exact log p_t(x), shape (B,); without ``sde`` the data density log p_0(x)."""
        flat, a, s = self._flatten(x, t, sde)
        logn, _, _ = self._components(flat, a, s)
        return torch.logsumexp(logn + self.weights.log(), dim=1)

    def score(self, x: Tensor, sde: SDE | None = None, t: float | Tensor = 0.0) -> Tensor:
        """Exact ∇_x log p_t(x), same shape as x (differentiable in x, for divergence checks)."""
        flat, a, s = self._flatten(x, t, sde)
        logn, y, var = self._components(flat, a, s)
        resp = torch.softmax(logn + self.weights.log(), dim=1)  # (B, K)
        comp = -torch.einsum("kij,bkj->bki", self.eigvecs, y / var)  # -(a²Σ + s²I)⁻¹ (x - a m_k)
        return (resp[:, :, None] * comp).sum(1).reshape(x.shape).to(x.dtype)

    def score_fn(self, sde: SDE):
        """The exact score model ``score_fn(x, t)`` of p_t under ``sde``."""
        return lambda x, t: self.score(x, sde, t)

    def noise_level_log_probs(self, x: Tensor, sigmas: Tensor) -> Tensor:
        """The exact noise-level classifier of Denoising MCMC: log p(j | x) (B, J) for x ~ p_0 * N(0, σ_j² I)
        with j uniform over the grid ``sigmas`` (J,), i.e. log p_{σ_j}(x) normalised over j (Bayes' rule).
        Costs B·K·D·J multiply-adds (no loop over levels)."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        sig2 = torch.as_tensor(sigmas, dtype=torch.float64, device=flat.device) ** 2
        diff = flat[:, None, :] - self.means[None]  # (B, K, D)
        y2 = torch.einsum("kji,bkj->bki", self.eigvecs, diff) ** 2  # (B, K, D)
        var = self.eigvals[:, :, None] + sig2[None, None, :]  # (K, D, J)
        quad = torch.einsum("bkd,kdj->bkj", y2, 1.0 / var)
        logn = -0.5 * (quad + var.log().sum(1)[None] + self.dim * _LOG_2PI)  # (B, K, J)
        log_pj = torch.logsumexp(logn + self.weights.log()[None, :, None], dim=1)  # (B, J)
        return torch.log_softmax(log_pj, dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """r_k(x) under p_0, shape (B, K)."""
        flat, a, s = self._flatten(x, 0.0, None)
        logn, _, _ = self._components(flat, a, s)
        return torch.softmax(logn + self.weights.log(), dim=1)


# --- factories ------------------------------------------------------------------------------------------
def gaussian(mean: Sequence[float] | Tensor, cov: Sequence[Sequence[float]] | Tensor) -> GaussianMixture:
    mean = torch.as_tensor(mean, dtype=torch.float64)
    return GaussianMixture(torch.ones(1), mean[None], torch.as_tensor(cov, dtype=torch.float64)[None])


def gaussian_2d() -> GaussianMixture:
    """N((1, -0.5), [[1, 0.6], [0.6, 0.5]]): correlated, anisotropic (eigenvalues ≈ 1.28 and 0.22)."""
    return gaussian([1.0, -0.5], [[1.0, 0.6], [0.6, 0.5]])


def ring_gmm_2d(n_modes: int = 8, radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """The "8 Gaussians" toy: equal-weight isotropic modes at radius 2 (neighbours 1.53 apart), std 0.2."""
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    covs = std**2 * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2)
    return GaussianMixture(torch.ones(n_modes), means, covs)


def gmm_64d(n_components: int = 4, dim: int = 64, seed: int = 0) -> GaussianMixture:
    """A seeded mixture in R^64 with full covariances.

    Means m_k ~ N(0, 0.5² I) (pairwise distances ≈ 5.7), Σ_k = 0.5 B_k B_kᵀ / D + 0.1 I with B_k standard
    normal (eigenvalues spread over ≈ [0.1, 2.1]), weights ∝ exp(0.5 ξ_k). Scale O(1) like centred images.
    """
    g = torch.Generator().manual_seed(seed)
    means = 0.5 * torch.randn(n_components, dim, generator=g, dtype=torch.float64)
    B = torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64)
    covs = 0.5 * B @ B.transpose(-1, -2) / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    weights = (0.5 * torch.randn(n_components, generator=g, dtype=torch.float64)).exp()
    return GaussianMixture(weights, means, covs)


# --- distances -----------------------------------------------------------------------------------------
def _sqrtm_psd(S: Tensor) -> Tensor:
    w, U = torch.linalg.eigh(0.5 * (S + S.T))
    return (U * w.clamp_min(0).sqrt()) @ U.T


def gaussian_kl(m0: Tensor, S0: Tensor, m1: Tensor, S1: Tensor) -> Tensor:
    """KL(N(m0, S0) ‖ N(m1, S1)) = ½[tr(S1⁻¹S0) + (m1-m0)ᵀS1⁻¹(m1-m0) - D + ln det S1 - ln det S0]."""
    m0, S0, m1, S1 = (torch.as_tensor(v, dtype=torch.float64) for v in (m0, S0, m1, S1))
    L1 = torch.linalg.cholesky(S1)
    d = (m1 - m0)[:, None]
    tr = torch.cholesky_solve(S0, L1).diagonal().sum()
    maha = (d * torch.cholesky_solve(d, L1)).sum()
    logdet1 = 2 * L1.diagonal().log().sum()
    logdet0 = torch.linalg.slogdet(S0)[1]
    return 0.5 * (tr + maha - m0.numel() + logdet1 - logdet0)


def gaussian_w2(m0: Tensor, S0: Tensor, m1: Tensor, S1: Tensor) -> Tensor:
    """W2(N(m0, S0), N(m1, S1)) = sqrt(|m0-m1|² + tr(S0 + S1 - 2 (S1^{½} S0 S1^{½})^{½}))."""
    m0, S0, m1, S1 = (torch.as_tensor(v, dtype=torch.float64) for v in (m0, S0, m1, S1))
    r1 = _sqrtm_psd(S1)
    cross = _sqrtm_psd(r1 @ S0 @ r1)
    w2sq = (m0 - m1).pow(2).sum() + (S0 + S1 - 2 * cross).diagonal().sum()
    return w2sq.clamp_min(0).sqrt()


def default_lengthscale(mixture: GaussianMixture) -> float:
    """sqrt of the weighted mean of tr(Σ_k): the typical within-component distance (0.28 for the ring)."""
    return float((mixture.weights * mixture.covs.diagonal(dim1=-2, dim2=-1).sum(-1)).sum().sqrt())


def mmd2_to_mixture(x: Tensor, mixture: GaussianMixture, lengthscale: float | None = None,
                    chunk: int = 2048) -> Tensor:
    """Unbiased estimate of MMD²(q, p) for samples x ~ q and the exact mixture p, kernel exp(-|x-y|²/2ℓ²).

    MMD² = E_qq k - 2 E_qp k + E_pp k with E_pp k and E_p k(x, ·) in closed form:
    E_{y~p} k(x, y) = (2πℓ²)^{D/2} Σ_k w_k N(x; m_k, Σ_k + ℓ²I) and
    E_pp k = (2πℓ²)^{D/2} Σ_jk w_j w_k N(m_j; m_k, Σ_j + Σ_k + ℓ²I); E_qq k is the U-statistic over i ≠ j.
    """
    ell = default_lengthscale(mixture) if lengthscale is None else float(lengthscale)
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    n, D = x.shape
    log_scale = 0.5 * D * math.log(2 * math.pi * ell**2)
    eye = torch.eye(D, dtype=torch.float64)
    smoothed = GaussianMixture(mixture.weights, mixture.means, mixture.covs + ell**2 * eye)
    e_qp = (log_scale + smoothed.log_prob(x)).exp().mean()
    S = mixture.covs[:, None] + mixture.covs[None] + ell**2 * eye  # (K, K, D, D)
    d = mixture.means[:, None] - mixture.means[None]
    L = torch.linalg.cholesky(S)
    sol = torch.cholesky_solve(d[..., None], L)[..., 0]
    logn = -0.5 * ((d * sol).sum(-1) + 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1) + D * _LOG_2PI)
    e_pp = (mixture.weights[:, None] * mixture.weights[None] * (log_scale + logn).exp()).sum()
    total = x.new_zeros(())
    for i in range(0, n, chunk):
        d2 = torch.cdist(x[i:i + chunk], x).pow(2)
        total = total + torch.exp(-0.5 * d2 / ell**2).sum()
    e_qq = (total - n) / (n * (n - 1))  # drop the diagonal k(x_i, x_i) = 1
    return e_qq - 2 * e_qp + e_pp


# --- low-noise metrics for ranking samplers near the floor ----------------------------------------------------
def weight_error(x: Tensor, mixture: GaussianMixture) -> float:
    """Total-variation distance between the mixture weights and the samples' mean responsibilities under the
    exact mixture: ½ Σ_k |mean_i r_k(x_i) - w_k|. Its noise for exact samples is O(sqrt(K / n)) times the
    responsibility spread, far below sliced W2's; it measures whether a sampler finds the modes in the
    right proportions."""
    r = mixture.responsibilities(x).mean(0)
    return float(0.5 * (r - mixture.weights).abs().sum())


def mode_w2(x: Tensor, mixture: GaussianMixture) -> float | None:
    """Weighted mean over components of W2 between the responsibility-weighted Gaussian fitted to the samples
    and the exact component N(m_k, Σ_k): measures the shape of each mode (spread, offset). None when a
    component holds fewer than 2·D samples' worth of responsibility (its covariance cannot be fitted)."""
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    r = mixture.responsibilities(flat)  # (B, K)
    total = 0.0
    for k in range(mixture.n_components):
        w = r[:, k]
        if float(w.sum()) < 2 * mixture.dim:
            return None
        w = w / w.sum()
        m = w @ flat
        d = flat - m
        S = (d * w[:, None]).T @ d
        total += float(mixture.weights[k]) * float(gaussian_w2(m, S, mixture.means[k], mixture.covs[k]))
    return total


class MRGaussian:
    """Exact restoration task for the mean-reverting SDE: clean pixels x0 ~ N(m, v) independently, the degraded
    image mu fixed. Under :class:`generative.sdes.MRSDE` x_t - mu ~ N(alpha_t (m - mu), alpha_t^2 v + sigma_t^2),
    so the posterior noise E[eps | x_t] = sigma_t (x_t - mean_t) / var_t is exact (and with it the data and
    velocity predictions), the PF-ODE maps z-scores to z-scores (``ode_endpoint``) and the reverse SDE keeps
    the marginals exact (``marginal``)."""

    def __init__(self, sde, m: float | Tensor, v: float | Tensor):
        self.sde = sde
        self.m = torch.as_tensor(m, dtype=torch.float64)
        self.v = torch.as_tensor(v, dtype=torch.float64)

    def marginal(self, mu: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """Mean and variance of x_t given mu."""
        tt = torch.tensor(float(t), dtype=torch.float64)
        a, s = self.sde.alpha(tt), self.sde.std(tt)
        return mu + a * (self.m - mu), a**2 * self.v + s**2

    def predict(self, param: str = "noise"):
        """``fn(x, mu, t)`` predicting ``param`` exactly (t of shape (B,))."""
        from generative.samplers.mrs import convert

        def fn(x: Tensor, mu: Tensor, t: Tensor) -> Tensor:
            tt = float(t.reshape(-1)[0])
            mean, var = self.marginal(mu, tt)
            eps = float(self.sde.std(torch.tensor(tt, dtype=torch.float64))) * (x - mean) / var
            return convert(eps.to(x.dtype), "noise", param, x, mu, tt, self.sde)

        return fn

    def ode_endpoint(self, x: Tensor, mu: Tensor, t_from: float, t_to: float) -> Tensor:
        """The exact PF-ODE solution at ``t_to`` from x at ``t_from``."""
        m0, v0 = self.marginal(mu, t_from)
        m1, v1 = self.marginal(mu, t_to)
        return m1 + torch.sqrt(v1 / v0) * (x - m0)
