"""Two classifiers trained here: a small LeNet whose penultimate layer is the feature space of
``fd-lenet``/KID, and the noise-level classifier of Denoising MCMC.

The suite trains the LeNet on the same data set as the generative model (there are no pretrained feature
networks offline), once per data set, and caches it.

:class:`NoiseLevelClassifier` predicts which of J VE noise levels σ_j produced x = x_0 + σ_j ε (official
DMCMC: a small CNN, 4 convs 32→256, average pool, linear to J; cross-entropy with j uniform, Adam 1e-3,
batch 100), so that its softmax approximates p(j | x) under a uniform prior on the grid. Deviation: the
network sees x / rms(x) plus a constant channel log rms(x), so that inputs of scale σmax ≈ 20-50 and 0.01 are
both well conditioned while the scale, which carries most of the information about σ, is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LeNetClassifier", "train_classifier", "NoiseLevelClassifier", "train_noise_classifier"]


class LeNetClassifier(nn.Module):
    """Two conv stages (two 3×3 convs + max-pool each), adaptive average pool to 2×2, then
    ``Linear → ReLU`` (the ``feature_dim`` features) and a linear read-out to ``n_classes`` logits.
    Works for any image size ≥ 4 (8×8 digits, 28×28 MNIST, 32×32 CIFAR-10)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        w = width
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(8 * w, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim) for images in [-1, 1]."""
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    n_classes: int | None = None,
    callback: Callable[[int, int, float], None] | None = None,
) -> LeNetClassifier:
    """Train a :class:`LeNetClassifier` with Adam and cross-entropy; deterministic given ``seed``.

    ``callback(step, total_steps, loss)`` is called after every step (for progress bars).
    Returns the model in eval mode on ``x``'s device.
    """
    g = torch.Generator().manual_seed(seed)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LeNetClassifier(x.shape[1], n_classes).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total, step = n_epochs * steps_per_epoch, 0
    model.train()
    for _ in range(n_epochs):
        perm = torch.randperm(n, generator=g).to(x.device)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if callback is not None:
                callback(step, total, float(loss))
    return model.eval()


class NoiseLevelClassifier(nn.Module):
    """Logits over J noise levels for images (B, C, H, W): 4 convs (32, 64, 128, 256; the middle two with
    stride 2), SiLU, global average pool, linear read-out."""

    def __init__(self, in_channels: int = 1, n_levels: int = 1000, width: int = 32):
        super().__init__()
        w = width
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels + 1, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(4 * w, 8 * w, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(8 * w + 1, n_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.flatten(1).pow(2).mean(1).add(1e-12).sqrt()
        log_rms = rms.log()
        scale_map = log_rms.view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        h = self.conv(torch.cat([x / rms.view(-1, 1, 1, 1), scale_map], 1)).flatten(1)
        return self.head(torch.cat([h, log_rms[:, None]], 1))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self(x.float()), dim=1).to(x.dtype)


def train_noise_classifier(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    n_steps: int = 3000,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    callback: Callable[[int, int, float], None] | None = None,
) -> NoiseLevelClassifier:
    """Train a :class:`NoiseLevelClassifier` on data ``x`` (N, C, H, W) for the grid ``sigmas`` (J,) by
    cross-entropy on x_0 + σ_j ε with j uniform (official recipe); deterministic given ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NoiseLevelClassifier(x.shape[1], len(sigmas)).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sig = sigmas.to(x.device, torch.float32)
    model.train()
    for step in range(1, n_steps + 1):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g).to(x.device)
        j = torch.randint(0, len(sig), (batch_size,), generator=g).to(x.device)
        eps = torch.randn(x[idx].shape, generator=g).to(x.device)
        xn = x[idx] + sig[j].view(-1, 1, 1, 1) * eps
        loss = F.cross_entropy(model(xn), j)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if callback is not None:
            callback(step, n_steps, float(loss.detach()))
    return model.eval()
