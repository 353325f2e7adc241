"""``autocrop faces IMAGE...``: the faces the packaged detector finds, as the face rule of ``crop`` sees them.

Photos are decoded exactly as ``autocrop crop`` decodes them (EXIF-oriented, reduced size) and the faces
are detected on that image, so what this prints is what the crop's face rule works with. A table goes to
stdout (stderr with ``--json``); ``--preview FILE`` (one photo) or ``--out DIR`` (``STEM.faces.png`` per
photo) draws the faces. No ranking model is loaded. A bad photo gets one line and exit status 3 at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from autocrop.commands import exit_codes
from autocrop.commands.output import console, error_line
from autocrop.errors import InputError, OutputError, UsageError

FACES_SUFFIX = ".faces.png"
EPILOG = ("Boxes are x1,y1,x2,y2 in pixels of the photo as a viewer shows it (EXIF orientation applied); the crop "
          "rule grows them for hair and chin. Example: autocrop faces group.jpg --preview faces.png   "
          "Exit codes: 0 ok, 2 usage or fatal error, 3 some photos failed.")


def faces_command(
    images: Annotated[list[str], typer.Argument(metavar="IMAGE", show_default=False,
                                                help="Photos to look at (the formats of autocrop crop).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the faces as JSON on stdout.")] = False,
    preview: Annotated[Path | None, typer.Option("--preview", metavar="FILE", show_default=False,
                                                    help="Draw the faces of the one photo into FILE (PNG).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", show_default=False,
                                                help="Draw the faces of each photo into DIR/STEM.faces.png.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing drawings (never an input).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """List the faces found in each photo (box, score); optionally draw them."""
    from autocrop.cropper import Cropper

    if preview is not None and (out is not None or len(images) != 1):
        raise UsageError("preview: draws one photo; use out DIR for several photos")
    if out is not None:
        from autocrop.io.fs import ensure_folder

        ensure_folder(out.expanduser())
    cropper = Cropper()
    inputs = [Path(p) for p in images]
    human = console(stderr=json_out)
    documents: list[dict[str, Any]] = []
    failed = 0
    for path in inputs:
        try:
            if path.is_dir():
                raise InputError(f"{path}: is a folder, not a photo")
            decoded = cropper.decode(path)
            faces = cropper.detector.detect(decoded.image, decoded.scale)
            target = preview.expanduser() if preview is not None else (
                out.expanduser() / f"{path.stem}{FACES_SUFFIX}" if out is not None else None)
            if target is not None:
                _draw(path, faces, decoded.info.width, decoded.info.height, target, inputs, overwrite)
        except (InputError, OutputError) as err:
            failed += 1
            error_line(err)
            documents.append({"input": str(path), "faces": [], "error": str(err)})
            continue
        documents.append({"input": str(path), "width": decoded.info.width, "height": decoded.info.height,
                          "faces": [f.to_dict() for f in faces], "preview": str(target) if target else None,
                          "error": None})
        if not quiet:
            _print(human, documents[-1])
    if json_out:
        sys.stdout.write(json.dumps({"results": documents, "failed": failed}, indent=2) + "\n")
    if failed:
        raise typer.Exit(exit_codes.EXIT_SOME_FAILED)


def _draw(path: Path, faces: Any, width: int, height: int, target: Path, inputs: list[Path], overwrite: bool) -> None:
    """Write the photo with its faces drawn to ``target`` (PNG, atomically; never over an input)."""
    from autocrop.io.decode import load_full
    from autocrop.io.encode import save_image
    from autocrop.io.fs import same_file
    from autocrop.preview import draw_faces

    if any(target == p or same_file(target, p) for p in inputs):
        raise OutputError(target, "is an input photo of this run; it is never overwritten")
    if target.is_dir():
        raise OutputError(target, "is a folder")
    full, _ = load_full(path)
    save_image(draw_faces(full, faces, width, height), target, "PNG", overwrite=overwrite)


def _print(human: Any, document: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    faces = document["faces"]
    human.print(escape(f"{document['input']}  {document['width']}x{document['height']}, "
                       f"{len(faces)} face{'' if len(faces) == 1 else 's'}"))
    if faces:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("#", "box x1,y1,x2,y2 (px)", "size", "score"):
            table.add_column(column, justify="left" if column.startswith("box") else "right")
        for index, face in enumerate(faces):
            x1, y1, x2, y2 = face["box"]
            table.add_row(str(index), f"{x1},{y1},{x2},{y2}", f"{x2 - x1}x{y2 - y1}", f"{face['score']:.2f}")
        human.print(table)
    if document["preview"]:
        human.print(escape(f"drawn: {document['preview']}"))


def register(app: typer.Typer) -> None:
    """Add ``autocrop faces`` to the app."""
    app.command("faces", no_args_is_help=True, epilog=EPILOG)(faces_command)
