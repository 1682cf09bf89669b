import gzip
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generative.datasets import DATASETS, DatasetNotFoundError, default_train_split, load_image_dataset

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/datasets")
needs_shared = pytest.mark.skipif(not (SHARED / "mnist.npz").is_file(), reason="shared datasets not present")


def test_digits_shape_range_and_splits():
    train = load_image_dataset("digits-8x8", "train")
    test = load_image_dataset("digits-8x8", "test")
    everything = load_image_dataset("digits-8x8", "all")
    assert everything.x.shape == (1797, 1, 8, 8) and everything.x.dtype == torch.float32
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert everything.x.min() == -1.0 and everything.x.max() == 1.0
    # 16 grey levels 0..16 rescaled: values are -1 + k/8
    k = (everything.x + 1) * 8
    assert torch.allclose(k, k.round(), atol=1e-5)
    assert set(everything.y.tolist()) == set(range(10))
    assert default_train_split("digits-8x8") == "train"


@needs_shared
def test_mnist_from_suite_data_dir(monkeypatch):
    monkeypatch.setenv("SUITE_DATA_DIR", str(SHARED))
    d = load_image_dataset("mnist", "test")
    assert d.x.shape == (10000, 1, 28, 28) and d.y.shape == (10000,)
    assert d.x.min() == -1.0 and d.x.max() == 1.0 and d.y.dtype == torch.int64
    assert d.y[:5].tolist() == [7, 2, 1, 0, 4]  # canonical order
    assert "torchvision" not in sys.modules


@needs_shared
def test_cifar10_jpeg_from_suite_data_dir(monkeypatch):
    monkeypatch.setenv("SUITE_DATA_DIR", str(SHARED))
    d = load_image_dataset("cifar10-jpeg", "test")
    assert d.name == "cifar10-jpeg" and d.x.shape == (10000, 3, 32, 32)
    assert -1.0 <= d.x.min() < -0.9 and 0.9 < d.x.max() <= 1.0
    assert default_train_split("cifar10-jpeg") == "test"
    with pytest.raises(ValueError, match="only split='test'"):
        load_image_dataset("cifar10-jpeg", "train")
    # cifar10-jpeg is never used as cifar10
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_image_dataset("cifar10", "test")


def test_missing_files_give_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"mnist.*mnist\.npz.*download=True"):
        load_image_dataset("mnist", "train")
    with pytest.raises(DatasetNotFoundError, match=r"cifar10_jpeg_test\.npz") as e:
        load_image_dataset("cifar10-jpeg", "test")
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_image_dataset("cifar10", "train", root=tmp_path / "nowhere")
    monkeypatch.delenv("SUITE_DATA_DIR")
    with pytest.raises(DatasetNotFoundError, match="SUITE_DATA_DIR"):
        load_image_dataset("cifar10-jpeg", "test")
    with pytest.raises(ValueError, match="unknown image data set"):
        load_image_dataset("cifar-10", "train")
    assert "torchvision" not in sys.modules


def test_corrupt_npz_files_give_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))
    path = tmp_path / "mnist.npz"
    np.savez(path, images=np.zeros((3, 28, 28), np.uint8))  # wrong keys
    with pytest.raises(DatasetNotFoundError, match=r"missing 'x_train'") as e:
        load_image_dataset("mnist", "train")
    assert str(path) in str(e.value)
    np.savez(path, x_train=np.zeros((3, 32, 32), np.uint8), y_train=np.zeros(3, np.uint8),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))  # wrong shape
    with pytest.raises(DatasetNotFoundError, match=r"'x_train' has shape \(3, 32, 32\)"):
        load_image_dataset("mnist", "train")
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(DatasetNotFoundError, match="cannot read"):
        load_image_dataset("mnist", "train")
    jpeg = tmp_path / "cifar10_jpeg_test.npz"
    np.savez(jpeg, x_test=np.zeros((4, 3, 32, 32), np.uint8), y_test=np.zeros(4, np.int64))  # NCHW, not NHWC
    with pytest.raises(DatasetNotFoundError, match=r"expected \(-1, 32, 32, 3\)"):
        load_image_dataset("cifar10-jpeg", "test")
    np.savez(jpeg, x_test=np.zeros((4, 32, 32, 3), np.float32), y_test=np.zeros(4, np.int64))
    with pytest.raises(DatasetNotFoundError, match="uint8"):
        load_image_dataset("cifar10-jpeg", "test")


def _write_idx(path, arr, compress=False):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_mnist_from_a_torchvision_download_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", x_train)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(5), compress=True)
    _write_idx(raw / "t10k-images-idx3-ubyte", x_test)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 8, 7]))
    d = load_image_dataset("mnist", "all", root=tmp_path)
    assert d.x.shape == (8, 1, 28, 28) and d.y.tolist() == [0, 1, 2, 3, 4, 9, 8, 7]
    torch.testing.assert_close(d.x[5, 0], torch.from_numpy(x_test[0]).float() / 127.5 - 1)
    assert "torchvision" not in sys.modules


def test_cifar10_from_python_pickle_batches(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 3)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(range(n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    train = load_image_dataset("cifar10", "train", root=tmp_path)
    test = load_image_dataset("cifar10", "test", root=tmp_path)
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"][0].reshape(3, 32, 32)
    torch.testing.assert_close(test.x[0], torch.from_numpy(raw).float() / 127.5 - 1)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_image_dataset("cifar10", "train", root=tmp_path)


def test_download_needs_a_root(monkeypatch):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="root"):
        load_image_dataset("cifar10", "train", download=True)
    assert DATASETS == ("digits-8x8", "mnist", "cifar10", "cifar10-jpeg")
