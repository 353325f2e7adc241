"""The exceptions of autocrop. ``str(err)`` is one line a user can act on; the CLI prints it, never a traceback.

    AutocropError
    +-- InputError     a photo that cannot be used (missing, corrupt, too small, a bomb), named in the message
    +-- UsageError     a parameter value or combination that cannot work (names the parameter, not a CLI flag)
    +-- OutputError    a file that cannot be written or would replace something it must not (path + errno)
    +-- ModelError     a model file that is missing, damaged or does not match its card
    +-- DatasetError   a dataset folder in the wrong layout or without annotations
"""

from __future__ import annotations

import errno as errno_codes
from pathlib import Path


class AutocropError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is the one-line message."""


class InputError(AutocropError):
    """A bad input photo (the message names the file and the problem)."""


class UsageError(AutocropError):
    """A bad parameter value or combination (the message names the parameter, e.g. ``top``)."""


class ModelError(AutocropError):
    """A model/weights file that is missing, damaged or does not match its card."""


class DatasetError(AutocropError):
    """A dataset directory in the wrong layout or without annotations."""


#: errno values no other output of the same run would survive either (disk full, read-only, no permission).
FATAL_ERRNOS = frozenset(
    code
    for code in (errno_codes.ENOSPC, getattr(errno_codes, "EDQUOT", None), errno_codes.EROFS, errno_codes.EACCES,
                 errno_codes.EPERM)
    if code is not None
)


class OutputError(AutocropError):
    """An output file that cannot be written, or that must not be (it exists, it is an input).

    path: the file concerned. errno: the operating system's error number when the OS refused the
    write (``errno.ENOSPC`` for a full disk), None for refusals of autocrop's own (an existing file).
    The OS error, when there was one, is kept as ``__cause__``.
    """

    def __init__(self, path: str | Path, reason: str, errno: int | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.errno = errno

    def __reduce__(self) -> tuple[type[OutputError], tuple[Path, str, int | None]]:
        """Picklable (batch workers on Ray send it back to the driver)."""
        return (type(self), (self.path, self.reason, self.errno))

    @classmethod
    def from_os_error(cls, path: str | Path, err: OSError, doing: str = "cannot write") -> OutputError:
        """``OutputError`` for an OSError raised while writing ``path`` (chain it with ``raise ... from err``)."""
        return cls(path, f"{doing}: {err.strerror or err}", err.errno)

    @property
    def fatal(self) -> bool:
        """True when the OS said the disk is full, read-only or not ours: no other output would succeed."""
        return self.errno in FATAL_ERRNOS
