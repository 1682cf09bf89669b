"""Shared setup for the generative tests."""

import pytest

from tests.threads import torch_threads


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module (the CI box is shared: avoid OpenMP oversubscription); modules opt in
    with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    with torch_threads(1):
        yield
