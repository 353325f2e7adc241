"""Where a photo comes from: a file path, or bytes in memory (stdin, an upload, a file object), or pixels.

Messages name the file, or a memory source's label ("<stdin>", "<bytes>").
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from autocrop.errors import InputError


@dataclass(frozen=True)
class MemorySource:
    """A photo held in memory (stdin, an upload, a file object): its bytes and the name to report.

    label: what messages call it ("<stdin>"). stem: the file-name stem its outputs use ("stdin").
    """

    data: bytes
    label: str = "<memory>"
    stem: str = "image"


Source = Path | MemorySource


def as_source(value: str | Path | bytes | bytearray | memoryview | IO[bytes] | MemorySource) -> Source:
    """A path (str or Path), bytes or a binary file object -> :data:`Source`."""
    if isinstance(value, (MemorySource, Path)):
        return value
    if isinstance(value, str):
        return Path(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return MemorySource(bytes(value), label="<bytes>", stem="image")
    if hasattr(value, "read"):
        name = getattr(value, "name", None)
        if isinstance(value, io.TextIOBase) or "b" not in str(getattr(value, "mode", "b")):
            raise InputError(f"{name or '<file object>'}: a file object must be opened in binary mode ('rb')")
        data = value.read()
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(f"{name or '<file object>'}: a file object must be opened in binary mode ('rb')")
        label = str(name) if isinstance(name, str) else "<file object>"
        stem = Path(name).stem if isinstance(name, str) and name and not name.startswith("<") else "image"
        return MemorySource(bytes(data), label=label, stem=stem or "image")
    raise InputError(f"{type(value).__name__}: not a photo (give a path, bytes, a binary file object, "
                     "a PIL image or a numpy array)")


def source_label(source: Source) -> str:
    """How messages name ``source``: the path as given, or the memory source's label."""
    return str(source) if isinstance(source, Path) else source.label


def stream_of(source: Source) -> str | IO[bytes]:
    return str(source) if isinstance(source, Path) else io.BytesIO(source.data)


def pil_of(source: object) -> Image.Image | None:
    """A PIL image for PIL/numpy sources, None for sources that must be decoded."""
    if isinstance(source, (str, Path, bytes, bytearray, memoryview, MemorySource)) or hasattr(source, "read"):
        return None
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        channels_ok = source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (3, 4))
        if source.dtype != np.uint8 or not channels_ok:
            raise InputError(f"<array>: expected uint8 [H, W], [H, W, 3] or [H, W, 4], got {source.dtype} "
                             f"{list(source.shape)}")
        return Image.fromarray(np.ascontiguousarray(source))
    raise InputError(f"{type(source).__name__}: not a photo (give a path, bytes, a binary file object, "
                     "a PIL image or a numpy array)")
