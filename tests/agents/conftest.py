"""Shared setup for the agent tests: one torch thread per test (the CI box is shared)."""

import pytest

from tests.threads import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield
