"""Preview drawing: the photo with its chosen crops outlined and numbered by rank, and the faces found (thin boxes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from autocrop.io.decode import to_rgb

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from pathlib import Path

    from autocrop.faces.detect import Face
    from autocrop.results import CropResult

PREVIEW_LONG_SIDE = 1600  # pixels of the preview's longer side (never enlarged)
# One colour per rank (rank 1 first); cycled beyond.
RANK_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 64, 160), (120, 230, 80), (255, 128, 0), (170, 120, 255))
FACE_COLOUR = (255, 255, 255)  # faces: thin white boxes with a dark outer line, so they show on any photo
FACE_SHADOW = (0, 0, 0)


def _canvas(image: Image.Image, long_side: int) -> Image.Image:
    """RGB copy of ``image`` scaled to at most ``long_side`` px (never enlarged)."""
    canvas = to_rgb(image)
    scale = min(1.0, long_side / max(canvas.size))
    if scale < 1.0:
        return canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
    return canvas.copy()


def draw_preview(image: Image.Image, result: CropResult, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """RGB copy of ``image`` (any size, EXIF-oriented) scaled to at most ``long_side`` px, with every
    crop of ``result`` drawn as a rectangle labelled "<rank>" (or "<ratio> #<rank>" for several ratios)
    and the faces found as thin boxes.

    Boxes in ``result`` are pixels of the original (``result.width`` x ``result.height``); they are
    scaled to the preview's size. Lower ranks are drawn last, so the best crop is on top.
    """
    canvas = _canvas(image, long_side)
    sx, sy = canvas.width / result.width, canvas.height / result.height
    draw = ImageDraw.Draw(canvas)
    _draw_faces(draw, result.faces or (), sx, sy, max(canvas.size), labels=False)
    line = max(2, round(max(canvas.size) / 300))
    font = _font(max(12, round(max(canvas.size) / 40)))
    several = len({crop.ratio for crop in result.crops}) > 1
    for crop in sorted(result.crops, key=lambda c: -c.rank):
        colour = RANK_COLOURS[(crop.rank - 1) % len(RANK_COLOURS)]
        x1, y1, x2, y2 = crop.box
        box = (round(x1 * sx), round(y1 * sy), round(x2 * sx) - 1, round(y2 * sy) - 1)
        draw.rectangle(box, outline=colour, width=line)
        label = f"{crop.ratio} #{crop.rank}" if several else f"#{crop.rank}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = line
        tx, ty = box[0] + line, box[1] + line
        draw.rectangle((tx, ty, tx + right - left + 2 * pad, ty + bottom - top + 2 * pad), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), label, fill=(0, 0, 0), font=font)
    return canvas


def save_preview(image: Image.Image, result: CropResult, path: Path, overwrite: bool = False) -> None:
    """Write :func:`draw_preview` of ``image`` (the full-size photo) as a PNG at ``path``, atomically."""
    from autocrop.io.encode import save_image

    save_image(draw_preview(image, result), path, "PNG", overwrite=overwrite)


def draw_faces(image: Image.Image, faces: Sequence[Face], width: int, height: int,
               long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """RGB copy of ``image`` scaled to at most ``long_side`` px with each face drawn as a thin box labelled
    "<index> <score>" (``autocrop faces``). Face boxes are pixels of the ``width`` x ``height`` photo."""
    canvas = _canvas(image, long_side)
    _draw_faces(ImageDraw.Draw(canvas), faces, canvas.width / width, canvas.height / height, max(canvas.size),
                labels=True)
    return canvas


def _draw_faces(draw: ImageDraw.ImageDraw, faces: Sequence[Face], sx: float, sy: float, size: int,
                labels: bool) -> None:
    """Thin face boxes (white inside a dark line) scaled by ``sx``/``sy`` on a canvas of long side ``size``
    px; with ``labels`` each is labelled "<index> <score>"."""
    font = _font(max(10, round(size / 60)))
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = (round(face.box[0] * sx), round(face.box[1] * sy), round(face.box[2] * sx) - 1,
                          round(face.box[3] * sy) - 1)
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=FACE_SHADOW, width=1)
        draw.rectangle((x1, y1, x2, y2), outline=FACE_COLOUR, width=1)
        if labels:
            text = f"{index} {face.score:.2f}"
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            ty = max(0, y1 - (bottom - top) - 4)
            draw.rectangle((x1, ty, x1 + right - left + 4, ty + bottom - top + 4), fill=FACE_SHADOW)
            draw.text((x1 + 2 - left, ty + 2 - top), text, fill=FACE_COLOUR, font=font)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()
