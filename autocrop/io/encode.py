"""Encode crops: output format and suffix, pixel-mode conversion, EXIF/ICC kept, atomic files.

Outputs keep the input's mode where the output format can store it (grayscale stays grayscale, CMYK
JPEG stays CMYK, a PNG keeps its alpha and 16-bit depth). Otherwise: alpha is composited over white
for JPEG/BMP, 16-bit is reduced to 8 bit, and CMYK is converted to RGB (through its ICC profile when it
has one; the CMYK profile is then not attached).

EXIF is kept with the orientation reset to 1 (pixels are already upright), the pixel-dimension tags
updated and the embedded thumbnail dropped (it would show the uncropped photo); the ICC profile is
kept. EXIF that cannot be re-encoded within :data:`MAX_OUTPUT_EXIF` bytes (what a JPEG can hold) is left
out. Files are written by :func:`autocrop.io.fs.atomic_write`.

TIFF crops are written with Deflate compression (lossless; any compression of the input, LZW, PackBits,
JPEG, ..., is decoded, never copied), or uncompressed when they carry EXIF: libtiff, which Pillow uses for
compressed TIFFs, cannot write an EXIF sub-IFD.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import IO

from PIL import Image

from autocrop.errors import UsageError
from autocrop.io.decode import to_rgb, to_uint8
from autocrop.io.fs import atomic_write
from autocrop.io.metadata import ORIENTATION_TAG, quiet_pillow
from autocrop.settings import DEFAULT_QUALITY, check_format

# Output formats: Pillow format name -> (canonical suffix, modes it stores as they are).
OUTPUT_FORMATS: dict[str, tuple[str, frozenset[str]]] = {
    "JPEG": (".jpg", frozenset({"L", "RGB", "CMYK"})),
    "PNG": (".png", frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})),
    "WEBP": (".webp", frozenset({"RGB", "RGBA"})),
    "TIFF": (".tif", frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"})),
    "BMP": (".bmp", frozenset({"1", "L", "P", "RGB"})),
}
# Input formats whose own encoder is not used for crops: GIF (palette, first frame only) -> PNG;
# HEIF/AVIF (optional/slow encoders) -> JPEG.
OUTPUT_FOR_INPUT = {"GIF": "PNG", "HEIF": "JPEG", "AVIF": "JPEG", "MPO": "JPEG"}
MAX_OUTPUT_EXIF = 65533  # bytes: the most one JPEG APP1 segment holds ("Exif\0\0" included)

_heif_state: bool | None = None


def output_format(input_format: str, requested: str | None) -> str:
    """Pillow format name for the outputs: ``requested`` (jpeg|png|webp|...) or the input's format."""
    if requested:
        fmt = check_format(requested)
        if fmt is not None:
            return fmt
    fmt = OUTPUT_FOR_INPUT.get(input_format, input_format)
    return fmt if fmt in OUTPUT_FORMATS else "JPEG"


def output_suffix(fmt: str, input_path: Path | None = None) -> str:
    """File suffix for ``fmt``: the input's own suffix when it is the same format (".JPG" stays)."""
    suffix = OUTPUT_FORMATS[fmt][0]
    if input_path is not None:
        own = input_path.suffix
        if own and _format_of_suffix(own) == fmt:
            return own
    return suffix


def convert_for_format(image: Image.Image, fmt: str, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Convert ``image`` to a mode ``fmt`` can store; returns (image, ICC profile to attach)."""
    modes = OUTPUT_FORMATS[fmt][1]
    mode = image.mode
    if mode in modes:
        if mode == "P" and fmt == "BMP" and "transparency" in image.info:
            return to_rgb(image), icc
        return image, icc
    if mode == "CMYK":
        return _cmyk_to_rgb(image, icc)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = Image.fromarray(to_uint8(image), mode="L")
        return (gray if "L" in modes else gray.convert("RGB")), icc
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha and "RGBA" in modes:
        return image.convert("RGBA"), icc
    if mode in ("1", "L") and "L" in modes:
        return image.convert("L"), icc
    return to_rgb(image), icc


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB through the embedded profile when possible; the CMYK profile is not kept."""
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted, None
        except Exception:  # damaged or unusable profile: plain conversion below
            pass
    return image.convert("RGB"), None


def output_exif(exif: bytes | None, size: tuple[int, int]) -> bytes | None:
    """EXIF for a crop of ``size`` (w, h): orientation 1, pixel dimensions updated, thumbnail dropped.

    Uses piexif; falls back to Pillow's EXIF writer for blocks piexif cannot round-trip. None when the
    input had no (usable) EXIF, or when the result is larger than :data:`MAX_OUTPUT_EXIF` bytes.
    Damaged EXIF gives no warning (see :func:`autocrop.io.metadata.quiet_pillow`).
    """
    if not exif:
        return None
    with quiet_pillow():
        out = _rewritten_exif(exif, size)
    return out if out is not None and len(out) <= MAX_OUTPUT_EXIF else None


def _rewritten_exif(exif: bytes, size: tuple[int, int]) -> bytes | None:
    if exif[:4] == b"Exif" or exif[:2] in (b"II", b"MM"):
        try:
            import piexif

            data = piexif.load(exif)
            data.setdefault("0th", {})[piexif.ImageIFD.Orientation] = 1
            exif_ifd = data.setdefault("Exif", {})
            if piexif.ExifIFD.PixelXDimension in exif_ifd or piexif.ExifIFD.PixelYDimension in exif_ifd:
                exif_ifd[piexif.ExifIFD.PixelXDimension] = int(size[0])
                exif_ifd[piexif.ExifIFD.PixelYDimension] = int(size[1])
            data["1st"] = {}
            data["thumbnail"] = None
            return bytes(piexif.dump(data))
        except Exception:
            pass
    try:
        pil_exif = Image.Exif()
        pil_exif.load(exif[6:] if exif[:6] == b"Exif\x00\x00" else exif)
        pil_exif[ORIENTATION_TAG] = 1
        return b"Exif\x00\x00" + pil_exif.tobytes()
    except Exception:
        return None


def encode(image: Image.Image, fmt: str, quality: int = DEFAULT_QUALITY, exif: bytes | None = None,
           icc: bytes | None = None) -> Callable[[IO[bytes]], None]:
    """A writer that encodes ``image`` as ``fmt`` into a binary file object (metadata attached)."""
    image, icc = convert_for_format(image, fmt, icc)
    exif_out = output_exif(exif, image.size) if fmt in ("JPEG", "PNG", "WEBP", "TIFF") else None
    params: dict[str, object] = {}
    if fmt == "JPEG":
        params.update(quality=int(quality), optimize=False)
        if image.mode == "CMYK":
            params["subsampling"] = 0
    elif fmt == "WEBP":
        params.update(quality=int(quality), method=4)
    elif fmt == "PNG":
        params.update(compress_level=6)
    elif fmt == "TIFF":  # never the input's own compression (from image.info); see the module doc
        params["compression"] = "raw" if exif_out else "tiff_deflate"
    if icc and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["icc_profile"] = icc
    if exif_out:
        params["exif"] = exif_out

    def write(fh: IO[bytes]) -> None:
        image.save(fh, format=fmt, **params)

    return write



def _format_of_suffix(suffix: str) -> str | None:
    try:
        return check_format(suffix)
    except UsageError:
        return None


def save_image(image: Image.Image, path: str | Path, fmt: str, quality: int = DEFAULT_QUALITY,
               exif: bytes | None = None, icc: bytes | None = None, overwrite: bool = False) -> None:
    """Encode ``image`` as ``fmt`` into ``path`` atomically (see :func:`autocrop.io.fs.atomic_write`)."""
    atomic_write(Path(path), encode(image, fmt, quality, exif, icc), overwrite=overwrite)


def encode_bytes(image: Image.Image, fmt: str, quality: int = DEFAULT_QUALITY, exif: bytes | None = None,
                 icc: bytes | None = None) -> bytes:
    """``image`` encoded as ``fmt`` in memory (e.g. for standard output)."""
    buffer = io.BytesIO()
    encode(image, fmt, quality, exif, icc)(buffer)
    return buffer.getvalue()
