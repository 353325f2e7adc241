"""``run_batch``: plan a batch (walk, resume), run it on the local or the Ray engine, record and summarise it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from autocrop.batch.lock import OutputLock
from autocrop.batch.manifest import (
    MANIFEST_NAME,
    LoadedManifest,
    ManifestWriter,
    check_manifest_path,
    is_done,
    load_manifest,
    settings_key,
    started_record,
)
from autocrop.batch.summary import Progress, Tally, display, format_summary
from autocrop.batch.walk import SourceFile, WalkStats, check_locations, mirror_dir, output_stems, walk_sources
from autocrop.batch.worker import CropperFactory, CropperSpec, Destination, FatalOutputError, WorkItem
from autocrop.errors import OutputError, UsageError
from autocrop.io.fs import is_temp_name
from autocrop.system import available_cpus

ENGINES = ("local", "ray")


@dataclass
class BatchOptions:
    """Everything ``autocrop batch`` was asked to do (paths as given; resolved by :func:`run_batch`).

    ``settings``: the crop settings that change the outputs (ratios, top, format, quality, model, ...); their hash
    is stored per manifest record so that resume re-does inputs cropped with other settings. Left empty,
    :func:`run_batch` takes them from its :class:`~autocrop.batch.worker.CropperSpec`.
    """

    source: Path
    out: Path | None = None
    manifest: Path | None = None
    recursive: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 0
    dry_run: bool = False
    resume: bool = True
    overwrite: bool = False
    allow_inside_source: bool = False
    engine: str = "local"
    ray_address: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False


@dataclass
class BatchPlan:
    """The resolved batch: where things go and which inputs still need work.

    loaded: the manifest as read at the start (for each input, what an earlier run of *this* output
    folder wrote). stems: rel -> output stem where it is not the file's own stem (see
    :func:`~autocrop.batch.walk.output_stems`). protected: inputs (resolved paths) that lie inside the
    output folder (symlinked in from the source tree): never written over.
    """

    source: Path
    out: Path
    manifest: Path
    todo: list[SourceFile]
    done: int
    stats: WalkStats
    settings: str
    loaded: LoadedManifest = field(default_factory=LoadedManifest)
    stems: dict[str, str] = field(default_factory=dict)
    protected: tuple[str, ...] = ()

    @property
    def manifest_bad_lines(self) -> int:
        return self.loaded.bad_lines


def default_out(source: Path) -> Path:
    """``<source>-autocrop`` beside the source folder (``./album`` -> ``./album-autocrop``)."""
    source = Path(source).expanduser()
    name = source.resolve().name or "album"
    return source.resolve().parent / f"{name}-autocrop"


def default_jobs() -> int:
    """One worker per available core."""
    return available_cpus()


def _out_of(opts: BatchOptions) -> Path:
    return opts.out if opts.out is not None else default_out(opts.source)


def plan_batch(opts: BatchOptions) -> BatchPlan:
    """Check the locations, walk the source, read the manifest (see :func:`check_locations` for the errors).

    A dry run creates nothing (no output folder either).
    """
    _check_options(opts)
    source, out_real = check_locations(opts.source, _out_of(opts), opts.allow_inside_source,
                                       create=not opts.dry_run)
    manifest = check_manifest_path(Path(opts.manifest).expanduser() if opts.manifest else out_real / MANIFEST_NAME)
    if source in manifest.parents and not (opts.allow_inside_source and out_real in manifest.parents):
        raise UsageError(f"manifest {manifest}: would be written inside the source folder {source}")
    stats = WalkStats()
    skip = [out_real] if source in out_real.parents else []
    sources = list(walk_sources(source, opts.recursive, opts.include, opts.exclude, skip_dirs=skip, stats=stats))
    key = settings_key(opts.settings)
    loaded = load_manifest(manifest, out_real)
    if opts.resume:
        todo = [s for s in sources if not is_done(loaded.records.get(s.rel), s, key, out_real)]
    else:
        todo = sources
    linked = (os.path.realpath(s.path) for s in sources if os.path.islink(s.path))  # only links can lead into OUT
    protected = tuple(sorted({real for real in linked if _within(real, str(out_real))}))
    return BatchPlan(source, out_real, manifest, todo, len(sources) - len(todo), stats, key, loaded,
                     output_stems(sources), protected)


def _check_options(opts: BatchOptions) -> None:
    if opts.engine not in ENGINES:
        raise UsageError(f"engine {opts.engine!r}: use {' or '.join(ENGINES)}")
    if isinstance(opts.jobs, bool) or not isinstance(opts.jobs, int) or opts.jobs < 0:
        raise UsageError(f"jobs {opts.jobs!r}: must be a whole number >= 0 (0 = one per core)")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def remove_stale_partials(out_root: Path, skip: Path | None = None) -> int:
    """Delete temp files that a killed run left in the output tree; returns the count.

    Only names that :func:`autocrop.io.fs.atomic_write` gives its temp files are touched (never a user's
    own ``.something.part``), only under the output root, never inside ``skip`` (the source folder, when
    the output folder holds it: a ``crop`` run writing beside its photos may be live there), and only
    while this process holds the output folder's lock (:class:`~autocrop.batch.lock.OutputLock`), so
    no other batch's live temp file is removed.
    """
    removed = 0
    skipped = os.path.realpath(skip) if skip is not None else None
    for folder, dirs, files in os.walk(out_root, followlinks=False):
        if skipped is not None:
            dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) != skipped]
        for name in files:
            if is_temp_name(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


class _Stop:
    """Turns SIGTERM (and SIGHUP) into KeyboardInterrupt in the main thread, restoring handlers afterwards."""

    def __enter__(self) -> _Stop:
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    @staticmethod
    def _handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _items(plan: BatchPlan, writer: ManifestWriter, engine: str) -> Iterator[WorkItem]:
    """The work items, each announced in the manifest ("started") just before it is handed to a worker.

    After a kill, an input whose last line is "started" may have written some outputs without a record:
    the next run may replace those (and only an input's own recorded or planned outputs, see
    :func:`~autocrop.batch.worker.process_one`).
    """
    for s in plan.todo:
        writer.write(started_record(s.rel, str(plan.out), plan.settings, engine))
        replace = plan.loaded.replaceable(s.rel)
        yield WorkItem(str(s.path), s.rel, s.size, s.mtime_ns, str(mirror_dir(plan.out, s.rel)),
                       plan.stems.get(s.rel), tuple(sorted(replace or ())), replace is None)


def run_batch(
    opts: BatchOptions,
    cropper_factory: CropperFactory,
    out_stream: TextIO | None = None,
    progress_stream: TextIO | None = None,
    force_plain: bool | None = None,
) -> Tally:
    """Run the batch; returns its :class:`Tally` (``complete``, ``interrupted``, the failures, ...).

    ``cropper_factory`` is called at most once, and only when some input needs work (a finished batch re-run
    loads no model). The summary goes to ``out_stream`` (default stdout), progress to ``progress_stream``
    (default stderr). Raises :class:`UsageError` / :class:`~autocrop.errors.OutputError` (one line) for bad
    parameters, a bad manifest path, an output folder that cannot be written or that another batch is
    writing into (see :class:`~autocrop.batch.lock.OutputLock`; held for the whole run), and
    :class:`FatalOutputError` when the OS refuses a write in a way no other input would survive (disk full,
    read-only, permission; decided by its errno): the batch then stops, every finished input is in the
    manifest and the same call continues later.
    """
    out_stream = out_stream or sys.stdout
    t0 = time.perf_counter()
    if not opts.settings and isinstance(cropper_factory, CropperSpec):
        opts = replace(opts, settings=cropper_factory.output_key())
    if opts.dry_run:
        return _dry_run(opts, out_stream, t0)
    _check_options(opts)
    if opts.manifest:
        check_manifest_path(Path(opts.manifest).expanduser())  # before the output folder is made
    _, out_real = check_locations(opts.source, _out_of(opts), opts.allow_inside_source, create=True)
    with OutputLock(out_real):
        return _run_locked(opts, cropper_factory, out_stream, progress_stream, force_plain, t0)


def _dry_run(opts: BatchOptions, out_stream: TextIO, t0: float) -> Tally:
    plan = plan_batch(opts)
    tally = _tally(plan, opts, t0)
    for s in plan.todo:
        target = mirror_dir(plan.out, s.rel)
        tally.planned.append((display(s.rel), display(str(target))))
        print(f"would crop {display(s.rel)} -> {display(str(target))}", file=out_stream)
    tally.finished = time.perf_counter()
    print(format_summary(tally), file=out_stream)
    return tally


def _tally(plan: BatchPlan, opts: BatchOptions, t0: float) -> Tally:
    tally = Tally(total=len(plan.todo) + plan.done, done_before=plan.done, ignored=plan.stats.ignored, started=t0,
                  dry_run=opts.dry_run, out=display(str(plan.out)), manifest=display(str(plan.manifest)),
                  manifest_bad_lines=plan.manifest_bad_lines)
    for folder, reason in plan.stats.unreadable_dirs:
        tally.failures.append((display(folder), f"folder not readable: {reason}"))
    return tally


def _run_locked(opts: BatchOptions, cropper_factory: CropperFactory, out_stream: TextIO,
                progress_stream: TextIO | None, force_plain: bool | None, t0: float) -> Tally:
    """The batch proper, run while this process holds the output folder's lock."""
    plan = plan_batch(opts)
    tally = _tally(plan, opts, t0)
    dest = Destination(
        source_root=str(plan.source),
        out_root=str(plan.out),
        allow_inside_source=opts.allow_inside_source,
        overwrite=opts.overwrite,
        settings=plan.settings,
        engine=opts.engine,
        protected=plan.protected,
    )
    if plan.todo:
        remove_stale_partials(plan.out, skip=plan.source if plan.out in plan.source.parents else None)
    jobs = opts.jobs if opts.jobs > 0 else default_jobs()
    with ManifestWriter(plan.manifest) as writer, Progress(
        len(plan.todo), stream=progress_stream, force_plain=force_plain, quiet=opts.quiet
    ) as progress, _Stop():

        def on_record(record: dict[str, Any]) -> None:
            try:
                writer.write(record)
            except OutputError as err:  # the manifest's disk is full: as fatal as an output's
                if err.fatal:
                    raise FatalOutputError.of(err) from err
                raise
            tally.add(record)
            progress.advance(record)

        items = _announced(_items(plan, writer, opts.engine))
        try:
            if opts.engine == "ray":
                from autocrop.batch.ray_engine import run_ray

                run_ray(items, dest, cropper_factory, jobs, on_record, address=opts.ray_address)
            else:
                from autocrop.batch.local import run_local

                run_local(items, dest, cropper_factory, jobs, on_record)
        except KeyboardInterrupt:
            tally.interrupted = True
    tally.finished = time.perf_counter()
    print(format_summary(tally), file=out_stream)
    return tally


def _announced(items: Iterator[WorkItem]) -> Iterator[WorkItem]:
    """``items``, with a manifest that cannot be written turned into :class:`FatalOutputError` when fatal."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except OutputError as err:
            if err.fatal:
                raise FatalOutputError.of(err) from err
            raise
        yield item
