"""Image data sets for score-model training and evaluation, as float tensors in [-1, 1], NCHW.

Names are distinct and never aliased:

* ``digits-8x8`` — scikit-learn's bundled ``load_digits()`` (1797 images, 16 grey levels 0..16 rescaled).
  Splits: ``train`` (indices i % 5 != 0), ``test`` (i % 5 == 0), ``all``.
* ``mnist`` — ``$SUITE_DATA_DIR/mnist.npz`` (uint8 ``x_train`` (60000, 28, 28), ``y_train``, ``x_test``,
  ``y_test``), else a torchvision download folder under ``root`` (``<root>/MNIST/raw`` idx files, read
  without torchvision), else — only with ``download=True`` — a fresh torchvision download into ``root``.
* ``cifar10`` — the standard python-pickle folder ``cifar-10-batches-py`` found in ``root`` or
  ``$SUITE_DATA_DIR``, else (``download=True``) a torchvision download into ``root``.
* ``cifar10-jpeg`` — ``$SUITE_DATA_DIR/cifar10_jpeg_test.npz`` (uint8 ``x_test`` (10000, 32, 32, 3),
  ``y_test``): the CIFAR-10 *test* split decoded from a lossy JPEG copy. Only ``split="test"`` exists; it
  is for development and smoke tests, never for FID against published CIFAR-10 statistics.

torchvision is imported lazily and only when a download is requested.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ImageDataset", "DatasetNotFoundError", "DATASETS", "load_image_dataset", "data_dir",
           "default_train_split"]

DATASETS = ("digits-8x8", "mnist", "cifar10", "cifar10-jpeg")


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are missing or unreadable; the message names the path and how to get it."""


@dataclass(frozen=True)
class ImageDataset:
    """``x``: float32 (N, C, H, W) in [-1, 1]; ``y``: int64 labels (N,); ``name``/``split`` as requested."""

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.x.shape[0]


def data_dir() -> Path | None:
    """``$SUITE_DATA_DIR`` as a path, or None when unset."""
    d = os.environ.get("SUITE_DATA_DIR")
    return Path(d) if d else None


def default_train_split(name: str) -> str:
    """The split a generative model trains on: ``test`` for ``cifar10-jpeg`` (the only one), else ``train``."""
    return "test" if name == "cifar10-jpeg" else "train"


def _to_tensor(images: np.ndarray, max_value: float, channels_last: bool) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    if x.dim() == 3:
        x = x[:, None]
    elif channels_last:
        x = x.permute(0, 3, 1, 2).contiguous()
    return x.mul_(2.0 / max_value).sub_(1.0)


def _split_arrays(name: str, split: str, xs: dict[str, np.ndarray], ys: dict[str, np.ndarray]):
    if split == "all":
        return np.concatenate([xs["train"], xs["test"]]), np.concatenate([ys["train"], ys["test"]])
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r} for {name}; expected 'train', 'test' or 'all'")
    return xs[split], ys[split]


def _load_npz(path: Path, name: str, expected: dict[str, tuple[int, ...]], how_to_get: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{name}: file not found: {path}. {how_to_get}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip/pickle/format errors
        raise DatasetNotFoundError(f"{name}: cannot read {path} ({type(e).__name__}: {e}). {how_to_get}") from e
    for key, tail in expected.items():
        if key not in arrays:
            raise DatasetNotFoundError(
                f"{name}: {path} has keys {sorted(arrays)} but is missing {key!r} "
                f"(expected {sorted(expected)}). {how_to_get}")
        a = arrays[key]
        if a.ndim != len(tail) or any(t not in (-1, s) for t, s in zip(tail, a.shape, strict=True)):
            raise DatasetNotFoundError(
                f"{name}: {path} key {key!r} has shape {a.shape}, expected {tail} (-1 = any). {how_to_get}")
        if key.startswith("x") and a.dtype != np.uint8:
            raise DatasetNotFoundError(f"{name}: {path} key {key!r} has dtype {a.dtype}, expected uint8. {how_to_get}")
    return arrays


# ---------------------------------------------------------------------------------------------- digits
def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images.astype(np.float32), d.target.astype(np.int64)
    idx = np.arange(len(labels))
    if split == "train":
        keep = idx % 5 != 0
    elif split == "test":
        keep = idx % 5 == 0
    elif split == "all":
        keep = np.ones_like(idx, dtype=bool)
    else:
        raise ValueError(f"unknown split {split!r} for digits-8x8; expected 'train', 'test' or 'all'")
    return _to_tensor(images[keep], 16.0, False), torch.from_numpy(labels[keep])


# ----------------------------------------------------------------------------------------------- mnist
_MNIST_HOW = ("Get it by setting SUITE_DATA_DIR to a folder holding mnist.npz (uint8 x_train (60000, 28, 28), "
              "y_train, x_test (10000, 28, 28), y_test), or pass root=<folder> with a torchvision MNIST "
              "download (root/MNIST/raw), or download=True to download with torchvision.")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DatasetNotFoundError(f"mnist: {path} is not an unsigned-byte idx file. {_MNIST_HOW}")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DatasetNotFoundError(f"mnist: {path} is truncated ({arr.size} bytes for shape {dims}). {_MNIST_HOW}")
    return arr.reshape(dims)


def _mnist_raw(raw: Path) -> dict[str, np.ndarray] | None:
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    out = {}
    for key, stem in names.items():
        for cand in (raw / stem, raw / f"{stem}.gz"):
            if cand.is_file():
                out[key] = _read_idx(cand)
                break
        else:
            return None
    return out


def _mnist(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = None
    d = data_dir()
    if d is not None and (d / "mnist.npz").exists():
        arrays = _load_npz(d / "mnist.npz", "mnist",
                           {"x_train": (-1, 28, 28), "y_train": (-1,), "x_test": (-1, 28, 28), "y_test": (-1,)},
                           _MNIST_HOW)
    if arrays is None and root is not None:
        arrays = _mnist_raw(Path(root) / "MNIST" / "raw")
    if arrays is None and download:
        if root is None:
            raise ValueError("mnist: download=True needs root=<folder to download into>")
        import torchvision  # lazy: only when a download is asked for

        for train in (True, False):
            torchvision.datasets.MNIST(str(root), train=train, download=True)
        arrays = _mnist_raw(Path(root) / "MNIST" / "raw")
    if arrays is None:
        where = [str(d / "mnist.npz") if d else "SUITE_DATA_DIR unset"]
        if root is not None:
            where.append(str(Path(root) / "MNIST" / "raw"))
        raise DatasetNotFoundError(f"mnist: not found (looked at {', '.join(where)}). {_MNIST_HOW}")
    xs = {"train": arrays["x_train"], "test": arrays["x_test"]}
    ys = {"train": arrays["y_train"], "test": arrays["y_test"]}
    x, y = _split_arrays("mnist", split, xs, ys)
    return _to_tensor(x, 255.0, False), torch.from_numpy(y.astype(np.int64))


# --------------------------------------------------------------------------------------------- cifar10
_CIFAR_HOW = ("Get it by passing root=<folder> holding the standard python-pickle folder cifar-10-batches-py "
              "(data_batch_1..5, test_batch) or putting that folder in SUITE_DATA_DIR, or download=True "
              "with root=<folder> to download with torchvision. (cifar10-jpeg is a different data set.)")


def _cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    parts = ["train", "test"] if split == "all" else [split]
    xs, ys = [], []
    for part in parts:
        for fname in files[part]:
            path = folder / fname
            if not path.is_file():
                raise DatasetNotFoundError(f"cifar10: file not found: {path}. {_CIFAR_HOW}")
            try:
                with open(path, "rb") as f:
                    batch = pickle.load(f, encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                labels = np.asarray(batch[b"labels"], dtype=np.int64)
            except DatasetNotFoundError:
                raise
            except Exception as e:
                raise DatasetNotFoundError(
                    f"cifar10: cannot read {path} ({type(e).__name__}: {e}). {_CIFAR_HOW}") from e
            xs.append(data)
            ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar10(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r} for cifar10; expected 'train', 'test' or 'all'")
    candidates = []
    if root is not None:
        candidates.append(Path(root) / "cifar-10-batches-py")
    d = data_dir()
    if d is not None:
        candidates.append(d / "cifar-10-batches-py")
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None and download:
        if root is None:
            raise ValueError("cifar10: download=True needs root=<folder to download into>")
        import torchvision  # lazy: only when a download is asked for

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        folder = Path(root) / "cifar-10-batches-py"
    if folder is None:
        looked = ", ".join(map(str, candidates)) or "no root given and SUITE_DATA_DIR unset"
        raise DatasetNotFoundError(f"cifar10: not found (looked at {looked}). {_CIFAR_HOW}")
    x, y = _cifar_batches(folder, split)
    return _to_tensor(x, 255.0, False), torch.from_numpy(y)


_CIFAR_JPEG_HOW = ("cifar10-jpeg is read from $SUITE_DATA_DIR/cifar10_jpeg_test.npz (uint8 x_test "
                   "(10000, 32, 32, 3), y_test); set SUITE_DATA_DIR to the shared datasets folder.")


def _cifar10_jpeg(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split != "test":
        raise ValueError(f"cifar10-jpeg has only split='test' (the CIFAR-10 test images), got {split!r}")
    d = data_dir()
    if d is None:
        raise DatasetNotFoundError(f"cifar10-jpeg: SUITE_DATA_DIR is unset. {_CIFAR_JPEG_HOW}")
    a = _load_npz(d / "cifar10_jpeg_test.npz", "cifar10-jpeg", {"x_test": (-1, 32, 32, 3), "y_test": (-1,)},
                  _CIFAR_JPEG_HOW)
    return _to_tensor(a["x_test"], 255.0, True), torch.from_numpy(a["y_test"].astype(np.int64))


def load_image_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                       download: bool = False) -> ImageDataset:
    """Load data set ``name`` (one of :data:`DATASETS`) as an :class:`ImageDataset`.

    ``root`` is a user's download folder (torchvision layout or ``cifar-10-batches-py``); ``download=True``
    allows a torchvision download into ``root`` when nothing local is found. Missing or corrupt files raise
    :class:`DatasetNotFoundError` naming the path and how to get the data.
    """
    root_p = Path(root) if root is not None else None
    if name == "digits-8x8":
        x, y = _digits(split)
    elif name == "mnist":
        x, y = _mnist(split, root_p, download)
    elif name == "cifar10":
        x, y = _cifar10(split, root_p, download)
    elif name == "cifar10-jpeg":
        x, y = _cifar10_jpeg(split)
    else:
        raise ValueError(f"unknown image data set {name!r}; known: {', '.join(DATASETS)}")
    return ImageDataset(name=name, split=split, x=x, y=y)
