import pytest

from suite.tasks import get_task


@pytest.fixture(scope="session")
def hopper_random_built(minari_root):
    """hopper-random-v0 built once (3000 transitions) in the session's temporary Minari storage."""
    from suite.data.build import build

    spec = get_task("hopper-random-v0")
    build(spec.dataset, steps=3000, n_envs=4, progress=False, references=spec.references.bounds)
    return spec
