"""Shared test setup: a temporary Minari storage per session, the shared image data, 1-2 torch threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ.get("SUITE_TEST_THREADS", "1")))
    if SHARED.exists():
        os.environ.setdefault("SUITE_DATA_DIR", str(SHARED))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """A session-wide temporary MINARI_DATASETS_PATH (datasets built once are shared by the tests)."""
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old
