"""GAICD reader (official layout): ``images/<split>/NAME.jpg`` + ``annotations/<split>/NAME.txt``.

Each annotation line is ``y1 x1 y2 x2 MOS`` in pixels of that image; a MOS of -2 marks an invalid
crop and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocrop.errors import DatasetError

INVALID_MOS = -2.0


@dataclass(frozen=True)
class ScoredImage:
    """One image with densely scored candidate crops.

    boxes:  float32 [N, 4], ``x1 y1 x2 y2`` in pixels of the (EXIF-oriented) image file.
    scores: float32 [N], mean opinion score (1..5).
    """

    path: Path
    name: str
    boxes: np.ndarray
    scores: np.ndarray


def read_gaicd_annotation(txt: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse one GAICD annotation file into (boxes [N,4] x1y1x2y2, mos [N]); invalid crops dropped."""
    boxes: list[list[float]] = []
    mos: list[float] = []
    for lineno, line in enumerate(txt.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"{txt}:{lineno}: expected 'y1 x1 y2 x2 MOS', got {line.strip()!r}")
        y1, x1, y2, x2, score = (float(p) for p in parts)
        if score == INVALID_MOS:
            continue
        boxes.append([x1, y1, x2, y2])
        mos.append(score)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(mos, np.float32)


def load_gaicd(root: str | Path, split: str = "test") -> tuple[list[ScoredImage], int]:
    """All annotated images of ``split`` under ``root``; returns (images sorted by name, missing count).

    Annotations whose image file is absent are skipped and counted. Raises :class:`DatasetError`
    when the layout is wrong or there are no annotations at all.
    """
    root = Path(root)
    ann_dir, img_dir = root / "annotations" / split, root / "images" / split
    if not ann_dir.is_dir() or not img_dir.is_dir():
        raise DatasetError(
            f"{root}: not a GAICD directory (expected annotations/{split}/*.txt and images/{split}/*.jpg)"
        )
    txts = sorted(ann_dir.glob("*.txt"))
    if not txts:
        raise DatasetError(f"{ann_dir}: no GAICD annotations (*.txt) found")
    images: list[ScoredImage] = []
    missing = 0
    for txt in txts:
        candidates = [img_dir / f"{txt.stem}{ext}" for ext in (".jpg", ".jpeg", ".png", ".JPG")]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing += 1
            continue
        boxes, mos = read_gaicd_annotation(txt)
        if len(mos):
            images.append(ScoredImage(path=path, name=txt.stem, boxes=boxes, scores=mos))
    return images, missing
