"""Image-sample metrics: Fréchet distance and KID on a feature network, PSNR and SSIM, sample grids.

* ``fd-lenet``: Fréchet distance between Gaussian fits of the penultimate features of the suite's own
  LeNet classifier (:mod:`generative.models.classifier`), trained on the same data set. It is **not** FID
  and its values are not comparable to published FIDs; it ranks models on the same data set.
* KID: unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random
  subsets (Bińkowski et al. 2018).
* Inception FID only when the user supplies a TorchScript Inception-v3 file (e.g. NVIDIA's
  ``inception-2015-12-05.pt``); images are resized to 299×299 and 2048 pool features are used.
* PSNR and SSIM (Wang et al. 2004 / skimage ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``) for restoration tasks.

(Exact W2/KL on analytic tasks live with the analytic distributions.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kid",
    "extract_features",
    "InceptionFeatures",
    "psnr",
    "ssim",
    "save_image_grid",
]


def _np64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N - 1) covariance of features (N, d), in float64."""
    f = _np64(features)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 - μ2‖² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^{1/2}) in float64.

    tr (Σ1 Σ2)^{1/2} is computed as tr (A Σ2 A)^{1/2} with A = Σ1^{1/2} (same eigenvalues, but a symmetric
    positive semi-definite matrix, so symmetric eigen-decompositions suffice): this stays accurate when the
    covariances are singular, as they are for ReLU features with dead units, where ``scipy.linalg.sqrtm``
    of the non-symmetric product warns and loses accuracy.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = a @ sigma2 @ a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean, 0.0))


def frechet_distance(features1, features2) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N1, d) and (N2, d)."""
    return frechet_distance_from_stats(*gaussian_stats(features1), *gaussian_stats(features2))


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(features1, features2, *, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0
        ) -> tuple[float, float]:
    """Kernel inception distance on any features: mean and std over ``n_subsets`` random subsets (without
    replacement, size ``min(subset_size, N1, N2)``) of the unbiased MMD² with kernel (xᵀy/d + 1)³."""
    x, y = _np64(features1), _np64(features2)
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    vals = np.array([
        _poly_mmd2_unbiased(x[rng.choice(x.shape[0], m, replace=False)], y[rng.choice(y.shape[0], m, replace=False)])
        for _ in range(n_subsets)
    ])
    return float(vals.mean()), float(vals.std())


@torch.no_grad()
def extract_features(feature_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     batch_size: int = 500, device: str | torch.device | None = None) -> torch.Tensor:
    """``feature_fn`` applied in batches; returns float64 CPU features (N, d)."""
    out = []
    for i in range(0, images.shape[0], batch_size):
        b = images[i:i + batch_size]
        if device is not None:
            b = b.to(device)
        out.append(feature_fn(b).double().cpu())
    return torch.cat(out)


class InceptionFeatures:
    """2048-d pool features of a user-supplied TorchScript Inception-v3 (for standard FID on a GPU).

    Expects NVIDIA's ``inception-2015-12-05.pt`` convention (input float in [0, 255], NCHW 3 channels,
    called with ``return_features=True``); other TorchScript files that map [0, 255] images to
    (B, 2048) features when called as ``model(x)`` work too. Images in [-1, 1] with 1 or 3 channels are
    converted and resized (bilinear) to 299×299 here.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception TorchScript file not found: {path}")
        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate((x.clamp(-1, 1) + 1.0) * 127.5, size=(299, 299), mode="bilinear", align_corners=False)
        try:
            f = self.model(x, return_features=True)
        except (RuntimeError, TypeError):
            f = self.model(x)
        return f.reshape(f.shape[0], -1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image (B,), in dB, by scikit-image (``peak_signal_noise_ratio``);
    ``data_range`` 2 for images in [-1, 1]. Identical images give +inf."""
    from skimage.metrics import peak_signal_noise_ratio

    xs, ys = _np64(x), _np64(y)
    with np.errstate(divide="ignore"):
        return torch.tensor([peak_signal_noise_ratio(b, a, data_range=data_range) for a, b in zip(xs, ys, strict=True)],
                            dtype=torch.float64)


SSIM_KERNEL = 11  # skimage's Gaussian window at sigma 1.5 (truncate 3.5)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, *, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity per image (B,) for NCHW images, by scikit-image:
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)``
    (Wang et al. 2004's Gaussian-window SSIM; local statistics averaged over the positions whose window lies
    inside the image, channels averaged). scikit-image rather than torchmetrics: torchmetrics 1.9 averages
    over a different border region and disagrees on small images (0.322 vs 0.249 on a 24x20 test image).
    Images smaller than the window are refused (8x8 digits: report PSNR only)."""
    from skimage.metrics import structural_similarity

    H, W = x.shape[-2:]
    if H < SSIM_KERNEL or W < SSIM_KERNEL:
        raise ValueError(f"images of {H}×{W} are smaller than the {SSIM_KERNEL}-tap SSIM window")
    xs, ys = _np64(x), _np64(y)
    vals = [structural_similarity(a, b, gaussian_weights=True, sigma=sigma, use_sample_covariance=False,
                                  data_range=data_range, channel_axis=0) for a, b in zip(xs, ys, strict=True)]
    return torch.tensor(vals, dtype=torch.float64)


def save_image_grid(x: torch.Tensor, path: str | os.PathLike, nrow: int = 8, padding: int = 1,
                    scale: int = 1) -> Path:
    """Save images (N, C, H, W) in [-1, 1] as a PNG grid with ``nrow`` images per row (PIL).
    ``scale`` enlarges each pixel (nearest) so 8×8 digits stay visible."""
    from PIL import Image

    x = ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    N, C, H, W = x.shape
    ncol = nrow
    nrows = math.ceil(N / ncol)
    grid = torch.zeros((C, nrows * (H + padding) + padding, ncol * (W + padding) + padding), dtype=torch.uint8)
    for i in range(N):
        r, c = divmod(i, ncol)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top:top + H, left:left + W] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[:, :, 0], mode="L") if C == 1 else Image.fromarray(arr, mode="RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
