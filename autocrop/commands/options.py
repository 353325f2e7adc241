"""The crop options that ``crop`` and ``batch`` share, declared once (typer ``Annotated`` aliases).

Each has the Python parameter name the CLI's config ``default_map`` fills (ratio, top, quality, name,
format, model, device, faces), and a ``None`` default meaning "the built-in default of
:class:`autocrop.settings.CropSettings`".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RatioOption = Annotated[list[str] | None, typer.Option(
    "--ratio", "-r", metavar="W:H", show_default=False,
    help="Aspect ratio W:H of the crops (16:9, 4:5, 1.91:1), 'original' or 'free'; repeat or comma-separate "
         "for several.")]
TopOption = Annotated[int | None, typer.Option(
    "--top", "-k", metavar="K", show_default=False, help="Crops per photo and ratio [default: 1].")]
NameOption = Annotated[str | None, typer.Option(
    "--name", metavar="PATTERN", show_default=False,
    help="File-name pattern with {stem} {rank} {ratio} {ext} {w} {h} [default: {stem}.crop{rank}.{ext}].")]
SizeOption = Annotated[str | None, typer.Option(
    "--size", metavar="WxH", show_default=False,
    help="Resize every crop to WxH pixels (shrinks only, see --upscale; implies --ratio W:H when none is given).")]
LongEdgeOption = Annotated[int | None, typer.Option(
    "--long-edge", metavar="PX", show_default=False,
    help="Resize every crop so its longer side is PX pixels (shrinks only, see --upscale).")]
UpscaleOption = Annotated[bool, typer.Option("--upscale", help="Let --size / --long-edge enlarge small crops.")]
QualityOption = Annotated[int | None, typer.Option(
    "--quality", metavar="Q", show_default=False, help="JPEG/WebP quality 1..100 [default: 95].")]
FormatOption = Annotated[str | None, typer.Option(
    "--format", metavar="FORMAT", show_default=False,
    help="Output format jpeg, png, webp, tiff or bmp [default: the input's].")]
PreviewOption = Annotated[bool, typer.Option("--preview", help="Also write STEM.preview.png with the chosen boxes.")]
ModelOption = Annotated[Path | None, typer.Option(
    "--model", metavar="MODEL", show_default=False,
    help="grid or set (the packaged models), or a model file (NAME.safetensors) [default: grid].")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", metavar="DEVICE", show_default=False, help="auto, cpu, cuda, cuda:N or mps [default: cpu].")]
FacesOption = Annotated[str | None, typer.Option(
    "--faces", metavar="on|off", show_default=False,
    help="Face-aware crops: never cut a face, keep the main face (and people of its size) when a crop of the "
         "ratio can [default: on].")]
KeepOption = Annotated[list[str] | None, typer.Option(
    "--keep", metavar="X1,Y1,X2,Y2", show_default=False,
    help="A box every crop must hold wholly: pixels of the photo, or 0..1 fractions when all values are <= 1 "
         "(repeatable).")]
FocusOption = Annotated[str | None, typer.Option(
    "--focus", metavar="X,Y", show_default=False,
    help="A point every crop must hold; crops centred nearer it are preferred (pixels, or 0..1 fractions).")]
RuntimeOption = Annotated[str | None, typer.Option(
    "--runtime", metavar="RUNTIME", show_default=False,
    help="Inference runtime: auto (ONNX Runtime on the CPU when a graph fits the model, else torch), onnx or torch "
         "[default: auto].")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", metavar="N", envvar="AUTOCROP_THREADS", show_default=False,
    help="Intra-op threads of the model [default: 1 with ONNX Runtime, torch's own otherwise].")]
