"""A small LeNet-style image classifier whose penultimate layer is the feature space of ``fd-lenet``/KID.

The suite trains it on the same data set as the generative model (there are no pretrained feature
networks offline), once per data set, and caches it. The noise-level classifier for DMCMC is separate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LeNetClassifier", "train_classifier"]


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
