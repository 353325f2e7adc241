"""Candidate views: GAIC's grid (free crops) and exact-ratio crops, as plain functions.

``grid_candidates``: GAIC's grid anchors. The image is divided into 12 x 12 bins; the top-left corner
lies in the first 4 bins and the bottom-right corner in the last 4 bins of each axis (bin edges
included), the crop keeps at least half of the image area and its aspect ratio w/h is in [0.5, 2].
Boxes are ``x1 y1 x2 y2`` in pixels (float32 [N, 4]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from autocrop.errors import InputError
from autocrop.geometry import reduce_ratio, unique_rows, unique_values

if TYPE_CHECKING:
    from autocrop.ratios import RatioSpec

GRID_BINS = 12
CORNER_BINS = 4
MIN_AREA_FRACTION = 0.5
ASPECT_RANGE = (0.5, 2.0)


def grid_candidates(
    width: float,
    height: float,
    bins: int = GRID_BINS,
    corner_bins: int = CORNER_BINS,
    min_area: float = MIN_AREA_FRACTION,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> np.ndarray:
    """GAIC grid anchors for a ``width`` x ``height`` image -> float32 [N, 4] ``x1 y1 x2 y2`` pixels."""
    step_x, step_y = width / bins, height / bins
    starts = np.arange(corner_bins + 1)
    ends = np.arange(bins - corner_bins, bins + 1)
    x1, y1, x2, y2 = np.meshgrid(starts * step_x, starts * step_y, ends * step_x, ends * step_y, indexing="ij")
    boxes = np.stack([x1.ravel(), y1.ravel(), x2.ravel(), y2.ravel()], axis=1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aspect = w / h
    keep = (w * h >= min_area * width * height) & (aspect >= aspect_range[0]) & (aspect <= aspect_range[1])
    return boxes[keep].astype(np.float32)


# ------------------------------------------------------------------------------ ratio-constrained views

RATIO_SIZES = 6  # crop sizes between the smallest and the largest crop of the asked ratio
POSITION_STEP = 1 / 16  # spacing of crop positions, as a fraction of the image's long side (as dense as the grid)


def ratio_candidates(
    width: int,
    height: int,
    ratio_w: int,
    ratio_h: int,
    min_area: float = MIN_AREA_FRACTION,
    sizes: int = RATIO_SIZES,
    position_step: float = POSITION_STEP,
) -> np.ndarray:
    """Crops of exactly ``ratio_w:ratio_h`` in a ``width`` x ``height`` image -> float32 [N, 4] pixels.

    Every box has integer corners and an integer size ``(k * a, k * b)`` where ``a:b`` is the reduced
    ratio, so the output pixel ratio is exact. Sizes run from about ``min_area`` of the largest such
    crop (by area) to the largest; positions lie on a grid with spacing ``position_step`` x the long
    side (odd counts, so the centred crop is always included). Empty [0, 4] when no crop of that ratio
    fits (the image is smaller than ``a`` x ``b`` pixels).
    """
    from math import ceil, sqrt

    width, height = int(width), int(height)
    a, b = reduce_ratio(ratio_w, ratio_h)
    k_max = min(width // a, height // b)
    if k_max < 1:
        return np.zeros((0, 4), dtype=np.float32)
    k_min = max(1, ceil(k_max * sqrt(min_area) - 1e-9))
    ks = unique_values(np.round(np.linspace(k_min, k_max, max(1, sizes))).astype(np.int64))
    step = max(1.0, position_step * max(width, height))
    boxes: list[np.ndarray] = []
    for k in ks:
        w, h = int(k) * a, int(k) * b
        xs = _positions(width - w, step)
        ys = _positions(height - h, step)
        x1, y1 = np.meshgrid(xs, ys, indexing="ij")
        x1, y1 = x1.ravel(), y1.ravel()
        boxes.append(np.stack([x1, y1, x1 + w, y1 + h], axis=1))
    out = np.concatenate(boxes, axis=0)
    return unique_rows(out).astype(np.float32)


def _positions(free: int, step: float) -> np.ndarray:
    """Integer offsets 0..free, evenly spaced about ``step`` apart, odd count (centre included)."""
    if free <= 0:
        return np.zeros(1, dtype=np.int64)
    count = int(np.ceil(free / step / 2)) * 2 + 1
    count = min(count, free + 1)
    return unique_values(np.round(np.linspace(0, free, count)).astype(np.int64))


def candidate_boxes(width: int, height: int, ratios: tuple[RatioSpec, ...] | list[RatioSpec],
                    label: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """All candidate views of a ``width`` x ``height`` photo for the asked ratios.

    Returns (int64 [N, 4] ``x1 y1 x2 y2`` pixels of the photo, int64 [N] index of the ratio in
    ``ratios``). Free crops use GAIC's grid (rounded to whole pixels, duplicates removed); exact ratios
    use :func:`ratio_candidates`. Raises :class:`InputError` naming ``label`` when the photo is too
    small for one of the ratios.
    """
    all_boxes, groups = [], []
    for index, spec in enumerate(ratios):
        exact = spec.resolve(width, height)
        if exact is None:
            boxes = np.round(grid_candidates(width, height)).astype(np.int64)
            boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
            if boxes.shape[0] == 0:
                boxes = np.array([[0, 0, width, height]], dtype=np.int64)
            boxes = unique_rows(boxes)
        else:
            boxes = ratio_candidates(width, height, *exact).astype(np.int64)
            if boxes.shape[0] == 0:
                raise InputError(f"{label}: {width}x{height} px is too small for ratio {spec.label} "
                                 f"(needs at least {exact[0]}x{exact[1]} px)")
        all_boxes.append(boxes)
        groups.append(np.full(boxes.shape[0], index, dtype=np.int64))
    return np.concatenate(all_boxes, axis=0), np.concatenate(groups, axis=0)


# ------------------------------------------------------------------------------ extra views around a subject

EXTRA_SIZES = 4  # crop sizes between the smallest that holds a target and the largest
EXTRA_ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3)  # free crops around a target: these w/h and the photo's own
HEADROOM = 1 / 3  # second vertical position: the target's centre a third of the crop's height from its top


def _span(low: float, high: float, size: float, limit: float) -> tuple[float, float]:
    """Offsets ``o`` with ``[o, o + size]`` inside ``[0, limit]`` and holding ``[low, high]`` (if possible)."""
    return max(0.0, high - size), min(limit - size, low)


def _place(centre: float, size: float, low: float, high: float, limit: int, exact: bool) -> float:
    """The offset of a crop of ``size`` centred at ``centre``, moved to hold ``[low, high]`` and the photo."""
    first, last = _span(low, high, size, limit)
    if exact:
        first, last = float(np.ceil(first - 1e-9)), float(np.floor(last + 1e-9))
    offset = min(max(centre - size / 2, first), last) if first <= last else centre - size / 2
    offset = min(max(offset, 0.0), max(0.0, limit - size))
    return float(round(offset)) if exact else offset


def covering_crops(target: np.ndarray, width: int, height: int, ratio: tuple[int, int] | None,
                   sizes: int = EXTRA_SIZES, min_area: float = MIN_AREA_FRACTION) -> np.ndarray:
    """Crops that hold ``target`` (``x1 y1 x2 y2`` pixels) -> float64 [M, 4] ``x1 y1 x2 y2`` pixels of the photo.

    ``ratio`` ``(a, b)``: crops of exactly ``k*a`` x ``k*b`` px, integer corners; None: free crops of the
    photo's own aspect and :data:`EXTRA_ASPECTS` (w/h within :data:`ASPECT_RANGE`). Sizes: ``sizes`` steps
    from the smallest crop that holds the target (at least ``min_area`` of the largest crop, as the grid)
    to the largest; positions: centred on the target, and with the target's centre :data:`HEADROOM` of the
    crop's height below its top; both moved inside the photo, still holding the target. Empty when the
    target does not fit.
    """
    from math import ceil, sqrt

    tx1, ty1, tx2, ty2 = (float(v) for v in np.asarray(target, dtype=np.float64).reshape(4))
    tw, th = tx2 - tx1, ty2 - ty1
    shapes: list[tuple[float, float]] = []
    if ratio is not None:
        a, b = reduce_ratio(*ratio)
        k_max = min(width // a, height // b)
        k_low = max(ceil(max(tw / a, th / b) - 1e-9), ceil(k_max * sqrt(min_area) - 1e-9), 1)
        if k_low <= k_max:
            ks = unique_values(np.round(np.linspace(k_low, k_max, sizes)).astype(np.int64))
            shapes = [(float(k * a), float(k * b)) for k in ks]
    else:
        aspects = sorted({round(width / height, 6), *EXTRA_ASPECTS})
        for aspect in aspects:
            if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
                continue
            w_max = min(float(width), height * aspect)
            w_low = max(tw, th * aspect, sqrt(min_area * width * height * aspect))
            if w_low <= w_max + 1e-6:
                shapes += [(float(w), float(w / aspect)) for w in np.linspace(min(w_low, w_max), w_max, sizes)]
    exact = ratio is not None
    cx, cy = (tx1 + tx2) / 2, (ty1 + ty2) / 2
    out = []
    for w, h in shapes:
        x = _place(cx, w, tx1, tx2, width, exact)
        for centre_y in (cy, cy - h / 2 + h * HEADROOM):
            y = _place(centre_y, h, ty1, ty2, height, exact)
            out.append((x, y, x + w, y + h))
    return unique_rows(np.asarray(out, dtype=np.float64).reshape(-1, 4))


def repaired_crops(boxes: np.ndarray, cut: np.ndarray, faces: np.ndarray, width: int, height: int,
                   ratio: tuple[int, int] | None, min_area: float = MIN_AREA_FRACTION) -> np.ndarray:
    """Views moved so that a face they cut is wholly inside or wholly outside -> float64 [M, 4] pixels.

    boxes [N, 4] views, faces [F, 4] (grown) face boxes, cut bool [N, F]: view i cuts face j. For each cut:
    one repair that takes the face in (every edge that runs through it moved just past it) and, per axis
    with such an edge, one that leaves it out (that edge moved just before it). Exact ratios (``ratio``
    given) move the whole view (same size, integer corners); free views move the edges themselves, and
    also the whole view, keeping only results of aspect within :data:`ASPECT_RANGE` and at least
    ``min_area`` of the photo. Everything is kept inside the photo; a repair may cut another face (the
    caller judges).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    limits = (width, height)
    out: list[np.ndarray] = []
    for i, j in zip(*np.nonzero(cut)):
        box, face = boxes[i], faces[j]
        take_shift, take_edges, fits = box.copy(), box.copy(), True
        for axis in (0, 1):
            low, high = float(np.floor(face[axis])), float(np.ceil(face[axis + 2]))
            start, end = box[axis], box[axis + 2]
            crosses = (face[axis] < start < face[axis + 2], face[axis] < end < face[axis + 2])
            if not any(crosses):
                continue
            fits &= not all(crosses)
            delta = low - start if crosses[0] else high - end
            take_shift[[axis, axis + 2]] = _shifted(start + delta, end + delta, limits[axis])
            take_edges[axis if crosses[0] else axis + 2] = low if crosses[0] else high
            leave = box.copy()
            delta = high - start if crosses[0] else low - end
            leave[[axis, axis + 2]] = _shifted(start + delta, end + delta, limits[axis])
            out.append(leave)
            if ratio is None:
                edges = box.copy()
                edges[axis if crosses[0] else axis + 2] = high if crosses[0] else low
                out.append(edges)
        if fits:
            out.append(take_shift)
            if ratio is None:
                out.append(take_edges)
    if not out:
        return np.zeros((0, 4), dtype=np.float64)
    arr = np.asarray(out, dtype=np.float64)
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, width)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, height)
    w, h = arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]
    ok = (w >= 1) & (h >= 1)
    if ratio is None:
        aspect = w / np.maximum(h, 1e-9)
        ok &= (aspect >= ASPECT_RANGE[0]) & (aspect <= ASPECT_RANGE[1]) & (w * h >= min_area * width * height)
    return unique_rows(np.round(arr[ok]))


def _shifted(start: float, end: float, limit: int) -> tuple[float, float]:
    """``[start, end]`` moved (same length) to lie inside ``[0, limit]`` when it can."""
    size = end - start
    offset = min(max(start, 0.0), max(0.0, limit - size))
    return offset, offset + size
