"""Plain folders of unlabeled photos (for rank-consistency training and batch work)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif", ".avif"})


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by suffix, case-insensitive), sorted; symlinked dirs not followed."""
    root = Path(root)
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
