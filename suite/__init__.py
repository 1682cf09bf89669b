"""odice-suite: offline-RL and diffusion-sampling benchmarks.

The library API (see ``suite.api``): ``suite.make(task_id)`` -> a task with ``.dataset()`` and
``.evaluate(policy, seed=...)``; ``suite.record(...)`` writes a run record from a custom training loop.
The CLI is ``python -m suite``.
"""

from __future__ import annotations

__all__ = ["make", "record", "Task", "Evaluation"]


def __getattr__(name: str):  # lazy: `import suite` stays cheap (no torch, no gymnasium)
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'suite' has no attribute {name!r}")
