"""Bounds on untrusted image files that Pillow leaves open, checked from headers before any pixel is decoded.

* **JPEG headers that lie.** libjpeg fills whatever a JPEG's data does not cover with grey and reports
  success, so a header that claims 9400x9400 pixels over 100 KB of data decodes as 88 MP of grey.
  Every block of 8x8 samples costs at least one Huffman code (1 bit) in a progressive JPEG and two
  (DC + AC, 2 bits) in a sequential one, so :func:`jpeg_data_problem` refuses a file with fewer bytes
  after its first scan header than its claimed size needs. Arithmetic-coded JPEGs have no such bound
  and are not checked.
* **Zlib bombs in PNG metadata.** Pillow refuses a PNG whose ``iCCP`` (ICC profile), ``zTXt`` or ``iTXt``
  chunk inflates to more than ``PngImagePlugin.MAX_TEXT_CHUNK`` bytes (or whose text exceeds
  ``MAX_TEXT_MEMORY``) with an exception. :func:`png_stream` gives Pillow the file without such chunks
  (a note says so), so the photo is still cropped; the limits themselves are read, never changed.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from autocrop.io.metadata import MAX_ICC_BYTES
from autocrop.io.sources import Source

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_MAX_READ = 16 << 20  # a metadata chunk whose *compressed* size is above this is dropped unread
#: SOF markers of Huffman-coded JPEGs -> the fewest bits one 8x8 block can take.
_MIN_BITS_PER_BLOCK = {0xC0: 2, 0xC1: 2, 0xC2: 1}
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _open_binary(source: Source) -> IO[bytes]:
    return open(source, "rb") if isinstance(source, Path) else io.BytesIO(source.data)


def _size_of(source: Source) -> int:
    return source.stat().st_size if isinstance(source, Path) else len(source.data)


# ---------------------------------------------------------------------------------------------- JPEG


def _jpeg_frame(fh: IO[bytes]) -> tuple[int, int, int, list[tuple[int, int]], int] | None:
    """(SOF marker, width, height, [(h, v) sampling per component], offset after the first SOS header)."""
    if fh.read(2) != b"\xff\xd8":
        return None
    frame: tuple[int, int, int, list[tuple[int, int]]] | None = None
    while True:
        byte = fh.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue  # junk between segments (Pillow skips it too)
        marker = fh.read(1)
        while marker == b"\xff":
            marker = fh.read(1)
        if not marker:
            return None
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:
            continue  # markers without a length
        if code == 0xD9:
            return None
        raw = fh.read(2)
        if len(raw) < 2 or struct.unpack(">H", raw)[0] < 2:
            return None
        length = struct.unpack(">H", raw)[0] - 2
        if code in _SOF_MARKERS and frame is None:
            data = fh.read(length)
            if len(data) < 6 or len(data) < 6 + 3 * data[5]:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            sampling = [(data[7 + 3 * i] >> 4, data[7 + 3 * i] & 15) for i in range(data[5])]
            frame = (code, width, height, sampling)
        elif code == 0xDA:
            fh.seek(length, io.SEEK_CUR)
            return (*frame, fh.tell()) if frame is not None else None
        else:
            fh.seek(length, io.SEEK_CUR)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def jpeg_data_problem(source: Source) -> str | None:
    """Why a JPEG's data cannot hold the pixels its header claims (a truncated or forged file), or None."""
    try:
        with _open_binary(source) as fh:
            frame = _jpeg_frame(fh)
        total = _size_of(source)
    except OSError:
        return None  # Pillow's own decoding reports unreadable files
    if frame is None:
        return None
    code, width, height, sampling, data_start = frame
    bits = _MIN_BITS_PER_BLOCK.get(code)
    if bits is None or not sampling or width < 1 or height < 1:
        return None
    hmax = max(h for h, _ in sampling) or 1
    vmax = max(v for _, v in sampling) or 1
    blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8) for h, v in sampling)
    needed = _ceil(blocks * bits, 8)
    available = total - data_start
    if available < needed:
        return (f"corrupt or truncated image (its header claims {width}x{height} pixels, but it holds "
                f"{max(available, 0)} bytes of image data where at least {needed} are needed)")
    return None


# ---------------------------------------------------------------------------------------------- PNG


def _chunks(fh: IO[bytes]) -> Iterator[tuple[int, bytes, int]]:
    """(offset, type, data length) of every chunk of a PNG, read from the headers (data skipped)."""
    offset = len(PNG_SIGNATURE)
    fh.seek(offset)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I", head[:4])[0], head[4:]
        yield offset, kind, length
        if kind == b"IEND":
            return
        offset += 12 + length
        fh.seek(offset)


def _inflated_size(data: bytes, limit: int) -> int | None:
    """Bytes ``data`` inflates to, or None when it is damaged or inflates to more than ``limit``."""
    try:
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or inflater.unconsumed_tail:
        return None
    return len(out)


def _text_size(kind: bytes, data: bytes, limit: int) -> int | None:
    """Decoded size of a tEXt/zTXt/iTXt chunk's text, None when it is a bomb or damaged."""
    rest = data.partition(b"\0")[2]
    if kind == b"tEXt":
        return len(rest)
    if kind == b"zTXt":
        return _inflated_size(rest[1:], limit)
    if len(rest) < 2:
        return None
    compressed, text = rest[0], rest[2:].split(b"\0", 2)[-1]
    return _inflated_size(text, limit) if compressed else len(text)


def png_stream(source: Source) -> tuple[str | IO[bytes], tuple[str, ...]]:
    """What to hand to ``PIL.Image.open`` for ``source``, and notes on what was left out.

    The source itself (a path, or its bytes) unless it is a PNG with metadata chunks Pillow would refuse
    (see the module doc); then its bytes without those chunks.
    """
    as_is: str | IO[bytes] = str(source) if isinstance(source, Path) else io.BytesIO(source.data)
    drop: list[tuple[int, int]] = []
    texts: list[tuple[int, int]] = []
    text_total = 0
    bad_icc = bad_text = 0
    try:
        with _open_binary(source) as fh:
            if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                return as_is, ()
            from PIL import PngImagePlugin  # only for PNGs: importing it costs ~6 ms of every JPEG's start-up

            text_limit = int(PngImagePlugin.MAX_TEXT_CHUNK)
            icc_limit = min(MAX_ICC_BYTES, text_limit)
            for offset, kind, length in _chunks(fh):
                if kind != b"iCCP" and kind not in _TEXT_CHUNKS:
                    continue
                data = fh.read(length) if length <= _MAX_READ else b""
                if kind == b"iCCP":
                    compressed = data.partition(b"\0")[2][1:]
                    if not data or _inflated_size(compressed, icc_limit) is None:
                        drop.append((offset, 12 + length))
                        bad_icc += 1
                    continue
                size = _text_size(kind, data, text_limit) if data else None
                if size is None:
                    drop.append((offset, 12 + length))
                    bad_text += 1
                else:
                    texts.append((offset, 12 + length))
                    text_total += size
    except OSError:
        return as_is, ()
    if text_total > int(PngImagePlugin.MAX_TEXT_MEMORY):
        drop.extend(texts)
        bad_text += len(texts)
    if not drop:
        return as_is, ()
    data = source.read_bytes() if isinstance(source, Path) else source.data
    kept, start = [], 0
    for offset, length in sorted(drop):
        kept.append(data[start:offset])
        start = offset + length
    kept.append(data[start:])
    notes = []
    if bad_icc:
        notes.append(f"ICC profile dropped (a PNG iCCP chunk that is damaged or inflates to more than "
                     f"{icc_limit >> 10} KiB)")
    if bad_text:
        notes.append(f"{bad_text} PNG text chunk(s) dropped (damaged or inflating to more than Pillow's limits)")
    return io.BytesIO(b"".join(kept)), tuple(notes)
