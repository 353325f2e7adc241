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

from autocrop.batch.manifest import MANIFEST_NAME, ManifestWriter, is_done, load_manifest, settings_key
from autocrop.batch.summary import Progress, Tally, format_summary
from autocrop.batch.walk import SourceFile, WalkStats, check_locations, mirror_dir, walk_sources
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
    """The resolved batch: where things go and which inputs still need work."""

    source: Path
    out: Path
    manifest: Path
    todo: list[SourceFile]
    done: int
    stats: WalkStats
    settings: str
    manifest_bad_lines: int = 0
    manifest_existed: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def default_out(source: Path) -> Path:
    """``<source>-autocrop`` beside the source folder (``./album`` -> ``./album-autocrop``)."""
    source = Path(source).expanduser()
    name = source.resolve().name or "album"
    return source.resolve().parent / f"{name}-autocrop"


def default_jobs() -> int:
    """One worker per available core."""
    return available_cpus()


def plan_batch(opts: BatchOptions) -> BatchPlan:
    """Check the locations, walk the source, read the manifest (see :func:`check_locations` for the errors).

    A dry run creates nothing (no output folder either).
    """
    if opts.engine not in ENGINES:
        raise UsageError(f"engine {opts.engine!r}: use {' or '.join(ENGINES)}")
    if isinstance(opts.jobs, bool) or not isinstance(opts.jobs, int) or opts.jobs < 0:
        raise UsageError(f"jobs {opts.jobs!r}: must be a whole number >= 0 (0 = one per core)")
    out = opts.out if opts.out is not None else default_out(opts.source)
    source, out_real = check_locations(opts.source, out, opts.allow_inside_source, create=not opts.dry_run)
    manifest = Path(opts.manifest).expanduser().resolve() if opts.manifest else out_real / MANIFEST_NAME
    if source in manifest.parents and not (opts.allow_inside_source and out_real in manifest.parents):
        raise UsageError(f"manifest {manifest}: would be written inside the source folder {source}")
    stats = WalkStats()
    skip = [out_real] if source in out_real.parents else []
    sources = list(walk_sources(source, opts.recursive, opts.include, opts.exclude, skip_dirs=skip, stats=stats))
    key = settings_key(opts.settings)
    loaded = load_manifest(manifest)
    if opts.resume:
        todo = [s for s in sources if not is_done(loaded.records.get(s.rel), s, key, out_real)]
    else:
        todo = sources
    return BatchPlan(source, out_real, manifest, todo, len(sources) - len(todo), stats, key, loaded.bad_lines,
                     manifest_existed=manifest.exists(), tags=_stem_tags(sources))


def remove_stale_partials(out_root: Path) -> int:
    """Delete temp files that a killed run left in the output tree; returns the count.

    Only names that :func:`autocrop.io.fs.atomic_write` gives its temp files are touched (never a user's
    own ``.something.part``), and only under the output root.
    """
    removed = 0
    for folder, _dirs, files in os.walk(out_root, followlinks=False):
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


def _stem_tags(sources: list[SourceFile]) -> dict[str, str]:
    """rel -> tag for inputs that share their folder and stem (case-insensitively) with another input.

    ``a.png`` and ``a.gif`` would both write ``a.crop1.png``; every member of such a group gets its suffix as a
    tag instead (``a_png.crop1.png``, ``a_gif.crop1.png``), the same in every run whatever else is added.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for s in sources:
        parent, _, name = s.rel.rpartition("/")
        stem = name.rsplit(".", 1)[0] if "." in name else name
        groups.setdefault((parent, stem.casefold()), []).append(s.rel)
    tags: dict[str, str] = {}
    for members in groups.values():
        if len(members) > 1:
            for rel in members:
                tags[rel] = rel.rpartition(".")[2] if "." in rel.rpartition("/")[2] else "noext"
    return tags


def _items(plan: BatchPlan) -> Iterator[WorkItem]:
    for s in plan.todo:
        yield WorkItem(str(s.path), s.rel, s.size, s.mtime_ns, str(mirror_dir(plan.out, s.rel)), plan.tags.get(s.rel))


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
    parameters or an output folder that cannot be written, and :class:`FatalOutputError` when the OS refuses a
    write in a way no other input would survive (disk full, read-only, permission; decided by its errno): the
    batch then stops, every finished input is in the manifest and the same call continues later.
    """
    out_stream = out_stream or sys.stdout
    t0 = time.perf_counter()
    if not opts.settings and isinstance(cropper_factory, CropperSpec):
        opts = replace(opts, settings=cropper_factory.output_key())
    plan = plan_batch(opts)
    tally = Tally(total=len(plan.todo) + plan.done, done_before=plan.done, ignored=plan.stats.ignored, started=t0,
                  dry_run=opts.dry_run, out=str(plan.out), manifest=str(plan.manifest))
    for folder, reason in plan.stats.unreadable_dirs:
        tally.failures.append((folder, f"folder not readable: {reason}"))
    if opts.dry_run:
        for s in plan.todo:
            target = mirror_dir(plan.out, s.rel)
            tally.planned.append((s.rel, str(target)))
            print(f"would crop {s.rel} -> {target}", file=out_stream)
        tally.finished = time.perf_counter()
        print(format_summary(tally), file=out_stream)
        return tally
    dest = Destination(
        source_root=str(plan.source),
        out_root=str(plan.out),
        allow_inside_source=opts.allow_inside_source,
        overwrite=opts.overwrite or plan.manifest_existed,
        settings=plan.settings,
        engine=opts.engine,
    )
    if plan.todo:
        remove_stale_partials(plan.out)
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

        try:
            if opts.engine == "ray":
                from autocrop.batch.ray_engine import run_ray

                run_ray(_items(plan), dest, cropper_factory, jobs, on_record, address=opts.ray_address)
            else:
                from autocrop.batch.local import run_local

                run_local(_items(plan), dest, cropper_factory, jobs, on_record)
        except KeyboardInterrupt:
            tally.interrupted = True
    tally.finished = time.perf_counter()
    print(format_summary(tally), file=out_stream)
    return tally
