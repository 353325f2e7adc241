"""Candidate views.

``grid_candidates``: GAIC's grid anchors. The image is divided into 12 x 12 bins; the top-left corner
lies in the first 4 bins and the bottom-right corner in the last 4 bins of each axis (bin edges
included), the crop keeps at least half of the image area and its aspect ratio w/h is in [0.5, 2].
Boxes are ``x1 y1 x2 y2`` in pixels (float32 [N, 4]).
"""

from __future__ import annotations

import numpy as np

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
