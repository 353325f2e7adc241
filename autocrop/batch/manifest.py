"""The batch manifest: a JSON-lines file, one record per processed input, appended and flushed per record.

Each line is a JSON object::

    {"path": "2023/rome/IMG_001.jpg",        # input, relative to the source root, '/'-separated
     "status": "ok" | "failed" | "started",
     "outputs": ["2023/rome/IMG_001.crop1.jpg"],   # relative to the output root
     "boxes": [[x1, y1, x2, y2], ...],       # pixels of the EXIF-oriented input, one per output
     "scores": [float, ...],                 # model scores of those boxes (higher = better)
     "ratios": ["16:9", ...],                # the aspect-ratio constraint of each crop (null = free)
     "error": null | "one-line message",
     "notes": ["EXIF of 20.0 MiB not copied to the crops (more than 64 KiB)"],   # only when there are some
     "timings": {"analyze_s": float, "write_s": float, "total_s": float},
     "size": int, "mtime_ns": int,           # the input file when it was processed (resume detects changes)
     "out": "/abs/output/root",              # the output folder the record belongs to
     "settings": "sha1 of the crop settings", "engine": "local" | "ray", "time": "ISO-8601 UTC"}

A ``"started"`` line (path, out, settings, engine, time) is written just before an input is handed to a
worker; its final record follows when it is done. After a kill, an input whose last line is "started" may
have written outputs without a record, and the next run may replace them.

File names that are not valid UTF-8 (Python holds their bytes as lone surrogates) are written as
``\\udcXX`` escapes, which JSON allows and :func:`json.loads` reads back to the same name: such inputs
are cropped, recorded and resumed like any other.

A kill can cut at most the last line short: :func:`load_manifest` skips lines that do not parse or do not
have the record's shape (and counts them), and :class:`ManifestWriter` starts on a fresh line, so the file
stays usable. When a path appears more than once (a failed input retried later) the last record wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autocrop.batch.walk import SourceFile
from autocrop.errors import OutputError, UsageError

MANIFEST_NAME = "autocrop-manifest.jsonl"


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of the options that change what gets written (ratios, top, format, quality, ...)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


_STATUSES = ("ok", "failed", "started")
_PSEUDO_FILE_SYSTEMS = ("/proc", "/sys")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class LoadedManifest:
    """What a manifest says: the last final record of each input path, the inputs whose last line is
    "started" (cut short by a kill), and the number of lines that could not be used.

    out: the output root the records are read for; records of other output folders (a manifest shared
    between folders) are never taken as this folder's outputs.
    """

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_lines: int = 0
    started: set[str] = field(default_factory=set)
    out: str | None = None
    legacy: bool = False  # records without "out" (earlier versions) count as this folder's

    def replaceable(self, rel: str) -> frozenset[str] | None:
        """Output files (relative to the output root) that input ``rel`` may replace on a new run.

        Its own outputs as recorded for this output folder; None means any of its planned outputs (an
        earlier run was killed while writing them). Files of other inputs or of the user: never.
        """
        if rel in self.started:
            return None
        record = self.records.get(rel)
        if not record or not self._ours(record):
            return frozenset()
        return frozenset(record.get("outputs") or ())

    def _ours(self, record: dict[str, Any]) -> bool:
        out = record.get("out")
        return out == self.out if out is not None else self.legacy


def _valid(record: Any) -> bool:
    """True when ``record`` has the shape of a manifest record (the fields resume reads)."""
    if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not record["path"]:
        return False
    if record.get("status") not in _STATUSES:
        return False
    outputs = record.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        return False
    for key in ("size", "mtime_ns"):
        value = record.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            return False
    return all(isinstance(record.get(key, ""), str) for key in ("settings", "out"))


def load_manifest(path: Path, out_root: Path | None = None) -> LoadedManifest:
    """Read a manifest (missing file -> empty) for the output folder ``out_root``.

    Lines that do not parse or lack the record's shape (a line cut by a kill, an edited file) are
    counted in ``bad_lines`` and skipped. Records without an "out" field (earlier versions) are taken
    as ``out_root``'s own when the manifest lies inside it.
    """
    out = str(out_root) if out_root is not None else None
    legacy = out_root is not None and Path(out_root) in Path(path).parents
    loaded = LoadedManifest(out=out, legacy=legacy)
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return loaded  # not there yet (a file in the way of its folder is reported when it is written)
    except OSError as err:
        raise OutputError.from_os_error(path, err, "cannot read the manifest") from err
    with handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                loaded.bad_lines += 1
                continue
            if not _valid(record):
                loaded.bad_lines += 1
            elif out is not None and record.get("out", out) != out:
                continue  # another output folder's record (a manifest shared between folders)
            elif record["status"] == "started":
                if loaded._ours(record):
                    loaded.started.add(record["path"])
            else:
                loaded.records[record["path"]] = record
                loaded.started.discard(record["path"])
    return loaded


def check_manifest_path(path: Path) -> Path:
    """The manifest file as an absolute path; :class:`UsageError` when it cannot be one.

    Refused: a symbolic link (appending through it would change the file it points to), anything but a
    regular file (a folder, a device, a pipe) and files of the kernel's pseudo file systems (/proc, /sys).
    """
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        raise UsageError(f"manifest {path}: is a symbolic link (give the manifest file itself)")
    real = Path(os.path.realpath(path))
    if any(str(real) == root or str(real).startswith(root + "/") for root in _PSEUDO_FILE_SYSTEMS):
        raise UsageError(f"manifest {path}: is on a kernel pseudo file system (choose a regular file)")
    if real.exists() and not real.is_file():
        kind = "a folder" if real.is_dir() else "not a regular file"
        raise UsageError(f"manifest {path}: is {kind} (give a file name, e.g. {path / MANIFEST_NAME})"
                         if real.is_dir() else f"manifest {path}: is {kind}")
    return real


def started_record(rel: str, out: str, settings: str, engine: str) -> dict[str, Any]:
    """The line announcing that input ``rel`` is being processed (see the module doc)."""
    return {"path": rel, "status": "started", "out": out, "settings": settings, "engine": engine,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def encode_record(record: dict[str, Any]) -> bytes:
    """One manifest line (UTF-8, newline included); lone surrogates of non-UTF-8 names as ``\\udcXX``."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return (_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n").encode("utf-8")


def is_done(record: dict[str, Any] | None, source: SourceFile, key: str, out_root: Path) -> bool:
    """True when ``record`` says ``source`` was cropped with the same settings, and nothing changed since.

    Requires: status ok, the same settings key, the same source size and mtime, and every output file present.
    """
    if not record or record.get("status") != "ok" or record.get("settings") != key:
        return False
    if record.get("size") != source.size or record.get("mtime_ns") != source.mtime_ns:
        return False
    outputs = record.get("outputs") or []
    return all(os.path.exists(out_root / rel) for rel in outputs)


class ManifestWriter:
    """Appends records to the manifest, one JSON line each, written to the OS right away (one ``write``).

    After a kill the file holds every finished input (at worst the last line is cut, see :func:`load_manifest`).
    After a failed write (disk full) the writer refuses further lines, so a cut line is never continued.
    Raises :class:`OutputError` (with the errno) when the file cannot be opened or written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._failed: OutputError | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            self._fd = os.open(path, flags, 0o666)
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode):
                raise OutputError(path, "the manifest is not a regular file")
            if info.st_size > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        self._write_all(b"\n")
        except OSError as err:
            self.close()
            raise OutputError.from_os_error(path, err, "cannot write the manifest") from err
        except OutputError:
            self.close()
            raise

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a single line (:class:`OutputError` with the errno on failure)."""
        if self._failed is not None:
            raise self._failed
        try:
            self._write_all(encode_record(record))
        except OSError as err:
            self._failed = OutputError.from_os_error(self.path, err, "cannot write the manifest")
            raise self._failed from err

    def close(self) -> None:
        """Flush to disk (fsync) and close; never raises (a failed write was reported already)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
