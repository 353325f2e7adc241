"""The batch manifest: a JSON-lines file, one record per processed input, appended and flushed per record.

Each line is a JSON object::

    {"path": "2023/rome/IMG_001.jpg",        # input, relative to the source root, '/'-separated
     "status": "ok" | "failed",
     "outputs": ["2023/rome/IMG_001.crop1.jpg"],   # relative to the output root
     "boxes": [[x1, y1, x2, y2], ...],       # pixels of the EXIF-oriented input, one per output
     "scores": [float, ...],                 # model scores of those boxes (higher = better)
     "ratios": ["16:9", ...],                # the aspect-ratio constraint of each crop (null = free)
     "error": null | "one-line message",
     "timings": {"analyze_s": float, "write_s": float, "total_s": float},
     "size": int, "mtime_ns": int,           # the input file when it was processed (resume detects changes)
     "settings": "sha1 of the crop settings", "engine": "local" | "ray", "time": "ISO-8601 UTC"}

A kill can cut at most the last line short: :func:`load_manifest` skips lines that do not parse and
:class:`ManifestWriter` starts on a fresh line, so the file stays usable. When a path appears more than
once (a failed input retried later) the last record wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autocrop.batch.walk import SourceFile
from autocrop.errors import OutputError

MANIFEST_NAME = "autocrop-manifest.jsonl"


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of the options that change what gets written (ratios, top, format, quality, ...)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


@dataclass
class LoadedManifest:
    """The last record of each input path, plus the number of lines that could not be read."""

    records: dict[str, dict[str, Any]]
    bad_lines: int = 0


def load_manifest(path: Path) -> LoadedManifest:
    """Read a manifest (missing file -> empty). Unparseable lines (a line cut by a kill) are counted, not fatal."""
    records: dict[str, dict[str, Any]] = {}
    bad = 0
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return LoadedManifest(records)
    with handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                records[record["path"]] = record
            else:
                bad += 1
    return LoadedManifest(records, bad)


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
    """Appends records to the manifest, one JSON line each, flushed to the OS right away.

    After a kill the file holds every finished input (at worst the last line is cut, see :func:`load_manifest`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = False
            if path.exists() and path.stat().st_size > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    needs_newline = f.read(1) != b"\n"
            self._file: IO[str] = open(path, "a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
                self._file.flush()
        except OSError as err:
            raise OutputError.from_os_error(path, err, "cannot write the manifest") from err

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a single line and flush it (:class:`OutputError` with the errno on failure)."""
        try:
            self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as err:
            raise OutputError.from_os_error(self.path, err, "cannot write the manifest") from err

    def close(self) -> None:
        """Flush to disk (fsync) and close."""
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            pass
        self._file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
