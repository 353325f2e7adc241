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
from autocrop.geometry import reduce_ratio

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
    ks = np.unique(np.round(np.linspace(k_min, k_max, max(1, sizes))).astype(np.int64))
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
    return np.unique(out, axis=0).astype(np.float32)


def _positions(free: int, step: float) -> np.ndarray:
    """Integer offsets 0..free, evenly spaced about ``step`` apart, odd count (centre included)."""
    if free <= 0:
        return np.zeros(1, dtype=np.int64)
    count = int(np.ceil(free / step / 2)) * 2 + 1
    count = min(count, free + 1)
    return np.unique(np.round(np.linspace(0, free, count)).astype(np.int64))


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
            boxes = np.unique(boxes, axis=0)
        else:
            boxes = ratio_candidates(width, height, *exact).astype(np.int64)
            if boxes.shape[0] == 0:
                raise InputError(f"{label}: {width}x{height} px is too small for ratio {spec.label} "
                                 f"(needs at least {exact[0]}x{exact[1]} px)")
        all_boxes.append(boxes)
        groups.append(np.full(boxes.shape[0], index, dtype=np.int64))
    return np.concatenate(all_boxes, axis=0), np.concatenate(groups, axis=0)
