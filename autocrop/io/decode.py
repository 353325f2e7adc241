"""Decode photos for autocrop: EXIF orientation, reduced-size JPEG decoding, one-line errors.

Every image is returned *EXIF-oriented* (the orientation tag is applied), so all boxes in autocrop
are in pixels of the photo as a viewer shows it. Formats: JPEG, PNG, WebP, TIFF, BMP, GIF (first
frame), AVIF (Pillow's own plugin), HEIC/HEIF through the optional ``pillow-heif`` package
(``pip install 'autocrop-views[heif]'``; a clear error names the extra when it is missing).

:func:`load_reduced` decodes for the model: JPEGs use ``Image.draft`` so libjpeg decodes directly at
1/2, 1/4 or 1/8 size (never below the requested short side); other formats are decoded at full size
and box-reduced by an integer factor. In both cases pixel ``i`` of the reduced image covers original
pixels ``[i * scale, (i + 1) * scale)``, so a box in original pixels maps to ``box / scale``.

A photo comes from a file (:class:`pathlib.Path`) or from memory (:class:`MemorySource`: bytes read
from stdin, a file object or an upload); messages name the file, or the source's label.

Pixel modes: the model input is always 8-bit RGB (grayscale/palette/CMYK/YCbCr converted; 16- and
32-bit integer images scaled to 8 bit, 16-bit by the high byte; alpha composited over white).

Decompression bombs: an image with more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused with a
one-line :class:`~autocrop.errors.InputError` before any pixel is decoded.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from autocrop.errors import InputError
from autocrop.io.limits import jpeg_data_problem, png_stream
from autocrop.io.metadata import MAX_ICC_BYTES, quiet_pillow, read_metadata
from autocrop.io.sources import MemorySource, Source, as_source, source_label

HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
HEIF_HINT = "HEIC/HEIF images need the optional pillow-heif package: pip install 'autocrop-views[heif]'"

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


_heif_state: bool | None = None


def heif_available() -> bool:
    """Register pillow-heif's opener once; True when HEIC/HEIF can be decoded."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_state = True
        except ImportError:
            _heif_state = False
    return _heif_state


@dataclass(frozen=True)
class ImageInfo:
    """What is known about a photo after reading its header (no pixels decoded).

    width, height: size in pixels *after* EXIF orientation. orientation: the EXIF tag (1..8, 1 = none).
    format: Pillow's format name ("JPEG", "PNG", ...). mode: Pillow's pixel mode of the stored image.
    exif: the EXIF block to copy into crops or None. icc: ICC profile bytes or None (both bounded in
    size, see :mod:`autocrop.io.metadata`). source: where it came from. notes: one line per piece of
    metadata that was left out (too large, a zlib bomb, damaged); the photo itself is fine.
    """

    source: Source
    format: str
    mode: str
    width: int
    height: int
    orientation: int
    exif: bytes | None
    icc: bytes | None
    notes: tuple[str, ...] = ()


@dataclass
class ReducedImage:
    """An EXIF-oriented image decoded at reduced size for the model.

    image: 8-bit RGB, about ``info.width / scale`` x ``info.height / scale`` pixels.
    scale: original pixels per reduced pixel (1, 2, 4 or 8 for JPEG draft; any integer otherwise).
    full: the full-resolution oriented image in its stored mode when it had to be decoded anyway
          (non-JPEG inputs), so rendering need not decode it again; None for JPEG.
    """

    info: ImageInfo
    image: Image.Image
    scale: float
    full: Image.Image | None = None

    @property
    def label(self) -> str:
        return source_label(self.info.source)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not an image")
    if path.suffix.lower() in HEIF_SUFFIXES and not heif_available():
        raise InputError(f"{path}: {HEIF_HINT}")


def _check_source(source: Source) -> None:
    if isinstance(source, Path):
        _check_path(source)
    elif len(source.data) == 0:
        raise InputError(f"{source.label}: empty input (0 bytes), not an image")


def _looks_like_heif(source: Source) -> bool:
    if isinstance(source, MemorySource):
        head = source.data[:16]
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(16)
        except OSError:
            return False
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _avif_supported() -> bool:
    from PIL import features

    try:
        return bool(features.check("avif"))
    except (ValueError, KeyError):  # Pillow without the feature name
        return False


def _bomb_message(path: str, width: int, height: int) -> str:
    return (
        f"{path}: {width}x{height} = {width * height} pixels exceeds the decompression-bomb limit of "
        f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
    )


def open_image(source: Source) -> Image.Image:
    """Open ``source`` lazily (header only) and validate it; the caller must close the image.

    Raises :class:`InputError` (one line naming the file) for a missing file, a directory, an empty or
    unrecognised file, a HEIC without pillow-heif, decompression-bomb dimensions, or a JPEG whose data
    cannot hold the pixels its header claims. Only the first frame is looked at: multi-page TIFFs and
    animations are never counted through (a file of 100,000 pages opens as fast as one of one).
    """
    return _open(source)[0]


def _open(source: Source) -> tuple[Image.Image, tuple[str, ...]]:
    """:func:`open_image` and the notes on metadata left out of the file (see :mod:`autocrop.io.limits`)."""
    _check_source(source)
    path = source_label(source)
    suffix = source.suffix.lower() if isinstance(source, Path) else ""
    if suffix not in HEIF_SUFFIXES:
        heif_available()  # a HEIC under another suffix still opens when the extra is installed
    stream, notes = png_stream(source)
    try:
        with quiet_pillow():
            image = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image dimensions exceed the decompression-bomb limit of "
                         f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS)") from None
    except UnidentifiedImageError:
        if _looks_like_heif(source) and not heif_available():
            raise InputError(f"{path}: {HEIF_HINT}") from None
        if suffix == ".avif" and not _avif_supported():
            raise InputError(f"{path}: this Pillow cannot read AVIF (upgrade to Pillow >= 11.3)") from None
        raise InputError(f"{path}: not an image, or a format autocrop cannot read") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    except _CORRUPT as err:  # a header Pillow's parser cannot take (bad values, zlib bombs it refuses)
        raise InputError(f"{path}: corrupt or truncated image ({_reason(err)})") from None
    width, height = image.size
    problem = None
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        problem = _bomb_message(path, width, height)
    elif width < 1 or height < 1:
        problem = f"{path}: image has no pixels ({width}x{height})"
    elif image.format in ("JPEG", "MPO"):
        reason = jpeg_data_problem(source)
        problem = f"{path}: {reason}" if reason else None
    if problem:
        image.close()
        raise InputError(problem)
    return image, notes


_CORRUPT = (SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError, struct.error, zlib.error)


def _reason(err: BaseException) -> str:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return reason if len(reason) <= 120 else reason[:117] + "..."


def read_info(image: Image.Image, source: Source, notes: tuple[str, ...] = ()) -> ImageInfo:
    """Header facts of an opened image (see :class:`ImageInfo`); ``notes`` from opening it are kept."""
    meta = read_metadata(image)
    width, height = image.size
    if meta.orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(
        source=source,
        format=image.format or "",
        mode=image.mode,
        width=width,
        height=height,
        orientation=meta.orientation,
        exif=meta.exif,
        icc=meta.icc,
        notes=(*notes, *meta.notes),
    )


def _decode(image: Image.Image, source: Source) -> None:
    """Decode pixels, turning truncation/corruption into one-line InputErrors.

    PNG: Pillow does not check chunk CRCs while decoding (damaged data would decode as garbage), so
    the file is first checked with ``Image.verify`` (CRCs of every chunk; cheap next to decoding).
    """
    path = source_label(source)
    try:
        if image.format == "PNG":
            with quiet_pillow():
                check = Image.open(png_stream(source)[0])
            with check:
                check.verify()
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(_bomb_message(path, *image.size)) from None
    except (OSError, *_CORRUPT) as err:
        raise InputError(f"{path}: corrupt or truncated image ({_reason(err)})") from None


def orient(image: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation (1..8) to decoded pixels."""
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB view of any Pillow image (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(to_uint8(image), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def to_uint8(image: Image.Image) -> np.ndarray:
    """[H, W] uint8 from a 16/32-bit integer or float single-channel image."""
    arr = np.asarray(image)
    if image.mode.startswith("I;16"):
        return (arr.astype(np.uint32) >> 8).astype(np.uint8)
    arr = arr.astype(np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if image.mode == "F":
        scale = 255.0 / top if top > 1.0 else 255.0
    else:
        scale = 255.0 / 65535.0 if top > 255 else 1.0
    return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)


def load_reduced(source: str | Path | MemorySource, min_short_side: int) -> ReducedImage:
    """Decode ``source`` EXIF-oriented, in RGB, at a reduced size whose short side is >= ``min_short_side``.

    JPEG: ``Image.draft`` (libjpeg DCT scaling, 1/2..1/8), the fastest route for large photos; the full
    image is not decoded. Other formats: full decode (kept in ``ReducedImage.full``), then an integer
    box reduction. Raises :class:`InputError` for unreadable, corrupt or too-large images.
    """
    path = as_source(source)
    image, notes = _open(path)
    keep_open = False
    try:
        info = read_info(image, path, notes)
        scale = 1.0
        full: Image.Image | None = None
        if image.format == "JPEG":
            raw_width = image.size[0]
            result = image.draft("RGB", (min_short_side, min_short_side))
            if result is not None:
                scale = raw_width / result[1][2]  # exactly the DCT scale 1, 2, 4 or 8
            _decode(image, path)
            reduced = orient(image, info.orientation)
        else:
            _decode(image, path)
            full = _detached(image, orient(image, info.orientation))
            keep_open = full is image
            factor = max(1, min(full.size) // min_short_side)
            scale = float(factor)
            reduced = reduce_by(full, factor)
        rgb = to_rgb(reduced)
        if rgb is image:
            rgb = image.copy()
        return ReducedImage(info=info, image=rgb, scale=float(scale), full=full)
    finally:
        if not keep_open:
            image.close()


def _detached(image: Image.Image, result: Image.Image) -> Image.Image:
    """``result`` usable after ``image`` is closed: a copy only when it *is* a multi-frame ``image``.

    A loaded single-frame image has released its file already, so it is returned as is (and must
    then not be closed by the caller); this avoids copying large photos.
    """
    if result is not image:
        return result
    if getattr(image, "is_animated", False) or not getattr(image, "_close_exclusive_fp_after_loading", True):
        return image.copy()
    return image


def reduce_by(image: Image.Image, factor: int) -> Image.Image:
    """Box-average by an integer factor; pixel i covers original pixels [i*factor, (i+1)*factor)."""
    if factor <= 1:
        return image
    if image.mode in ("P", "1") or image.mode.startswith("I;16"):
        image = to_rgb(image)
    try:
        return image.reduce(factor)
    except ValueError:  # modes without a reduce implementation
        return to_rgb(image).reduce(factor)


def load_full(source: str | Path | MemorySource, reduce: int = 1) -> tuple[Image.Image, ImageInfo]:
    """Decode ``source`` at full resolution, EXIF-oriented, in its stored pixel mode.

    reduce: 2, 4 or 8 decodes a JPEG at that DCT scale (libjpeg, ``Image.draft``; other formats ignore
    it): the image is then about ``reduce`` times smaller than ``info.width`` x ``info.height``.
    """
    path = as_source(source)
    image, notes = _open(path)
    oriented: Image.Image | None = None
    try:
        info = read_info(image, path, notes)
        if reduce > 1 and image.format == "JPEG":
            image.draft(image.mode, (-(-image.size[0] // reduce), -(-image.size[1] // reduce)))
        _decode(image, path)
        oriented = _detached(image, orient(image, info.orientation))
        return oriented, info
    finally:
        if oriented is not image:
            image.close()


def reduce_image(image: Image.Image, min_short_side: int, label: str = "<image>") -> ReducedImage:
    """An already decoded, EXIF-oriented PIL image (e.g. given to the API) -> :class:`ReducedImage`.

    Reduced by the same integer box average as a decoded non-JPEG file, so both score alike; the
    image itself is kept as ``full`` (never modified). Its format is the image's own, else PNG.
    """
    if image.width < 1 or image.height < 1:
        raise InputError(f"{label}: image has no pixels ({image.width}x{image.height})")
    icc = image.info.get("icc_profile") or None
    info = ImageInfo(
        source=MemorySource(b"", label=label, stem="image"),
        format=image.format or "PNG",
        mode=image.mode,
        width=image.width,
        height=image.height,
        orientation=1,
        exif=None,
        icc=icc if isinstance(icc, bytes) and len(icc) <= MAX_ICC_BYTES else None,
    )
    factor = max(1, min(image.size) // min_short_side)
    rgb = reduce_by(to_rgb(image), factor)
    if rgb is image:
        rgb = image.copy()
    return ReducedImage(info=info, image=rgb, scale=float(factor), full=image)
