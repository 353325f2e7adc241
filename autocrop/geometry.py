"""Box geometry on numpy arrays: the one copy of IoU and pixel snapping.

Boxes are ``x1 y1 x2 y2`` (x2/y2 exclusive) in any consistent unit (pixels or normalised); the
functions say where they need pixels.
"""

from __future__ import annotations

from math import gcd

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a`` [N, 4] and ``b`` [M, 4] -> float64 [N, M] (0 for empty unions)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def unique_rows(rows: np.ndarray) -> np.ndarray:
    """The distinct rows of ``rows`` [N, K], sorted lexicographically (column 0 first) -> [M, K], same dtype.

    Equal to ``np.unique(rows, axis=0)`` for arrays without NaN. It exists because ``np.unique`` (numpy 2.4)
    imports ``numpy.ma`` on first use: 40-60 ms of every ``autocrop`` command's start-up.
    """
    rows = np.asarray(rows)
    if rows.shape[0] == 0:
        return rows.copy()
    ordered = rows[np.lexsort(rows.T[::-1])]
    keep = np.ones(ordered.shape[0], dtype=bool)
    keep[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    return ordered[keep]


def unique_values(values: np.ndarray) -> np.ndarray:
    """The distinct values of the 1-D ``values``, ascending (``np.unique`` without NaN; see :func:`unique_rows`)."""
    ordered = np.sort(np.asarray(values).reshape(-1))
    keep = np.ones(ordered.shape[0], dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def max_iou(box: np.ndarray, others: np.ndarray) -> float:
    """The largest IoU of ``box`` [4] with any row of ``others`` [M, 4]; 0 when ``others`` is empty."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    if others.shape[0] == 0:
        return 0.0
    return float(box_iou(box, others).max())


def max_iou_values(box: tuple[int, int, int, int], others: list[tuple[float, float, float, float, float]]) -> float:
    """:func:`max_iou` of a whole-pixel box and boxes ``(x1, y1, x2, y2, area)`` (floats, pixels; 0 when
    there are none), in :func:`box_iou`'s float64 steps (bit for bit equal), without numpy's per-call cost
    (a diverse top-k tries ~50 crops)."""
    x1, y1, x2, y2 = float(box[0]), float(box[1]), float(box[2]), float(box[3])
    area = (x2 - x1) * (y2 - y1)
    best = 0.0
    for ox1, oy1, ox2, oy2, other_area in others:
        inter = max(min(x2, ox2) - max(x1, ox1), 0.0) * max(min(y2, oy2) - max(y1, oy1), 0.0)
        union = area + other_area - inter
        best = max(best, inter / max(union, 1e-12) if union > 0 else 0.0)
    return best


def reduce_ratio(ratio_w: int, ratio_h: int) -> tuple[int, int]:
    """``16:9`` stays ``16:9``; ``32:18`` -> ``16:9``. Both terms must be positive integers."""
    if ratio_w <= 0 or ratio_h <= 0:
        raise ValueError(f"ratio terms must be positive, got {ratio_w}:{ratio_h}")
    g = gcd(int(ratio_w), int(ratio_h))
    return int(ratio_w) // g, int(ratio_h) // g


def snap_box(box: np.ndarray, width: int, height: int, ratio: tuple[int, int] | None = None) -> np.ndarray:
    """A float box -> int64 [4] pixel box inside the ``width`` x ``height`` photo, at least 1 px wide.

    With ``ratio`` ``(a, b)`` the result is exactly ``k*a`` x ``k*b`` pixels (``k`` the nearest size
    that fits), centred where ``box`` is centred and shifted inside the photo.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    return np.array(snap_values(x1, y1, x2, y2, width, height, ratio), dtype=np.int64)


def snap_values(x1: float, y1: float, x2: float, y2: float, width: int, height: int,
                ratio: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """:func:`snap_box` of the float box ``x1 y1 x2 y2`` (pixels) -> ``(left, top, right, bottom)`` whole pixels
    (right/bottom exclusive), without numpy's per-call cost (loops over candidates call it thousands of times).
    Raises like ``round`` on NaN and infinity."""
    width, height = int(width), int(height)
    # min(max(v, low), high) clamps a whole number; high wins when low > high
    if ratio is None:
        left = min(max(round(x1), 0), width - 1)
        top = min(max(round(y1), 0), height - 1)
        return left, top, min(max(round(x2), left + 1), width), min(max(round(y2), top + 1), height)
    a, b = reduce_ratio(*ratio)
    k = min(max(round(((x2 - x1) / a + (y2 - y1) / b) / 2), 1), max(1, min(width // a, height // b)))
    w, h = k * a, k * b
    left = min(max(round((x1 + x2 - w) / 2), 0), max(0, width - w))
    top = min(max(round((y1 + y2 - h) / 2), 0), max(0, height - h))
    return left, top, left + w, top + h


def clip_boxes(boxes: np.ndarray, width: int, height: int, label: str = "boxes") -> np.ndarray:
    """Validate pixel boxes [N, 4] against a ``width`` x ``height`` photo; clip overshoots of up to 1 px.

    Raises :class:`~autocrop.errors.UsageError` (starting with ``label``) for NaN/inf values, boxes
    more than 1 px outside the photo and empty boxes. Returns a float64 copy.
    """
    from autocrop.errors import UsageError

    if not np.all(np.isfinite(boxes)):
        raise UsageError(f"{label}: contain NaN or infinite values")
    tol = 1.0
    bad = (boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol) | (boxes[:, 3] > height + tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"{label}: box {i} {boxes[i].tolist()} lies outside the {width}x{height} photo "
                         "(boxes are x1 y1 x2 y2 pixels of the EXIF-oriented photo)")
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise UsageError(f"{label}: box {i} {boxes[i].tolist()} is empty (needs x2 > x1 and y2 > y1)")
    return clipped
