"""User-facing errors. The CLI turns any `SuiteError` into a one-line message and exit code 2 (no traceback);
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class SuiteError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class UnknownIdError(SuiteError, KeyError):
    """An id that is not registered; the message names the closest registered ids."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdError(SuiteError, ValueError):
    """Registering an id twice."""


class ConfigError(SuiteError, ValueError):
    """A config override that does not fit the method's config dataclass."""


class MissingDatasetError(SuiteError, FileNotFoundError):
    """A dataset that is not on this machine; the message says how to build or download it."""


class CorruptFileError(SuiteError, ValueError):
    """A data file that cannot be read (truncated, wrong layout); the message names the file."""


class RunMismatchError(SuiteError, ValueError):
    """A run directory (checkpoint, run.json) made with other arguments or other code than the command's."""


class RunExistsError(SuiteError):
    """A run directory that already holds a finished run."""
