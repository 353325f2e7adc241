"""Memory-allocator settings of the ``autocrop`` process for photo after photo (command line only).

Decoding a 12-megapixel photo allocates ~36 MB for its pixels and cutting a crop ~27 MB more. By default
Pillow hands every freed image block back to the C allocator, and glibc returns allocations this large to
the kernel at once (``munmap``), so the next photo's memory is faulted in again page by page: on a virtual
machine that costs as much system time as decoding itself (measured: 55 of 200 ms CPU per photo in
``autocrop batch``). Keeping freed memory for reuse removes it; the price is that the process keeps the
memory of its largest moment (a few hundred MB in ``batch``) until it exits.

These are process-wide settings, so only the command line applies them (the process is its own); library
code (``Cropper``) never does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: freed Pillow image blocks (16 MB each by default) kept for the next image: at most 1 GB.
PILLOW_BLOCKS_KEPT = 64
#: glibc ``mallopt`` parameters (malloc.h) and values: allocations up to 32 MB (the largest threshold glibc
#: accepts on 64-bit systems) come from the heap, and freed heap memory is not trimmed below 1 GB.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def keep_freed_memory() -> dict[str, bool]:
    """Make Pillow and glibc keep freed image memory for reuse -> which of the two settings took effect.

    Safe everywhere: on a C library other than glibc (macOS, Windows, musl) only Pillow's setting applies.
    """
    from PIL import Image

    applied = {"pillow": False, "glibc": False}
    try:
        Image.core.set_blocks_max(max(Image.core.get_blocks_max(), PILLOW_BLOCKS_KEPT))
        applied["pillow"] = True
    except (AttributeError, ValueError):  # a Pillow without the block arena
        pass
    if sys.platform.startswith("linux"):
        applied["glibc"] = _glibc_keep_memory()
    return applied


def _glibc_keep_memory() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))
