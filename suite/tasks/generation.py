"""Generation tasks: analytic distributions with exact scores (they rank samplers, no training) and image
datasets (train a score model here, then sample). `extra` holds what the generation runner needs."""

from __future__ import annotations

from . import TaskSpec, register

ANALYTIC = {
    "gmm-2d": ("ring_gmm_2d", "8 Gaussians on a ring (radius 2, std 0.2): exact score at every t"),
    "gmm-64d": ("gmm_64d", "64-D mixture of 4 full-covariance Gaussians (seeded): exact score at every t"),
}
IMAGES = {
    "digits-8x8": "scikit-learn's bundled 8x8 digits (1797 images, 16 grey levels): the embedded default",
    "mnist": "MNIST 28x28 from SUITE_DATA_DIR/mnist.npz or a torchvision download",
    "cifar10": "CIFAR-10 32x32 (torchvision download or a user's copy)",
    "cifar10-jpeg": "CIFAR-10 test split from a lossy JPEG copy (q~75): development only, never FID vs CIFAR-10",
}


def _generation_task(name: str, desc: str, **extra) -> TaskSpec:
    return TaskSpec(id=f"{name}-v0", kind="generation", description=desc, eval_episodes=0, extra=extra)


def _register_all() -> None:
    for name, (factory, desc) in ANALYTIC.items():
        register(_generation_task(
            name, desc, distribution=factory, n_samples=4096, metric="mmd2", lower_is_better=True,
            corrector_norm="batch" if name == "gmm-2d" else "sample",
            dmcmc_eta=0.05,  # chosen on gmm-64d from {0.05, 0.2} at NFE 10, seed 0
        ))
    for name, desc in IMAGES.items():
        # dmcmc_eta: the DLG Langevin step, chosen on digits from {0.01, 0.05, 0.2} at NFE 20, seed 0
        # (README, "Denoising MCMC"); the other image tasks are untuned and use it too
        register(_generation_task(name, desc, dataset=name, n_samples=1000, metric="fd_lenet", lower_is_better=True,
                                  dmcmc_eta=0.2))


_register_all()
