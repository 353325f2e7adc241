"""Memory-allocator settings of the ``autocrop`` process for photo after photo (command line only).

Decoding a 12-megapixel photo allocates ~36 MB for its pixels and cutting a crop ~27 MB more. By default
Pillow hands every freed image block back to the C allocator, and glibc returns allocations this large to
the kernel at once (``munmap``), so the next photo's memory is faulted in again page by page: on a virtual
machine that costs as much system time as decoding itself (measured: 55 of 200 ms CPU per photo in
``autocrop batch``). Keeping freed memory for reuse removes it; the price is that the process keeps the
memory of its largest moment (a few hundred MB in ``batch``) until it exits.

A one-photo ``autocrop photo.jpg`` has the opposite problem: everything it allocates is fresh memory. Creating
the model's ONNX Runtime session and its first forward pass touch ~55 MB, ~14,000 page faults at ~3 us each on
a virtual machine, on the command's critical path. :func:`prefault_heap` has the idle second core fault in
that much heap while Python imports its modules, so the session and the forward pass reuse resident pages.

These are process-wide settings, so only the command line applies them (the process is its own); library
code (``Cropper``) never does.
"""

from __future__ import annotations

import ctypes
import sys
import threading

#: freed Pillow image blocks (16 MB each by default) kept for the next image: at most 1 GB.
PILLOW_BLOCKS_KEPT = 64
#: glibc ``mallopt`` parameters (malloc.h) and values: allocations up to 32 MB (the largest threshold glibc
#: accepts on 64-bit systems) come from the heap, and freed heap memory is not trimmed below 1 GB.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
#: heap faulted in ahead of a one-photo crop: the model session (~35 MB), the first forward pass (~20 MB), the
#: face detector and the photo's reduced decode, with margin (measured against 64 and 128 MB on a 1024 px photo)
PREFAULT_BYTES = 96 * 1024 * 1024
PREFAULT_CHUNK_BYTES = 8 * 1024 * 1024  # below the mmap threshold: heap memory, kept when freed


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
    applied["glibc"] = _glibc_keep_memory(_glibc())
    return applied


def prefault_heap(size: int = PREFAULT_BYTES) -> threading.Thread | None:
    """Keep freed memory (as :func:`keep_freed_memory` does for glibc), serve every thread from one malloc
    arena, and fault ``size`` bytes of heap in from a background thread -> that thread, or None when the C
    library is not glibc (nothing is changed then).

    The thread allocates ``size`` in 8 MB chunks, writes zeros to them (the page faults happen here, on the
    otherwise idle core; ctypes calls release the GIL) and frees them all: the heap keeps them, resident,
    for the model session (created in another thread, hence the one arena) and the forward pass. Costs
    ~25 MB more peak memory; started by :mod:`autocrop.launch`, measured on a 1024 px photo: 0.499 -> 0.448 s
    and 0.588 -> 0.528 s (two interleaved A/B runs of 40, docs/runtime.md).
    """
    libc = _glibc()
    if not _glibc_keep_memory(libc) or libc is None or not libc.mallopt(M_ARENA_MAX, 1):
        return None
    malloc, free, memset = libc.malloc, libc.free, libc.memset
    malloc.argtypes, malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    free.argtypes, free.restype = [ctypes.c_void_p], None
    memset.argtypes, memset.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t], ctypes.c_void_p

    def fault_in() -> None:
        chunks = [malloc(PREFAULT_CHUNK_BYTES) for _ in range(max(1, size // PREFAULT_CHUNK_BYTES))]
        for chunk in chunks:
            if chunk:
                memset(chunk, 0, PREFAULT_CHUNK_BYTES)
        for chunk in chunks:
            free(chunk)  # free(NULL) is a no-op

    thread = threading.Thread(target=fault_in, name="autocrop-prefault", daemon=True)
    thread.start()
    return thread


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt``), else None.

    ``CDLL(None)`` is the process's own symbols, the C library's among them: no ``ldconfig`` run to find it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    return libc


def _glibc_keep_memory(libc: ctypes.CDLL | None) -> bool:
    """Allocations up to 32 MB from the heap, freed heap memory kept (False when ``libc`` is None or refuses)."""
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
