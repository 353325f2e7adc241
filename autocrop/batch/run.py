"""``run_batch``: plan a batch (walk, resume), run it on the local or the Ray engine, record and summarise it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from autocrop.batch.manifest import MANIFEST_NAME, ManifestWriter, is_done, load_manifest, settings_key
from autocrop.batch.summary import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, Progress, Tally, format_summary
from autocrop.batch.walk import SourceFile, WalkStats, check_locations, mirror_dir, walk_sources
from autocrop.batch.worker import BatchEngine, Destination, WorkItem
from autocrop.errors import InputError

EngineFactory = Callable[[], BatchEngine]


@dataclass
class BatchOptions:
    """Everything ``autocrop batch`` was asked to do (paths as given; resolved by :func:`run_batch`).

    ``settings``: the crop settings that change the outputs (ratios, top, format, quality, model, ...); their hash
    is stored per manifest record so that resume re-does inputs cropped with other settings.
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
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def plan_batch(opts: BatchOptions) -> BatchPlan:
    """Check the locations, walk the source, read the manifest; raises :class:`InputError` (one line)."""
    out = opts.out if opts.out is not None else default_out(opts.source)
    if opts.dry_run:
        source = Path(opts.source).expanduser()
        if not source.is_dir():
            raise InputError(f"{source}: source folder does not exist" if not source.exists()
                             else f"{source}: source is not a folder (use `autocrop crop` for single images)")
        source = source.resolve()
        out_real = Path(out).expanduser().resolve()
        if (out_real == source or source in out_real.parents) and not opts.allow_inside_source:
            raise InputError(f"{out}: output folder is inside the source folder {source} (pass --allow-inside-source)")
    else:
        source, out_real = check_locations(opts.source, out, opts.allow_inside_source)
    if out_real == source:
        raise InputError(f"{out}: output folder is the source folder {source}")
    manifest = Path(opts.manifest).expanduser().resolve() if opts.manifest else out_real / MANIFEST_NAME
    if (manifest == source or source in manifest.parents) and not (opts.allow_inside_source and out_real in manifest.parents):
        raise InputError(f"{manifest}: the manifest would be written inside the source folder {source}")
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
    """Delete temp files (``.NAME.XXXX.part``) that a killed run left in the output tree; returns the count.

    Only files matching the atomic writer's temp pattern are touched, and only under the output root.
    """
    removed = 0
    for folder, dirs, files in os.walk(out_root, followlinks=False):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


class _Stop:
    """Turns SIGTERM (and SIGHUP) into KeyboardInterrupt in the main thread, restoring handlers afterwards."""

    def __enter__(self) -> "_Stop":
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
    engine_factory: EngineFactory,
    out_stream: TextIO | None = None,
    progress_stream: TextIO | None = None,
    force_plain: bool | None = None,
) -> tuple[int, Tally]:
    """Run the batch; returns (exit code, tally). Raises :class:`InputError` / ``FatalOutputError`` (one line).

    ``engine_factory`` is called at most once, and only when some input needs work (a finished batch re-run
    loads no model). Exit codes: 0 all ok, 3 some inputs failed, 130 interrupted (see ``summary``).
    """
    out_stream = out_stream or sys.stdout
    t0 = time.perf_counter()
    plan = plan_batch(opts)
    tally = Tally(total=len(plan.todo) + plan.done, done_before=plan.done, ignored=plan.stats.ignored, started=t0)
    dest = Destination(
        source_root=str(plan.source),
        out_root=str(plan.out),
        allow_inside_source=opts.allow_inside_source,
        overwrite=opts.overwrite or plan.manifest_existed,
        settings=plan.settings,
        engine=opts.engine,
    )
    if opts.dry_run:
        for s in plan.todo:
            print(f"would crop {s.rel} -> {mirror_dir(plan.out, s.rel)}", file=out_stream)
        tally.finished = time.perf_counter()
        print(format_summary(tally, str(plan.manifest), str(plan.out), dry_run=True), file=out_stream)
        return EXIT_OK, tally
    if plan.todo:
        remove_stale_partials(plan.out)
    interrupted = False
    jobs = opts.jobs if opts.jobs > 0 else default_jobs()
    with ManifestWriter(plan.manifest) as writer, Progress(
        len(plan.todo), stream=progress_stream, force_plain=force_plain, quiet=opts.quiet
    ) as progress, _Stop():

        def on_record(record: dict[str, Any]) -> None:
            writer.write(record)
            tally.add(record)
            progress.advance(record)

        try:
            if opts.engine == "ray":
                from autocrop.batch.ray_engine import run_ray

                run_ray(_items(plan), dest, engine_factory, jobs, on_record, address=opts.ray_address)
            else:
                from autocrop.batch.local import run_local

                run_local(_items(plan), dest, engine_factory, jobs, on_record)
        except KeyboardInterrupt:
            interrupted = True
    tally.finished = time.perf_counter()
    if plan.stats.unreadable_dirs:
        for entry in plan.stats.unreadable_dirs:
            tally.failures.append((entry.split(":", 1)[0] + "/", "folder not readable: " + entry.split(":", 1)[-1].strip()))
    print(format_summary(tally, str(plan.manifest), str(plan.out), interrupted=interrupted), file=out_stream)
    if interrupted:
        return EXIT_INTERRUPTED, tally
    return (EXIT_SOME_FAILED if tally.failed or plan.stats.unreadable_dirs else EXIT_OK), tally
