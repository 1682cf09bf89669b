"""`torch_threads(n)`: torch's intra-op thread count set for a block and restored after it (the test fixtures
that keep a shared 2-core CI box from OpenMP oversubscription use it)."""

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
