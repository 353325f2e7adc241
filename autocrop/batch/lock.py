"""One batch at a time per output folder: an exclusive lock on ``OUT/.autocrop.lock`` for the whole run.

Two batches writing into one folder would process inputs twice and could remove each other's live
temporary files (the start-up clean-up runs only while the lock is held). The lock is ``fcntl.flock``
on a small file that holds the owner's pid (for the message); the kernel drops it when the process
ends, however it ends, so a killed run never leaves a stale lock (its file is taken over by the next
run). The holder removes the file when it is done; a run that locked a file which was removed (or
replaced) meanwhile tries again, so two runs can never both hold the folder. Where ``fcntl`` does not
exist (Windows) no lock is taken.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from autocrop.errors import OutputError, UsageError

LOCK_NAME = ".autocrop.lock"


class OutputLock:
    """``with OutputLock(out):`` holds the output folder ``out`` (which must exist) for this process.

    Raises :class:`UsageError` "another autocrop batch is writing into OUT (pid N)" when another process
    holds it, and :class:`OutputError` when the lock file cannot be created (or is not a plain file).
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl  # noqa: F401 - only to know whether flock exists here
        except ImportError:  # Windows: no flock; batches on one folder are not serialised there
            return self
        for _ in range(100):  # another run removing its lock file between our open and flock: try again
            fd = self._open()
            try:
                if self._lock(fd):
                    self._fd = fd
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise OutputError(self.path, "cannot be locked (it keeps being replaced)")

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise OutputError(self.path, "is a symbolic link; autocrop's lock file must be a plain file") from None
            raise OutputError.from_os_error(self.path, err, "cannot create the lock file") from err
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise OutputError(self.path, "is not a plain file of its own; remove it and run again")
        return fd

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``; False when its file is no longer the one at :attr:`path` (removed by its last holder)."""
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError.from_os_error(self.path, err, "cannot lock the output folder") from err
            raise UsageError(f"another autocrop batch is writing into {self.out} (pid {_owner(fd)}); "
                             "wait for it to finish, or choose another output folder") from None
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.unlink(self.path)  # while still holding it: a run that opened it meanwhile tries again
            except OSError:
                pass
            os.close(fd)  # releases the lock


def _owner(fd: int) -> str:
    """The pid written by the process that holds the lock ("unknown" when it cannot be read)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
