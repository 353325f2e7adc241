"""``autocrop crop IMAGE...`` (also ``autocrop IMAGE...``): the best crops of single photos.

options -> :class:`~autocrop.settings.CropSettings` -> :class:`~autocrop.cropper.Cropper` per photo -> print.
A table goes to stdout (stderr with ``--json`` or ``--out -``), JSON to stdout. A bad photo gets one
line naming it; the other photos are still processed and the exit status is 3 at the end. Problems of
the whole call (a bad option, a missing model) exit with 2 before any photo is processed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from autocrop.commands import exit_codes
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
    ThreadsOption,
    TopOption,
    UpscaleOption,
)
from autocrop.commands.output import error_line, text_table
from autocrop.errors import InputError, OutputError, UsageError

STDIO = "-"
EPILOG = ("Example: autocrop photo.jpg --ratio 16:9 --top 3 --out crops/   "
          "Exit codes: 0 ok, 2 usage or fatal error, 3 some photos failed, 130 interrupted.")


def crop_command(
    images: Annotated[list[str], typer.Argument(
        metavar="IMAGE", show_default=False,
        help="Photos to crop (JPEG, PNG, WebP, TIFF, BMP, GIF, AVIF; HEIC with the heif extra); '-' reads one from stdin.")],
    ratio: RatioOption = None,
    top: TopOption = None,
    out: Annotated[str | None, typer.Option("--out", "-o", metavar="DIR", show_default=False,
                                               help="Folder for the crops [default: beside each photo]; '-' writes "
                                                    "the one crop to stdout.")] = None,
    name: NameOption = None,
    size: SizeOption = None,
    long_edge: LongEdgeOption = None,
    upscale: UpscaleOption = False,
    quality: QualityOption = None,
    format: FormatOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    preview: PreviewOption = False,
    faces: FacesOption = None,
    keep: KeepOption = None,
    focus: FocusOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Choose the crops and list the planned files; "
                                                            "write nothing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files (never an input).")] = False,
    model: ModelOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print timings and the model used.")] = False,
) -> None:
    """Find the best crops of each photo and write them as PHOTO.crop1.jpg, PHOTO.crop2.jpg, ..."""
    from autocrop.cropper import Cropper
    from autocrop.settings import CropSettings

    settings = CropSettings.build(ratio=ratio or None, top=top, size=size, long_edge=long_edge, upscale=upscale,
                                  name=name, format=format, quality=quality, preview=preview, overwrite=overwrite,
                                  faces=faces, keep=keep or None, focus=focus)
    to_stdout = out == STDIO
    _check_stdio(images, settings, to_stdout, json_out, dry_run)
    out_dir = None if out is None or to_stdout else Path(out).expanduser()
    if out_dir is not None and not dry_run:
        _prepare_out_dir(out_dir)
    cropper = Cropper(model=model, device=device or "cpu", runtime=runtime or "auto", threads=threads)
    cropper.preload(faces=settings.faces)  # load the model(s) while the first photo is decoded
    if len(images) > 1:
        from autocrop.commands.allocator import keep_freed_memory

        keep_freed_memory()  # photo after photo in this process: reuse image memory (see the module)

    human = sys.stderr if json_out or to_stdout else sys.stdout  # plain text: see commands.output
    protected = [Path(p) for p in images if p != STDIO]
    documents: list[dict[str, Any]] = []
    failed = 0
    for image in images:
        label = "<stdin>" if image == STDIO else image
        try:
            source = _read_stdin() if image == STDIO else _photo_path(image)
            if to_stdout:
                result = cropper.crop(source, settings)
                _write_stdout(result, settings)
            else:
                result = cropper.crop(source, settings, out=out_dir, write=True, dry_run=dry_run, protected=protected)
        except (InputError, OutputError) as err:  # this photo failed; the others go on
            failed += 1
            error_line(err)
            documents.append({"input": label, "crops": [], "error": str(err)})
            continue
        documents.append(result.to_dict())
        if not quiet:
            for warning in result.warnings:  # the face rule could not be kept: one line each on stderr
                typer.echo(f"autocrop: warning: {warning}", err=True)
            _print_result(human, result, settings, dry_run, verbose)
    cropper.wait()
    if not quiet and cropper.runtime_note:
        typer.echo(f"autocrop: note: {cropper.runtime_note}", err=True)
    if verbose and not quiet and cropper.model_loaded:
        weights = getattr(cropper.scorer, "weights_path", None)
        runtime = getattr(cropper.scorer, "runtime", "torch")
        print(f"model: {weights or 'in-memory'} on {cropper.device} ({runtime})", file=human)
    if json_out:
        sys.stdout.write(json.dumps({"results": documents, "failed": failed, "dry_run": dry_run}, indent=2) + "\n")
        sys.stdout.flush()
    if failed:
        if not quiet and len(images) > 1:
            typer.echo(f"{failed} of {len(images)} photos failed", err=True)
        raise typer.Exit(exit_codes.EXIT_SOME_FAILED)


def _prepare_out_dir(out_dir: Path) -> None:
    """Create the output folder and check that files can be created in it (one line and exit 2 if not)."""
    from autocrop.io.fs import ensure_folder

    ensure_folder(out_dir)
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(out_dir, "the folder is not writable")


def _photo_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a photo (use 'autocrop batch' for folders)")
    return path


def _read_stdin() -> Any:
    from autocrop.io.decode import MemorySource

    return MemorySource(sys.stdin.buffer.read(), label="<stdin>", stem="stdin")


def _check_stdio(images: list[str], settings: Any, to_stdout: bool, json_out: bool, dry_run: bool) -> None:
    """``-`` may be read once; ``--out -`` takes exactly one crop and no other stdout output."""
    if images.count(STDIO) > 1:
        raise UsageError("images: '-' (standard input) can be given only once")
    if not to_stdout:
        return
    if json_out or dry_run:
        raise UsageError("out '-': the crop itself goes to standard output, so json and dry_run cannot be used")
    if len(images) != 1 or settings.top != 1 or len(settings.ratios) != 1 or settings.preview:
        raise UsageError("out '-': writes exactly one crop (one photo, top 1, one ratio, no preview)")
    if sys.stdout.isatty():
        raise UsageError("out '-': standard output is a terminal; redirect it to a file or a pipe")


def _write_stdout(result: Any, settings: Any) -> None:
    from autocrop.io.encode import encode_bytes, output_format

    if not result.crops or result.crops[0].image is None:
        raise InputError(f"{result.source}: no crop was found")
    data = encode_bytes(result.crops[0].image, output_format(result.format, settings.format), settings.quality)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _print_result(human: IO[str], result: Any, settings: Any, dry_run: bool, verbose: bool) -> None:
    """The photo's line, a table of its crops, and notes, as plain text on ``human`` (see ``output.text_table``)."""
    ratio_column = len(settings.ratios) > 1 or settings.ratios[0].kind != "free"
    faces_note = "" if result.faces is None else f", {len(result.faces)} face{'' if len(result.faces) == 1 else 's'}"
    lines = [f"{result.source}  {result.width}x{result.height}, {result.candidates} views scored{faces_note}"]
    header = ["rank"] + (["ratio"] if ratio_column else []) + ["box x1,y1,x2,y2 (px)", "size", "score"]
    header += (["faces in"] if result.faces else []) + ["would write" if dry_run else "file"]
    rows = []
    for crop in result.crops:
        target = str(crop.path) if crop.path is not None else "-"
        if dry_run and crop.exists:
            target += "  (exists)"
        row = [str(crop.rank)] + ([crop.ratio] if ratio_column else [])
        row += [",".join(str(v) for v in crop.box), f"{crop.width}x{crop.height}", f"{crop.score:.3f}"]
        row += ([f"{len(crop.faces or ())}/{len(result.faces)}"] if result.faces else []) + [target]
        rows.append(row)
    right = {0, header.index("size"), header.index("score")} | ({header.index("faces in")} if result.faces else set())
    lines.append(text_table(header, rows, right))
    for spec in settings.ratios:
        found = sum(1 for crop in result.crops if crop.ratio == spec.label)
        if found < settings.top:
            lines.append(f"note: only {found} distinct {spec.label} crop(s) fit this photo (asked for {settings.top})")
    if result.preview is not None:
        lines.append(f"preview: {result.preview}")
    if verbose:
        lines.append("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    print("\n".join(lines), file=human)


def register(app: typer.Typer) -> None:
    """Add ``autocrop crop`` to the app."""
    app.command("crop", no_args_is_help=True, epilog=EPILOG)(crop_command)

