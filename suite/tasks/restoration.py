"""Restoration tasks: a clean image data set, a deterministic degradation (``generative.degradations``) and
its seed; a method restores the degraded test images, scored by PSNR / SSIM against the clean ones.

Ids: ``<dataset>-<degradation name>-v0``, e.g. ``mnist-denoise50-v0``, ``mnist-inpaint-v0``,
``digits-8x8-sr4-v0``; ``cifar10-jpeg-*`` tasks are for development only (a lossy JPEG copy of the CIFAR-10 test
split, trained on its images 1000-9999, evaluated on 0-999), never for comparison with published CIFAR numbers.

The typed view of a task is :class:`RestorationSpec` (``restoration_spec(task)``); ``extra`` holds the same
as plain JSON so records stay self-describing. A change to a degradation, its parameters or seed, the split
or the image count is a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import TaskSpec, register

# dataset -> (short description, number of test images restored)
DATASETS = {
    "digits-8x8": ("8x8 digits (embedded; PSNR only, smaller than the SSIM window)", 360),
    "mnist": ("MNIST", 1000),
    "cifar10-jpeg": ("CIFAR-10 JPEG copy (development only)", 1000),
}
# degradation kind -> parameter sets (each one task); names come from generative.degradations
DEGRADATIONS: dict[str, list[dict[str, Any]]] = {
    "noise": [{"sigma": 25}, {"sigma": 50}],
    "blur": [{}],
    "motion-blur": [{}],
    "inpaint": [{}],
    "low-light": [{}],
    "jpeg": [{"quality": 10}],
    "downsample": [{"factor": 4}],
}
WHAT = {"noise": "Gaussian noise sigma {sigma:g}/255", "blur": "Gaussian blur", "motion-blur": "motion blur",
        "inpaint": "a missing box (~25% of the image)", "low-light": "low light", "jpeg": "JPEG quality {quality}",
        "downsample": "x{factor} bicubic down-sampling"}
LAM = 100.0 / 255.0  # the MR SDE's stationary std on [-1, 1] images (IR-SDE / MRS's 50/255 on [0, 1])


@dataclass(frozen=True)
class RestorationSpec:
    """dataset, degradation (kind + parameters), the degradation seed, test images, the MR SDE's lam."""

    dataset: str
    degradation: str
    params: tuple[tuple[str, Any], ...]
    seed: int = 0
    n_test: int = 1000
    lam: float = LAM

    def build_degradation(self):
        from generative.degradations import get_degradation

        return get_degradation(self.degradation, **dict(self.params))


def restoration_spec(task: TaskSpec) -> RestorationSpec:
    e = task.extra
    return RestorationSpec(e["dataset"], e["degradation"], tuple(sorted(e["degradation_params"].items())),
                           int(e["degradation_seed"]), int(e["n_test"]), float(e["lam"]))


def _register_all() -> None:
    from generative.degradations import get_degradation

    for ds, (desc, n_test) in DATASETS.items():
        for kind, variants in DEGRADATIONS.items():
            for params in variants:
                if ds == "digits-8x8" and kind in ("blur", "motion-blur"):
                    continue  # the default kernels need larger images than 8x8
                deg = get_degradation(kind, **params)
                register(TaskSpec(
                    id=f"{ds}-{deg.name}-v0", kind="restoration",
                    description=f"{desc}: undo {WHAT[kind].format(**deg.params_dict)}",
                    eval_episodes=0,
                    extra={"dataset": ds, "degradation": kind, "degradation_params": dict(deg.params_dict),
                           "degradation_seed": 0, "n_test": n_test, "lam": LAM, "metric": "psnr",
                           "lower_is_better": False},
                ))


_register_all()
