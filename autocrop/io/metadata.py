"""Photo metadata read from untrusted files: EXIF and ICC, bounded in size, without Pillow's warnings.

What a crop keeps (see :mod:`autocrop.io.encode`): the input's EXIF (orientation reset, thumbnail dropped)
and its ICC profile. Only *real* EXIF data is kept: JPEG/PNG/WebP/HEIF carry an EXIF block of their own;
a TIFF's tags describe the TIFF file itself (size, strips, compression), so a TIFF input contributes only
its descriptive tags (camera, date, author, ...) and its EXIF and GPS sub-IFDs, never its structure.

Bounds (bytes): EXIF larger than :data:`MAX_EXIF_BYTES` (64 KiB, the most a JPEG can hold) and ICC
profiles larger than :data:`MAX_ICC_BYTES` (1 MiB) are not copied into the crops; the photo is still
cropped and one note says what was dropped (:attr:`Metadata.notes`).

Damaged EXIF makes Pillow emit ``UserWarning``\\ s while it parses; :func:`quiet_pillow` silences them
for one block of code (never process-wide) and turns decompression-bomb warnings into errors.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

MAX_EXIF_BYTES = 64 * 1024
MAX_ICC_BYTES = 1024 * 1024
ORIENTATION_TAG = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
#: TIFF/EXIF IFD0 tags that describe the photo (not the file's layout): kept from TIFF inputs.
DESCRIPTIVE_TAGS = (0x010E, 0x010F, 0x0110, ORIENTATION_TAG, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B,
                    0x8298)

# warnings.catch_warnings() swaps the process-wide filter list while its block runs and restores it on
# exit; two threads inside such blocks at once could restore each other's filters and leave them
# changed for good. The blocks that use it are short (headers and metadata, never pixel decoding),
# so they are serialised by this lock.
_WARNINGS_LOCK = threading.RLock()  # re-entrant: a quiet block may call another


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Run a block with Pillow's warnings (damaged EXIF, odd chunks) silenced and bomb warnings raised.

    Only for short blocks (opening headers, parsing metadata): blocks of different threads take turns.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


@dataclass(frozen=True)
class Metadata:
    """What an opened photo says about itself.

    orientation: EXIF orientation 1..8 (1 when absent or invalid). exif: the EXIF block to copy into the
    crops (``Exif\\0\\0`` + TIFF structure) or None. icc: the ICC profile or None. notes: one line per
    thing that was dropped (too large, damaged).
    """

    orientation: int = 1
    exif: bytes | None = None
    icc: bytes | None = None
    notes: tuple[str, ...] = ()


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def read_metadata(image: Image.Image) -> Metadata:
    """Orientation, EXIF and ICC of an opened (not necessarily loaded) image, within the bounds above."""
    notes: list[str] = []
    with quiet_pillow():
        try:
            parsed = image.getexif()
            orientation = int(parsed.get(ORIENTATION_TAG, 1) or 1)
        except Exception:  # a damaged EXIF block must not make the photo unreadable
            parsed, orientation = None, 1
        raw = image.info.get("exif")
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        if not isinstance(raw, (bytes, bytearray)):
            raw = None
        if raw is None and image.format == "TIFF" and parsed is not None:
            raw = _tiff_exif(parsed)
    if orientation not in range(1, 9) or (image.format == "TIFF" and hasattr(image, "_tile_size")):
        orientation = 1  # newer Pillow applies a TIFF's orientation itself (and reports the upright size)
    exif = bytes(raw) if raw else None
    if exif is not None and len(exif) > MAX_EXIF_BYTES:
        notes.append(f"EXIF of {_size(len(exif))} not copied to the crops (more than {_size(MAX_EXIF_BYTES)})")
        exif = None
    icc = image.info.get("icc_profile") or None
    if icc is not None and not isinstance(icc, (bytes, bytearray)):
        icc = None
    if icc is not None and len(icc) > MAX_ICC_BYTES:
        notes.append(f"ICC profile of {_size(len(icc))} not copied to the crops (more than {_size(MAX_ICC_BYTES)})")
        icc = None
    return Metadata(orientation, exif, bytes(icc) if icc else None, tuple(notes))


def _tiff_exif(tags: Image.Exif) -> bytes | None:
    """The EXIF a TIFF's crops may carry: its descriptive IFD0 tags and its EXIF and GPS sub-IFDs.

    The structural tags (size, strips, compression, bits, ...) describe the source file; written into a
    crop's EXIF they would claim the full size and, in a TIFF crop, corrupt the file.
    """
    out = Image.Exif()
    for tag in DESCRIPTIVE_TAGS:
        value = tags.get(tag)
        if value is not None:
            out[tag] = value
    subs = 0
    for ifd in (EXIF_IFD, GPS_IFD):
        try:
            sub = tags.get_ifd(ifd)
        except Exception:  # a damaged sub-IFD is left out
            sub = {}
        if sub:
            out.get_ifd(ifd).update(sub)
            subs += 1
    if not len(out) and not subs:
        return None
    try:
        return b"Exif\x00\x00" + out.tobytes()
    except Exception:  # values Pillow cannot write back: no EXIF rather than a broken one
        return None
