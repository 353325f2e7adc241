"""``autocrop export MODEL.safetensors``: the model's ONNX graph, for the ONNX Runtime path of crop, batch and Cropper.

By default the file holds the graph only and goes beside the model (``MODEL.onnx``), where the model
loader looks for it: the weights stay in the safetensors file and are supplied at session creation, so
they are stored once. ``--embed-weights`` writes a standalone ONNX model instead (for other tools).
The scores of both runtimes are compared on a test image before writing (``--no-verify`` skips that).
Needs torch, onnx and onnxscript (the ``export`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from autocrop.errors import OutputError, UsageError

EPILOG = ("Example: autocrop export runs/final/final.safetensors  (writes runs/final/final.onnx; "
          "then autocrop --model runs/final/final.safetensors runs on ONNX Runtime). "
          "Exit codes: 0 ok, 2 usage or fatal error.")


def export_command(
    model: Annotated[Path | None, typer.Argument(metavar="MODEL", show_default=False,
                                                 help="A .safetensors model (default: the packaged model).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", show_default=False,
                                             help="The ONNX file to write (default: MODEL with .onnx).")] = None,
    embed_weights: Annotated[bool, typer.Option("--embed-weights",
                                                help="Put the weights into the ONNX file (standalone model).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify",
                                         help="Compare ONNX Runtime's and torch's scores before writing.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing ONNX file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write the ONNX graph of a model (graph only, beside the model, unless told otherwise)."""
    from autocrop.model.export import export_onnx
    from autocrop.model.resolve import resolve_weights
    from autocrop.model.set_config import read_arch

    weights = resolve_weights(model)
    target = (out if out is not None else weights.with_suffix(".onnx")).expanduser()
    if target.suffix.lower() != ".onnx":
        raise UsageError(f"out {str(target)!r}: the file name must end in .onnx")
    if target.resolve() == weights.resolve():
        raise UsageError(f"out {str(target)!r}: is the model itself")
    if target.is_dir():
        raise OutputError(target, "is a folder")
    if target.exists() and not overwrite:
        raise OutputError(target, "exists (use --overwrite to replace it)")
    if read_arch(weights) == "set":  # the set-prediction model has its own graph (autocrop.model.set_onnx)
        from autocrop.model.set_onnx import export_set_onnx as export_onnx
    written = export_onnx(weights, target, embed_weights=embed_weights, verify=verify)
    size = written.stat().st_size
    if as_json:
        typer.echo(json.dumps({"model": str(weights), "onnx": str(written), "bytes": size,
                               "weights": "embedded" if embed_weights else "external", "verified": verify}))
    else:
        what = "standalone model" if embed_weights else f"graph only; weights stay in {weights.name}"
        typer.echo(f"wrote {written} ({size / 1024:.0f} KiB, {what})", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``export`` verb to the CLI."""
    app.command("export", epilog=EPILOG)(export_command)
