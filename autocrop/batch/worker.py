"""One input through the engine: analyze, write the crops into the mirrored folder, return its manifest record.

Shared verbatim by the local engine (threads) and the Ray engine (actors), so both write the same files and
the same manifest records. Problems with an input (corrupt, truncated, not an image, empty) become a
``failed`` record; problems with the output location (disk full, read-only, permission) raise
:class:`FatalOutputError`, which stops the batch: nothing is lost and the next run continues.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from autocrop.errors import AutocropError

#: errno values of a write that no other input would survive either: stop the batch instead of failing each input.
FATAL_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EACCES, errno.EPERM) if e is not None
)


class FatalOutputError(AutocropError):
    """Writing outputs is impossible (disk full, read-only, no permission): the whole batch stops."""


class BatchEngine(Protocol):
    """What the batch needs from :mod:`autocrop.engine` (the adapter is :mod:`autocrop.batch.adapter`)."""

    def analyze(self, path: Path) -> Any:
        """Decode + score one image; raise on a bad input. Returns an opaque result for :meth:`write`."""

    def describe(self, result: Any) -> dict[str, list]:
        """``{"boxes": [[x1, y1, x2, y2] px], "scores": [float], "ratios": [str | None]}`` of the chosen crops."""

    def write(self, result: Any, out_dir: Path, overwrite: bool, stem_tag: str | None = None) -> list[Path]:
        """Write the crops atomically into ``out_dir``; returns the written paths.

        Without ``overwrite`` an existing file is never replaced (the input fails instead). ``stem_tag``: use
        ``<stem>_<tag>`` instead of ``<stem>`` in the output names (inputs ``a.png`` and ``a.gif`` in one folder).
        """


@dataclass(frozen=True)
class WorkItem:
    """One input, with plain types only (it travels to Ray workers). Paths are absolute strings."""

    source: str
    rel: str
    size: int
    mtime_ns: int
    out_dir: str
    stem_tag: str | None = None  # set when another input in the same folder has the same stem (see run._stem_tags)


@dataclass(frozen=True)
class Destination:
    """Where outputs may go: ``out_root`` (absolute), never over a file under ``source_root``."""

    source_root: str
    out_root: str
    allow_inside_source: bool = False
    overwrite: bool = False
    settings: str = ""
    engine: str = "local"
    extra: dict = field(default_factory=dict)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, AutocropError) else f"{type(err).__name__}: {message}".rstrip(": ")


_FATAL_TEXTS = tuple(os.strerror(e) for e in FATAL_ERRNOS)


def _is_fatal(err: BaseException) -> bool:
    """Disk full / read-only / permission denied while writing (also when wrapped in a one-line InputError)."""
    if isinstance(err, OSError):
        return err.errno in FATAL_ERRNOS
    return isinstance(err, AutocropError) and any(text in str(err) for text in _FATAL_TEXTS)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def guard_out_dir(out_dir: Path, dest: Destination) -> None:
    """Raise :class:`AutocropError` unless ``out_dir`` (a mirrored folder) is a safe place for outputs.

    It must lie under the output root (no symlink out of it) and never inside the source tree except within the
    output root (``--allow-inside-source``: the walk skips the output root, so no input lives there).
    """
    real = os.path.realpath(out_dir)
    if not _within(real, dest.out_root):
        raise AutocropError(f"output folder {out_dir} resolves outside the output root {dest.out_root}")
    if _within(real, dest.source_root) and not (dest.allow_inside_source and real != dest.source_root):
        raise AutocropError(f"output folder {out_dir} lies inside the source folder {dest.source_root}")


def process_one(engine: BatchEngine, item: WorkItem, dest: Destination) -> dict[str, Any]:
    """Crop one input; return its manifest record. Raises :class:`FatalOutputError` only (see module doc)."""
    out_root = Path(dest.out_root)
    record: dict[str, Any] = {
        "path": item.rel,
        "status": "failed",
        "outputs": [],
        "boxes": [],
        "scores": [],
        "ratios": [],
        "error": None,
        "timings": {},
        "size": item.size,
        "mtime_ns": item.mtime_ns,
        "settings": dest.settings,
        "engine": dest.engine,
    }
    t0 = time.perf_counter()
    try:
        result = engine.analyze(Path(item.source))
        record.update(engine.describe(result))
    except Exception as err:  # a bad input: reported, the batch goes on
        record["error"] = _one_line(err)
        record["timings"] = {"analyze_s": round(time.perf_counter() - t0, 4)}
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return record
    t1 = time.perf_counter()
    out_dir = Path(item.out_dir)
    try:
        guard_out_dir(out_dir, dest)
        out_dir.mkdir(parents=True, exist_ok=True)
        guard_out_dir(out_dir, dest)  # again now that it exists (a symlink planted meanwhile is caught)
        written = engine.write(result, out_dir, dest.overwrite, item.stem_tag)
        record["outputs"] = [Path(p).relative_to(out_root).as_posix() for p in written]
        record["status"] = "ok"
    except Exception as err:
        if _is_fatal(err):
            reason = err.strerror if isinstance(err, OSError) and err.strerror else _one_line(err)
            raise FatalOutputError(f"cannot write into {out_dir}: {reason}") from None
        record["error"] = _one_line(err)
    t2 = time.perf_counter()
    record["timings"] = {"analyze_s": round(t1 - t0, 4), "write_s": round(t2 - t1, 4), "total_s": round(t2 - t0, 4)}
    record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def destination_dict(dest: Destination) -> dict[str, Any]:
    """Plain-dict form of ``dest`` (for logging and Ray)."""
    return asdict(dest)
