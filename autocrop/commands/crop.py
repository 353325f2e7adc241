"""``autocrop crop IMAGE...`` (also ``autocrop IMAGE...``): the best crops of single photos.

Thin layer over :class:`autocrop.engine.Engine`: resolves options (command line > AUTOCROP_* >
config file > defaults), runs the engine per photo, prints a rich table (stdout; stderr with
``--json``) and, with ``--json``, one JSON document on stdout. A bad photo gets a one-line error
naming it; the other photos are still processed and the exit status is 1 at the end. Errors that
concern the whole call (a bad option, a broken config file, a missing model) exit with 2 before any
photo is processed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from autocrop.errors import InputError

EXIT_SOME_FAILED = 1

RATIO_HELP = "Aspect ratio W:H of the crops (16:9, 4:5, 1.91:1), 'original' or 'free'; repeat for several."


def crop_command(
    images: Annotated[list[str], typer.Argument(metavar="IMAGE", help="Photos to crop (JPEG, PNG, WebP, TIFF, BMP, GIF, AVIF; HEIC with the heif extra).",
                                                show_default=False)],
    ratio: Annotated[Optional[list[str]], typer.Option("--ratio", "-r", metavar="W:H", help=RATIO_HELP, show_default=False)] = None,
    top: Annotated[Optional[int], typer.Option("--top", "-k", metavar="K", help="Crops per photo and ratio (config: 1).",
                                               show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Directory for the crops (default: beside each photo).",
                                                show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="PATTERN", help="File-name pattern; fields {stem} {rank} {ratio} {ext} {w} {h} "
                                                "(default {stem}.crop{rank}.{ext}).", show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option("--size", metavar="WxH", help="Resize every crop to exactly WxH pixels "
                                                "(implies --ratio W:H when no ratio is given).", show_default=False)] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", metavar="Q", help="JPEG/WebP quality 1..100 (default 95).",
                                                   show_default=False)] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", metavar="FORMAT", help="Output format jpeg|png|webp (default: the input's).",
                                               show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON on stdout (human output to stderr).")] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Also write STEM.preview.png with the ranked boxes drawn.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Choose the crops and show the planned files; write nothing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files (never the input).")] = False,
    model: Annotated[Optional[Path], typer.Option("--model", metavar="FILE", help="Model weights (.safetensors); default: the packaged model.",
                                                  show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", metavar="DEVICE", help="torch device (default cpu).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print timings and the model used.")] = False,
) -> None:
    """Find the best crops of each photo and write them as PHOTO.crop1.jpg, PHOTO.crop2.jpg, ..."""
    from autocrop import config as config_module
    from autocrop import engine as eng

    settings = config_module.load_config()
    ratio_values = ratio if ratio else (settings["ratio"] or None)
    specs = eng.parse_ratios(ratio_values)
    top_value = eng.check_top(settings.get("top", top))
    size_value = eng.parse_size(size)
    specs = eng.ratios_for_size(specs, size_value)
    options = eng.OutputOptions(
        out_dir=out.expanduser() if out is not None else None,
        name=settings.get("name", name),
        size=size_value,
        quality=settings.get("quality", quality),
        format=settings.get("format", fmt) or None,
        overwrite=overwrite,
    )
    options = eng.check_options(options, specs, top_value)
    if options.out_dir is not None and not dry_run:
        _prepare_out_dir(options.out_dir)

    human = _console(stderr=json_out)
    errors = _console(stderr=True)
    model_path = settings.get("model", str(model) if model is not None else None) or None
    engine = eng.Engine(model=model_path, device=settings.get("device", device))

    engine.preload()  # import torch + load the model while the first photo is decoded

    documents: list[dict[str, Any]] = []
    failed = 0
    for image in images:
        path = Path(image)
        try:
            if path.is_dir():
                raise InputError(f"{path}: is a directory, not an image (use 'autocrop batch {path}' for folders)")
            result = engine.run(path, specs, top_value, options, dry_run=dry_run, preview=preview)
        except InputError as err:
            failed += 1
            typer.echo(f"autocrop: error: {err}", err=True)
            documents.append({"input": str(path), "crops": [], "error": str(err)})
            continue
        documents.append(result.to_dict())
        if not quiet:
            _print_result(human, result, specs, top_value, dry_run, verbose)
    engine.wait()
    if verbose and not quiet and engine.model_loaded:
        weights = getattr(engine.scorer, "weights_path", None)
        errors.print(f"model: {weights or 'untrained/in-memory'} on {engine.device}")
    if json_out:
        sys.stdout.write(json.dumps({"results": documents, "failed": failed, "dry_run": dry_run}, indent=2) + "\n")
        sys.stdout.flush()
    if failed:
        if not quiet and len(images) > 1:
            errors.print(f"{failed} of {len(images)} photos failed")
        raise typer.Exit(EXIT_SOME_FAILED)


def _console(stderr: bool) -> Any:
    """A rich console; when not writing to a terminal, wide enough that paths are never cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 400
    return Console(stderr=stderr, highlight=False, width=wide)


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``--out`` and check that files can be created in it (raises InputError)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out_dir}: cannot create output directory: {err.strerror or err}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"{out_dir}: output directory is not writable")


def _print_result(console: Any, result: Any, specs: list[Any], top: int, dry_run: bool, verbose: bool) -> None:
    from rich.table import Table

    several = len(specs) > 1
    console.print(f"{result.source}  {result.width}x{result.height}, {result.candidates} views scored")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("rank", justify="right")
    if several or specs[0].kind != "free":
        table.add_column("ratio")
    table.add_column("box x1,y1,x2,y2 (px)")
    table.add_column("size", justify="right")
    table.add_column("score", justify="right")
    table.add_column("would write" if dry_run else "file", overflow="fold")
    for crop in result.crops:
        row = [str(crop.rank)]
        if several or specs[0].kind != "free":
            row.append(crop.ratio)
        row += [",".join(str(v) for v in crop.box), f"{crop.width}x{crop.height}", f"{crop.score:.3f}",
                str(crop.path) if crop.path is not None else "-"]
        table.add_row(*row)
    console.print(table)
    for spec in specs:
        found = sum(1 for crop in result.crops if crop.ratio == spec.label)
        if found < top:
            console.print(f"note: only {found} distinct {spec.label} crop(s) fit this photo (asked for {top})")
    if result.preview is not None:
        console.print(f"preview: {result.preview}")
    if verbose:
        parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items())
        console.print(f"timings: {parts}")


def register(app: typer.Typer) -> None:
    """Add ``autocrop crop`` to the app."""
    app.command("crop", no_args_is_help=True)(crop_command)
