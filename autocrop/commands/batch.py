"""``autocrop batch SRC``: crop every photo of a folder tree into a mirrored tree, safely and resumably.

options -> :class:`~autocrop.settings.CropSettings` -> :class:`~autocrop.batch.CropperSpec` ->
:func:`~autocrop.batch.run_batch` -> its :class:`~autocrop.batch.Tally` -> an exit code of
:mod:`autocrop.commands.exit_codes`. The summary goes to stdout (stderr with ``--json``, which prints the
tally as JSON on stdout); progress goes to stderr. A fatal output error (disk full, read-only, no permission:
decided by its errno) stops the batch with one line and exit 2, as does any usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from autocrop.commands.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from autocrop.commands.options import (
    DeviceOption,
    FacesOption,
    FocusOption,
    FormatOption,
    KeepOption,
    LongEdgeOption,
    ModelOption,
    NameOption,
    PreviewOption,
    QualityOption,
    RatioOption,
    RuntimeOption,
    SizeOption,
    TopOption,
    UpscaleOption,
)

if TYPE_CHECKING:
    from autocrop.batch.summary import Tally

EPILOG = (
    "Outputs go to OUT/<same sub-folders>/<stem>.crop<rank>.<ext>; originals are only read. "
    "OUT/autocrop-manifest.jsonl records every input (one JSON line each); running the same command again "
    "skips the inputs already done.\n\n"
    "Exit codes: 0 all inputs done, 2 usage or fatal error (bad option, missing source, unwritable output, "
    "disk full), 3 some inputs failed (the others were done), 130 interrupted.\n\n"
    "Example: autocrop batch ./album --out ./crops --ratio 16:9"
)


def exit_code(tally: Tally) -> int:
    """The exit code of a finished (or interrupted) batch."""
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if tally.complete else EXIT_SOME_FAILED


def batch_command(
    source: Annotated[Path, typer.Argument(metavar="SRC", show_default=False,
                                           help="Folder of photos (walked recursively by default).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", show_default=False,
                                                help="Output folder [default: SRC-autocrop beside SRC].")] = None,
    ratio: RatioOption = None,
    top: TopOption = None,
    size: SizeOption = None,
    long_edge: LongEdgeOption = None,
    upscale: UpscaleOption = False,
    quality: QualityOption = None,
    format: FormatOption = None,
    name: NameOption = None,
    preview: PreviewOption = False,
    faces: FacesOption = None,
    keep: KeepOption = None,
    focus: FocusOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders.")] = True,
    include: Annotated[list[str] | None, typer.Option("--include", metavar="GLOB", show_default=False,
                                                         help="Only inputs whose name or relative path matches "
                                                              "(repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB", show_default=False,
                                                         help="Skip inputs/folders whose name or relative path "
                                                              "matches (repeatable).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N",
                                      help="Parallel workers (threads locally, actors on Ray); 0 = one per core.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be cropped; write nothing, "
                                                            "load no model.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip inputs the manifest records as done "
                                                                      "with the same settings.")] = True,
    manifest: Annotated[Path | None, typer.Option("--manifest", metavar="FILE", show_default=False,
                                                     help="Manifest file [default: OUT/autocrop-manifest.jsonl].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files with output names even in "
                                                                "a folder no batch wrote to.")] = False,
    allow_inside_source: Annotated[bool, typer.Option("--allow-inside-source", help="Allow --out inside SRC "
                                                                                    "(it is then skipped by the walk).")] = False,
    engine: Annotated[str, typer.Option("--engine", metavar="ENGINE",
                                        help="local (threads on this machine) or ray (a Ray cluster or a local "
                                             "Ray instance).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDRESS", envvar="RAY_ADDRESS",
                                                       show_default=False,
                                                       help="Ray cluster address (e.g. auto or ray://head:10001); "
                                                            "none = start a local instance.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (progress and the "
                                                          "human summary go to stderr).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (the summary is still printed).")] = False,
) -> None:
    """Crop a whole folder tree: mirrored output tree, JSONL manifest, resumable, parallel."""
    import json
    import sys

    from autocrop.batch.run import ENGINES, BatchOptions, run_batch
    from autocrop.batch.worker import CropperSpec
    from autocrop.errors import UsageError
    from autocrop.model.resolve import resolve_weights
    from autocrop.settings import CropSettings, check_device, check_runtime

    if engine not in ENGINES:
        raise UsageError(f"engine {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "ray":
        from autocrop.batch.ray_engine import require_ray

        require_ray()
    settings = CropSettings.build(ratio=ratio or None, top=top, size=size, long_edge=long_edge, upscale=upscale,
                                  name=name, format=format, quality=quality, preview=preview, faces=faces,
                                  keep=keep or None, focus=focus)
    weights = str(resolve_weights(model).resolve()) if model is not None else None  # one line when missing
    spec = CropperSpec(settings=settings, model=weights, device=check_device(device), runtime=check_runtime(runtime),
                       threads=1)  # one intra-op thread per worker: the workers fill the cores
    opts = BatchOptions(
        source=source,
        out=out,
        manifest=manifest,
        recursive=recursive,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        jobs=jobs,
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        allow_inside_source=allow_inside_source,
        engine=engine,
        ray_address=ray_address,
        settings=spec.output_key(),
        quiet=quiet,
    )
    if engine == "local":
        from autocrop.commands.allocator import keep_freed_memory

        keep_freed_memory()  # photo after photo in this process: reuse image memory (see the module)
    tally = run_batch(opts, spec, out_stream=sys.stderr if json_out else sys.stdout)
    if json_out:
        sys.stdout.write(json.dumps(tally.as_dict(), indent=2, ensure_ascii=False) + "\n")
    raise typer.Exit(exit_code(tally))


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the ``autocrop`` app."""
    app.command("batch", epilog=EPILOG, no_args_is_help=True)(batch_command)
