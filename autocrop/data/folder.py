"""File suffixes autocrop treats as photos (used by ``autocrop batch`` to walk folders)."""

from __future__ import annotations

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif", ".avif"}
)
