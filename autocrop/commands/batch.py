"""``autocrop batch SRC``: crop every photo of a folder tree into a mirrored tree, safely and resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autocrop.errors import InputError

EPILOG = (
    "Outputs go to OUT/<same sub-folders>/<stem>.crop<rank>.<ext>; originals are only read. "
    "A manifest (OUT/autocrop-manifest.jsonl, one JSON line per input) records every input; running the same "
    "command again skips inputs already done (--no-resume to redo them). "
    "Exit codes: 0 all inputs cropped, 3 some inputs failed (listed in the summary and manifest), "
    "2 usage or fatal error (bad option, missing source, unwritable output, disk full), 130 interrupted."
)


def batch_command(
    source: Annotated[Path, typer.Argument(help="Folder of photos (walked recursively by default).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder [default: SRC-autocrop beside SRC].")] = None,
    ratio: Annotated[Optional[list[str]], typer.Option("--ratio", "-r", help="Aspect ratio W:H, 'original' or 'free' (repeat or comma-separate for several).")] = None,
    top: Annotated[Optional[int], typer.Option("--top", "-k", help="Crops per ratio and photo (config: 1).", show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Resize every crop to WIDTHxHEIGHT pixels.")] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", help="JPEG/WebP quality 1..100 (config: 95).", show_default=False)] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Output format jpeg|png|webp|tiff|bmp [default: the input's].")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Output file-name pattern, fields {stem} {rank} {ratio} {ext} {w} {h}.")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also write <stem>.preview.png with the chosen boxes drawn.")] = False,
    model: Annotated[Optional[Path], typer.Option("--model", help="Weights file (.safetensors) [default: the packaged model].")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="torch device for the local engine (config: cpu).", show_default=False)] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders.")] = True,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only inputs whose name or relative path matches this glob (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Skip inputs/folders whose name or relative path matches this glob (repeatable).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="Parallel workers (threads locally, actors on Ray); 0 = one per core.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be cropped; write nothing, load no model.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip inputs the manifest records as done with the same settings.")] = True,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file [default: OUT/autocrop-manifest.jsonl].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files with output names even in a folder no batch wrote to.")] = False,
    allow_inside_source: Annotated[bool, typer.Option("--allow-inside-source", help="Allow --out inside SRC (it is then skipped by the walk).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local (threads on this machine) or ray (a Ray cluster or a local Ray instance).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (e.g. auto or ray://head:10001); none = start a local instance.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (the summary is still printed).")] = False,
) -> None:
    """Crop a whole folder tree: mirrored output tree, JSONL manifest, resumable, parallel."""
    from autocrop.batch.run import BatchOptions, run_batch

    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine}: use 'local' or 'ray'")
    if engine == "ray":
        from autocrop.batch.ray_engine import require_ray

        require_ray()
    spec = _engine_spec(ratio, top, size, quality, fmt, name, preview, model, device)
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
        settings=spec.settings(),
        quiet=quiet,
    )
    code, _ = run_batch(opts, spec)
    raise typer.Exit(code)


def _engine_spec(ratio, top, size, quality, fmt, name, preview, model, device):  # type: ignore[no-untyped-def]
    """Resolve the crop options like ``autocrop crop`` (command line > AUTOCROP_* > config file > defaults) and
    validate them once, before any walking (one-line InputError on a bad value)."""
    from autocrop import config as config_module
    from autocrop.batch.adapter import EngineSpec
    from autocrop.engine import parse_size

    settings = config_module.load_config()
    ratio = ratio if ratio else ([settings["ratio"]] if settings["ratio"] else None)
    top = settings.get("top", top)
    quality = settings.get("quality", quality)
    fmt = settings.get("format", fmt) or None
    name = settings.get("name", name) or None
    device = settings.get("device", device)
    model_text = settings.get("model", str(model) if model is not None else None) or None
    model = Path(model_text) if model_text else None

    if model is not None and not Path(model).expanduser().is_file():
        raise InputError(f"{model}: model file not found")
    spec = EngineSpec(
        ratios=tuple(ratio or ()),
        top=top,
        size=parse_size(size),
        quality=quality,
        format=fmt,
        name=name,
        preview=preview,
        model=str(Path(model).expanduser().resolve()) if model else None,
        device=device,
    )
    spec.output_options()  # raises on a bad --name/--quality/--format/--size/--ratio/--top
    return spec


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the ``autocrop`` app."""
    app.command("batch", epilog=EPILOG, no_args_is_help=True)(batch_command)
