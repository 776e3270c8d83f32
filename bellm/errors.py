"""bellm's own exception family. The CLI turns exactly these into `error: ...` and exit code 2; anything
else is a bug and keeps its traceback.

`InputError` subclasses `ValueError`, so code that already catches `ValueError` keeps working.
"""

from __future__ import annotations


class BellmError(Exception):
    """Base of every error bellm raises on purpose."""


class InputError(BellmError, ValueError):
    """Bad input from the user: a file, a config value, an option, a path. The message says what and where."""


class BusyError(BellmError, RuntimeError):
    """Another bellm process holds the lock on a directory (a training output, the registry)."""
