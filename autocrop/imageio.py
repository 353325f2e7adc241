"""Decode and encode photos: EXIF orientation, reduced-size JPEG decoding, metadata, atomic writes.

Decoding
    Every image is returned *EXIF-oriented* (the orientation tag is applied), so all boxes in autocrop
    are in pixels of the photo as a viewer shows it. Formats: JPEG, PNG, WebP, TIFF, BMP, GIF (first
    frame), AVIF (Pillow's own plugin), HEIC/HEIF through the optional ``pillow-heif`` package
    (``pip install 'autocrop-views[heif]'``; a clear error names the extra when it is missing).

    :func:`load_reduced` decodes for the model: JPEGs use ``Image.draft`` so libjpeg decodes directly at
    1/2, 1/4 or 1/8 size (never below the requested short side); other formats are decoded at full size
    and box-reduced by an integer factor. In both cases pixel ``i`` of the reduced image covers original
    pixels ``[i * scale, (i + 1) * scale)``, so a box in original pixels maps to ``box / scale``.

Pixel modes (how unusual inputs are handled)
    * Model input is always 8-bit RGB: grayscale/palette/CMYK/YCbCr are converted; 16- and 32-bit
      integer images are scaled to 8 bit (16-bit: the high byte); images with alpha (RGBA, LA, PA, P with
      transparency) are composited over white.
    * Outputs keep the input's mode where the output format can store it (e.g. grayscale stays
      grayscale, CMYK JPEG stays CMYK, a PNG keeps its alpha and 16-bit depth). Otherwise: alpha is
      composited over white for JPEG/BMP, 16-bit is reduced to 8 bit, and CMYK is converted to RGB
      (through its ICC profile when it has one; the CMYK profile is then not attached).

Encoding (:func:`save_image`)
    EXIF is kept with the orientation reset to 1 (pixels are already upright), the pixel-dimension tags
    updated and the embedded thumbnail dropped (it would show the uncropped photo); the ICC profile is
    kept; JPEG/WebP quality 95 by default. Files are written atomically: a temporary file in the target
    directory, fsync, then a rename; the temporary file is removed on any failure (disk full included).

Decompression bombs: an image with more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused with a
one-line :class:`~autocrop.errors.InputError` before any pixel is decoded.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from autocrop.errors import InputError

HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
HEIF_HINT = "HEIC/HEIF images need the optional pillow-heif package: pip install 'autocrop-views[heif]'"

ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Output formats: Pillow format name -> (canonical suffix, modes it stores as they are).
OUTPUT_FORMATS: dict[str, tuple[str, frozenset[str]]] = {
    "JPEG": (".jpg", frozenset({"L", "RGB", "CMYK"})),
    "PNG": (".png", frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})),
    "WEBP": (".webp", frozenset({"RGB", "RGBA"})),
    "TIFF": (".tif", frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"})),
    "BMP": (".bmp", frozenset({"1", "L", "P", "RGB"})),
}
FORMAT_ALIASES = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP"}
# Input formats whose own encoder is not used for crops: GIF (palette, first frame only) -> PNG;
# HEIF/AVIF (optional/slow encoders) -> JPEG.
OUTPUT_FOR_INPUT = {"GIF": "PNG", "HEIF": "JPEG", "AVIF": "JPEG", "MPO": "JPEG"}

_heif_state: bool | None = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import (os.umask is process-global; never toggled later)


def heif_available() -> bool:
    """Register pillow-heif's opener once; True when HEIC/HEIF can be decoded."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif  # type: ignore[import-not-found]

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
    exif: raw EXIF bytes or None. icc: ICC profile bytes or None.
    """

    path: Path
    format: str
    mode: str
    width: int
    height: int
    orientation: int
    exif: bytes | None
    icc: bytes | None


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


def _looks_like_heif(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
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


def _bomb_message(path: Path, width: int, height: int) -> str:
    return (
        f"{path}: {width}x{height} = {width * height} pixels exceeds the decompression-bomb limit of "
        f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
    )


def open_image(path: str | Path) -> Image.Image:
    """Open ``path`` lazily (header only) and validate it; the caller must close the image.

    Raises :class:`InputError` (one line naming the file) for a missing file, a directory, an empty or
    unrecognised file, a HEIC without pillow-heif, or decompression-bomb dimensions.
    """
    path = Path(path)
    _check_path(path)
    if path.suffix.lower() not in HEIF_SUFFIXES:
        heif_available()  # a HEIC under another suffix still opens when the extra is installed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image dimensions exceed the decompression-bomb limit of "
                         f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS)") from None
    except UnidentifiedImageError:
        if _looks_like_heif(path) and not heif_available():
            raise InputError(f"{path}: {HEIF_HINT}") from None
        if path.suffix.lower() == ".avif" and not _avif_supported():
            raise InputError(f"{path}: this Pillow cannot read AVIF (upgrade to Pillow >= 11.3)") from None
        raise InputError(f"{path}: not an image, or a format autocrop cannot read") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise InputError(_bomb_message(path, width, height))
    if width < 1 or height < 1:
        image.close()
        raise InputError(f"{path}: image has no pixels ({width}x{height})")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated GIF/WebP/TIFF pages: the first frame
    return image


def read_info(image: Image.Image, path: Path) -> ImageInfo:
    """Header facts of an opened image (see :class:`ImageInfo`)."""
    try:
        exif = image.getexif()
        orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # a damaged EXIF block must not make the photo unreadable
        exif, orientation = None, 1
    if orientation not in range(1, 9):
        orientation = 1
    raw = image.info.get("exif")
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    if not raw and exif is not None and len(exif):
        try:
            raw = exif.tobytes()
        except Exception:
            raw = None
    width, height = image.size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    icc = image.info.get("icc_profile") or None
    return ImageInfo(
        path=path,
        format=image.format or "",
        mode=image.mode,
        width=width,
        height=height,
        orientation=orientation,
        exif=raw or None,
        icc=icc,
    )


def _decode(image: Image.Image, path: Path) -> None:
    """Decode pixels, turning truncation/corruption into one-line InputErrors.

    PNG: Pillow does not check chunk CRCs while decoding (damaged data would decode as garbage), so
    the file is first checked with ``Image.verify`` (CRCs of every chunk; cheap next to decoding).
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        if image.format == "PNG":
            with Image.open(path) as check:
                check.verify()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(_bomb_message(path, *image.size)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError, struct.error) as err:
        reason = str(err).strip() or type(err).__name__
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise InputError(f"{path}: corrupt or truncated image ({reason})") from None


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
        return Image.fromarray(_to_uint8(image), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(image: Image.Image) -> np.ndarray:
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


def load_reduced(path: str | Path, min_short_side: int) -> ReducedImage:
    """Decode ``path`` EXIF-oriented, in RGB, at a reduced size whose short side is >= ``min_short_side``.

    JPEG: ``Image.draft`` (libjpeg DCT scaling, 1/2..1/8), the fastest route for large photos; the full
    image is not decoded. Other formats: full decode (kept in ``ReducedImage.full``), then an integer
    box reduction. Raises :class:`InputError` for unreadable, corrupt or too-large images.
    """
    path = Path(path)
    image = open_image(path)
    keep_open = False
    try:
        info = read_info(image, path)
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
            reduced = _reduce(full, factor)
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
    if getattr(image, "n_frames", 1) > 1 or not getattr(image, "_close_exclusive_fp_after_loading", True):
        return image.copy()
    return image


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """Box-average by an integer factor; pixel i covers original pixels [i*factor, (i+1)*factor)."""
    if factor <= 1:
        return image
    if image.mode in ("P", "1") or image.mode.startswith("I;16"):
        image = to_rgb(image)
    try:
        return image.reduce(factor)
    except ValueError:  # modes without a reduce implementation
        return to_rgb(image).reduce(factor)


def load_full(path: str | Path) -> tuple[Image.Image, ImageInfo]:
    """Decode ``path`` at full resolution, EXIF-oriented, in its stored pixel mode."""
    path = Path(path)
    image = open_image(path)
    oriented: Image.Image | None = None
    try:
        info = read_info(image, path)
        _decode(image, path)
        oriented = _detached(image, orient(image, info.orientation))
        return oriented, info
    finally:
        if oriented is not image:
            image.close()


# ----------------------------------------------------------------------------------------- encoding


def output_format(input_format: str, requested: str | None) -> str:
    """Pillow format name for the outputs: ``requested`` (jpeg|png|webp|...) or the input's format."""
    if requested:
        fmt = FORMAT_ALIASES.get(requested.lower().lstrip("."))
        if fmt is None:
            raise InputError(f"--format {requested}: unknown output format (use jpeg, png or webp)")
        return fmt
    fmt = OUTPUT_FOR_INPUT.get(input_format, input_format)
    return fmt if fmt in OUTPUT_FORMATS else "JPEG"


def output_suffix(fmt: str, input_path: Path | None = None) -> str:
    """File suffix for ``fmt``: the input's own suffix when it is the same format (".JPG" stays)."""
    suffix = OUTPUT_FORMATS[fmt][0]
    if input_path is not None:
        own = input_path.suffix
        if FORMAT_ALIASES.get(own.lower().lstrip(".")) == fmt:
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
        gray = Image.fromarray(_to_uint8(image), mode="L")
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
    input had no (usable) EXIF.
    """
    if not exif:
        return None
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
            return piexif.dump(data)
        except Exception:
            pass
    try:
        pil_exif = Image.Exif()
        pil_exif.load(exif[6:] if exif[:6] == b"Exif\x00\x00" else exif)
        pil_exif[ORIENTATION_TAG] = 1
        return b"Exif\x00\x00" + pil_exif.tobytes()
    except Exception:
        return None


def encode(image: Image.Image, fmt: str, quality: int = 95, exif: bytes | None = None,
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
    # TIFF: Pillow's own (uncompressed) writer; libtiff's compressed path cannot write EXIF sub-IFDs.
    if icc and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["icc_profile"] = icc
    if exif_out:
        params["exif"] = exif_out

    def write(fh: IO[bytes]) -> None:
        image.save(fh, format=fmt, **params)

    return write


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], overwrite: bool = False) -> None:
    """Create ``path`` atomically: temp file in the same directory, fsync, then link/rename into place.

    Without ``overwrite`` an existing ``path`` is never replaced (``os.link`` fails if it exists, so
    even a file created meanwhile is safe). The temp file is removed on every failure. Errors become
    one-line :class:`InputError` naming ``path`` (e.g. "No space left on device").
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise InputError(f"{path}: already exists (use --overwrite to replace it)")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as err:
        raise InputError(f"{path}: cannot write: {err.strerror or err}") from None
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        with open(tmp, "wb") as fh:  # by name, so that fh.name says which file is being written
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InputError(f"{path}: already exists (use --overwrite to replace it)") from None
            except OSError as err:  # filesystems without hard links
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if path.exists():
                    raise InputError(f"{path}: already exists (use --overwrite to replace it)") from None
                os.replace(tmp, path)
    except InputError:
        remove_quietly(tmp)
        raise
    except OSError as err:
        remove_quietly(tmp)
        raise InputError(f"{path}: cannot write: {err.strerror or err}") from None
    except BaseException:
        remove_quietly(tmp)
        raise
    remove_quietly(tmp)  # after os.link the temp name is an extra link


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def save_image(image: Image.Image, path: str | Path, fmt: str, quality: int = 95, exif: bytes | None = None,
               icc: bytes | None = None, overwrite: bool = False) -> None:
    """Encode ``image`` as ``fmt`` into ``path`` atomically, keeping EXIF (orientation 1) and ICC."""
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"{path}: unsupported output format {fmt}")
    atomic_write(Path(path), encode(image, fmt, quality, exif, icc), overwrite=overwrite)
