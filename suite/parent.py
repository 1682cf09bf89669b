"""Worker processes that must not outlive the process that started them (a SIGKILLed reproduction or build, a
stopped session): one daemon thread per worker watches its parent."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def when_parent_gone(parent: int, action: Callable[[], None], period: float = 1.0, name: str = "watch-parent") -> None:
    """Start a daemon thread that calls `action` once this process's parent is no longer `parent` (checked every
    `period` seconds). `action` ends the process (it runs once, on the watcher thread)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        action()

    threading.Thread(target=watch, daemon=True, name=name).start()
