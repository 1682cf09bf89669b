"""Shared setup for the generative tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module (the CI box is shared: avoid OpenMP oversubscription); modules opt in
    with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
