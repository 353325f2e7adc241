"""The one atomic file writer (crops, previews, weights, cards, manifests, reports) and temp-file names.

:func:`atomic_write` creates a temporary file in the target folder, writes and fsyncs it, then links
(or, with ``overwrite``, renames) it into place, so a reader never sees a half-written file and a
killed process leaves at most a temporary file. Temporary files carry a name only autocrop uses
(``.autocrop-<random>.<name>.part``), so clean-up can never touch a user's own files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from autocrop.errors import OutputError

TEMP_PREFIX = ".autocrop-"
TEMP_SUFFIX = ".part"
_MAX_NAME_BYTES = 255
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def is_temp_name(name: str) -> bool:
    """True for the names :func:`atomic_write` gives its temporary files (and only those)."""
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    token = name[len(TEMP_PREFIX):].split(".", 1)[0]
    return len(token) == 12 and all(c in "0123456789abcdef" for c in token)


def _temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (name shortened so the temp name stays a valid file name)."""
    stem = path.name
    budget = _MAX_NAME_BYTES - len(TEMP_PREFIX) - 13 - len(TEMP_SUFFIX)
    while len(stem.encode("utf-8", "surrogateescape")) > budget:
        stem = stem[:-1]
    return path.with_name(f"{TEMP_PREFIX}{_token()}.{stem}{TEMP_SUFFIX}")


def _token() -> str:
    """12 random hex digits (``secrets.token_hex(6)``'s source, os.urandom, without importing secrets and
    base64: ~4 ms before the first file is written)."""
    return os.urandom(6).hex()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], overwrite: bool = False) -> None:
    """Create ``path`` atomically from ``write(file_object)``.

    Without ``overwrite`` an existing ``path`` is never replaced (``os.link`` fails if it exists, so
    even a file created meanwhile is safe). The file gets the usual permissions (0666 minus the
    umask, applied by the OS). The temp file is removed on every failure. Raises :class:`OutputError`
    naming ``path``: ``errno`` set when the OS refused (ENOSPC, EACCES, ...), None when ``path`` exists.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputError(path, "already exists (not replaced)")
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise OutputError.from_os_error(path, err) from err
    try:
        os.close(fd)
        with open(tmp, "wb") as fh:  # by name, so that fh.name says which file is being written
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except OSError as err:
        remove_quietly(tmp)
        raise OutputError.from_os_error(path, err) from err
    except BaseException:
        remove_quietly(tmp)
        raise
    remove_quietly(tmp)  # after os.link the temp name is an extra link


def _link_new(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` only if ``path`` does not exist (hard link; rename where links are unsupported)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(path, "already exists (not replaced)") from None
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
        if path.exists():
            raise OutputError(path, "already exists (not replaced)") from None
        os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (weights, cards, manifests, reports); see :func:`atomic_write`."""
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    atomic_write(Path(path), write, overwrite=overwrite)


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists; errors are ignored (used for clean-up after another error)."""
    try:
        Path(path).unlink()
    except OSError:
        pass


def same_file(a: Path, b: Path) -> bool:
    """True when both paths exist and are the same file (hard links and symlinks included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed; :class:`OutputError` when it is a file or cannot be made."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, "is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(folder, err, "cannot create the folder") from err


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable by creating (and removing) a temporary file.

    Raises :class:`OutputError` (one line, the OS's errno kept) when ``folder`` is a file, cannot be
    created, or cannot be written; used before long work (a batch, training) so it fails at once.
    """
    folder = Path(folder)
    ensure_folder(folder)
    probe = folder / f"{TEMP_PREFIX}{_token()}.write-probe{TEMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError.from_os_error(folder, err, "folder is not writable") from err
