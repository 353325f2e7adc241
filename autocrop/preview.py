"""Preview drawing: the photo with its chosen crops outlined and numbered by rank."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from autocrop.io.decode import to_rgb

if TYPE_CHECKING:  # pragma: no cover
    from autocrop.results import CropResult

PREVIEW_LONG_SIDE = 1600  # pixels of the preview's longer side (never enlarged)
# One colour per rank (rank 1 first); cycled beyond.
RANK_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 64, 160), (120, 230, 80), (255, 128, 0), (170, 120, 255))


def draw_preview(image: Image.Image, result: CropResult, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """RGB copy of ``image`` (any size, EXIF-oriented) scaled to at most ``long_side`` px, with every
    crop of ``result`` drawn as a rectangle labelled "<rank>" (or "<ratio> #<rank>" for several ratios).

    Boxes in ``result`` are pixels of the original (``result.width`` x ``result.height``); they are
    scaled to the preview's size. Lower ranks are drawn last, so the best crop is on top.
    """
    canvas = to_rgb(image)
    scale = min(1.0, long_side / max(canvas.size))
    if scale < 1.0:
        canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                               Image.Resampling.BILINEAR, reducing_gap=2.0)
    else:
        canvas = canvas.copy()
    sx, sy = canvas.width / result.width, canvas.height / result.height
    draw = ImageDraw.Draw(canvas)
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


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()
