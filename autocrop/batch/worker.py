"""One input through the :class:`~autocrop.cropper.Cropper`: analyze, write the crops into the mirrored folder,
return its manifest record.

Shared verbatim by the local engine (threads) and the Ray engine (actors), so both write the same files and
the same manifest records. Problems with an input (corrupt, truncated, not an image, empty, an output name
that exists) become a ``failed`` record. An :class:`~autocrop.errors.OutputError` whose ``errno`` says that
no other output could be written either (:attr:`OutputError.fatal <autocrop.errors.OutputError.fatal>`:
disk full, quota, read-only, permission) raises :class:`FatalOutputError`, which stops the batch: the input
is not recorded, nothing else is lost and the next run continues. The decision is made from the errno only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocrop.errors import AutocropError, OutputError, UsageError
from autocrop.output import plan_outputs
from autocrop.settings import DEFAULT_DEVICE, DEFAULT_RUNTIME, CropSettings, name_fields

if TYPE_CHECKING:
    from autocrop.cropper import Cropper
    from autocrop.results import CropResult


CropperFactory = Callable[[], "Cropper"]
"""Builds a worker's Cropper (a :class:`CropperSpec`; called once per worker, and only when there is work)."""


class FatalOutputError(OutputError):
    """An :class:`OutputError` whose errno means no output can be written (disk full, read-only, no permission).

    The whole batch stops; ``path`` and ``errno`` are those of the write that failed. Picklable (Ray).
    """

    @classmethod
    def of(cls, err: OutputError) -> FatalOutputError:
        """The fatal form of ``err`` (same path and errno; the reason says that the batch stopped)."""
        return cls(err.path, f"{err.reason} (batch stopped; run it again to continue)", err.errno)


def check_batch_settings(settings: CropSettings) -> CropSettings:
    """``settings`` if a batch can use them: the name pattern must hold ``{stem}`` (raises :class:`UsageError`)."""
    if "stem" not in name_fields(settings.name):
        raise UsageError(f"name {settings.name!r}: needs {{stem}} in a batch (else the photos of a folder collide)")
    return settings


@dataclass(frozen=True)
class CropperSpec:
    """How every worker builds its :class:`~autocrop.cropper.Cropper` (plain values: it travels to Ray actors).

    settings: what to crop (the name pattern must hold ``{stem}``). model: weights path or None (packaged
    default). device: torch device. threads: torch intra-op threads per worker, or None to leave torch's
    setting alone.
    """

    settings: CropSettings = field(default_factory=CropSettings)
    model: str | None = None
    device: str = DEFAULT_DEVICE
    runtime: str = DEFAULT_RUNTIME
    threads: int | None = None

    def __post_init__(self) -> None:
        check_batch_settings(self.settings)

    def __call__(self) -> Cropper:
        """A Cropper with its model loaded now (once per worker, not inside the first input's timing)."""
        from autocrop.cropper import Cropper

        cropper = Cropper(model=self.model, device=self.device, runtime=self.runtime, threads=self.threads,
                          settings=self.settings)
        cropper.scorer  # noqa: B018 - loads the model
        return cropper

    def output_key(self) -> dict[str, Any]:
        """The settings that change the outputs (hashed into every manifest record; see resume)."""
        return output_key(self.settings, self.model)


#: settings added after the first batch manifests: left out of the key while at their defaults, so that a
#: finished batch of an earlier version is not redone (its key had only the other fields).
# settings added after the first release: left out of the key at their defaults, so a batch finished by an
# earlier version keeps its key (and is not redone) until one of them is changed
_LATER_KEYS: dict[str, Any] = {"long_edge": None, "upscale": False, "diversity": CropSettings().diversity,
                               "refine": True, "faces": True, "keep": [], "focus": None}


def output_key(settings: CropSettings, model: str | Path | None) -> dict[str, Any]:
    """The settings and model that change a batch's outputs, as plain JSON values (see :mod:`.manifest`)."""
    key = settings.output_key()
    for name, default in _LATER_KEYS.items():
        if key.get(name) == default:
            key.pop(name, None)
    if key.get("format"):
        key["format"] = str(key["format"]).lower()
    key["model"] = str(Path(model).expanduser().resolve()) if model else None
    return key


@dataclass(frozen=True)
class WorkItem:
    """One input, with plain types only (it travels to Ray workers). Paths are absolute strings."""

    source: str
    rel: str
    size: int
    mtime_ns: int
    out_dir: str
    stem: str | None = None  # the {stem} of its outputs when not the file's own (see walk.output_stems)
    replace: tuple[str, ...] = ()  # its own earlier outputs (relative to the output root): may be replaced
    replace_planned: bool = False  # an earlier run was killed while writing it: its planned outputs may be


@dataclass(frozen=True)
class Destination:
    """Where outputs may go: ``out_root`` (absolute), never over a file under ``source_root``.

    overwrite: replace any existing file with an output name (the user asked; otherwise only an input's
    own earlier outputs are replaced, see :class:`WorkItem`). settings: the settings key written into
    records. protected: inputs (resolved paths) that lie inside the output root: never written over.
    """

    source_root: str
    out_root: str
    allow_inside_source: bool = False
    overwrite: bool = False
    settings: str = ""
    engine: str = "local"
    protected: tuple[str, ...] = ()


def _one_line(err: BaseException, source: Path | None = None) -> str:
    """The first line of ``err``; the input's own path is left out (the record and summary name it already)."""
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    if not isinstance(err, AutocropError):
        return f"{type(err).__name__}: {message}".rstrip(": ")
    if source is not None and message.startswith(f"{source}: "):
        message = message[len(str(source)) + 2:]
    return message


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def guard_out_dir(out_dir: Path, dest: Destination) -> None:
    """Raise :class:`OutputError` unless ``out_dir`` (a mirrored folder) is a safe place for outputs.

    It must be exactly its mirrored folder: no symbolic link anywhere below the output root (one out of
    it, or one to another folder of it where other inputs' crops live), and never inside the source tree
    except within the output root (``allow_inside_source``: the walk skips the output root, so no input
    lives there).
    """
    real = os.path.realpath(out_dir)
    if not _within(real, dest.out_root):
        raise OutputError(out_dir, f"resolves outside the output root {dest.out_root}")
    if real != os.path.normpath(os.path.abspath(out_dir)):
        raise OutputError(out_dir, f"leads to {real} through a symbolic link; crops go only into their "
                                   "mirrored folder")
    if _within(real, dest.source_root) and not (dest.allow_inside_source and real != dest.source_root):
        raise OutputError(out_dir, f"lies inside the source folder {dest.source_root}")


def _replacing(planned: CropResult, settings: CropSettings, item: WorkItem, out_root: Path) -> CropSettings:
    """``settings`` with overwrite on when every existing planned file is this input's own earlier output.

    Raises :class:`OutputError` for an existing file that is not (a user's file, another input's): it is
    never replaced without ``overwrite``.
    """
    if settings.overwrite:
        return settings
    paths = planned.paths + ([planned.preview] if planned.preview is not None else [])
    existing = [p for p in paths if (p.exists() or p.is_symlink()) and not p.is_dir()]  # folders: check_outputs
    if not existing:
        return settings
    own = set(item.replace)
    for path in existing:
        if not item.replace_planned and path.relative_to(out_root).as_posix() not in own:
            raise OutputError(path, "already exists and is not an output of this batch (not replaced without "
                                    "overwrite)")
    return settings.with_(overwrite=True)


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(out_dir, err, "cannot create the folder") from err


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_one(cropper: Cropper, item: WorkItem, dest: Destination) -> dict[str, Any]:
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
        "out": dest.out_root,
        "settings": dest.settings,
        "engine": dest.engine,
    }
    t0 = time.perf_counter()
    source = Path(item.source)
    settings = cropper.settings.with_(overwrite=dest.overwrite)
    try:
        decoded = cropper.decode(source)
        if decoded.info.notes:
            record["notes"] = list(decoded.info.notes)
        result = cropper.analyze(decoded, settings)
        record.update(boxes=[list(c.box) for c in result.crops],
                      scores=[round(float(c.score), 6) for c in result.crops],
                      ratios=[c.ratio for c in result.crops])
        if result.warnings:
            record["warnings"] = list(result.warnings)
    except Exception as err:  # a bad input: reported, the batch goes on
        record["error"] = _one_line(err, source)
        record["timings"] = {"analyze_s": round(time.perf_counter() - t0, 4)}
        record["time"] = _now()
        return record
    t1 = time.perf_counter()
    out_dir = Path(item.out_dir)
    try:
        guard_out_dir(out_dir, dest)
        _make_dir(out_dir)
        guard_out_dir(out_dir, dest)  # again now that it exists (a symlink planted meanwhile is caught)
        planned = plan_outputs(result, settings, out_dir, item.stem or source.stem, source)
        written = cropper.write(decoded, planned, _replacing(planned, settings, item, out_root),
                                protected=[Path(p) for p in dest.protected])
        paths = written.paths + ([written.preview] if written.preview is not None else [])
        record["outputs"] = [Path(p).relative_to(out_root).as_posix() for p in paths]
        record["status"] = "ok"
    except OutputError as err:
        if err.fatal:  # decided by the OS's errno only, never by the message
            raise FatalOutputError.of(err) from err
        record["error"] = _one_line(err)
    except Exception as err:  # the full decode of a damaged photo, an unusable name, ...
        record["error"] = _one_line(err, source)
    t2 = time.perf_counter()
    record["timings"] = {"analyze_s": round(t1 - t0, 4), "write_s": round(t2 - t1, 4), "total_s": round(t2 - t0, 4)}
    record["time"] = _now()
    return record
