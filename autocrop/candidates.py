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


# ------------------------------------------------------------------------------ ratio-constrained views

# 6 sizes x positions every 1/16 of the long side: ~90..260 views per ratio, as dense as GAIC's grid
# (12 bins). Each view costs forward time: ~0.05 ms with the GAIC head, ~0.23 ms with the
# spatial-aware head (1 CPU thread, measured on the 2-core dev machine).
RATIO_SIZES = 6  # crop sizes between the smallest and the largest crop of the asked ratio
POSITION_STEP = 1 / 16  # spacing of crop positions, as a fraction of the image's long side


def reduce_ratio(ratio_w: int, ratio_h: int) -> tuple[int, int]:
    """``16:9`` stays ``16:9``; ``32:18`` -> ``16:9``. Both terms must be positive integers."""
    from math import gcd

    if ratio_w <= 0 or ratio_h <= 0:
        raise ValueError(f"ratio terms must be positive, got {ratio_w}:{ratio_h}")
    g = gcd(int(ratio_w), int(ratio_h))
    return int(ratio_w) // g, int(ratio_h) // g


def simple_ratio(width: int, height: int, tolerance: float = 0.005, max_term: int = 64) -> tuple[int, int]:
    """The simplest ``a:b`` (terms <= ``max_term``) within ``tolerance`` (relative) of ``width:height``.

    Used for ``--ratio original``: a 1024x683 photo is 3:2 to 0.05 %, and 3:2 leaves many exact crop
    sizes, whereas 1024:683 exactly admits only the whole photo. Falls back to the exact ratio.
    """
    from fractions import Fraction

    target = width / height
    best: tuple[int, int] | None = None
    for den in range(1, max_term + 1):
        num = round(target * den)
        if 1 <= num <= max_term and abs(num / den - target) / target <= tolerance:
            frac = Fraction(num, den)
            best = (frac.numerator, frac.denominator)
            break
    return best if best is not None else reduce_ratio(width, height)


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


# ------------------------------------------------------------------------------ diversity-aware top-k

DIVERSITY_IOU = 0.7  # two chosen crops overlap by at most this IoU (relaxed only when too few remain)
_RELAXED_IOU = (0.8, 0.9, 0.95)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a`` [N, 4] and ``b`` [M, 4] (x1 y1 x2 y2) -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def select_diverse(boxes: np.ndarray, scores: np.ndarray, k: int, iou_threshold: float = DIVERSITY_IOU) -> np.ndarray:
    """Indices of up to ``k`` high-scoring boxes that are not near-duplicates, best first.

    Greedy: walk the boxes by descending score, keep one when its IoU with every kept box is
    <= ``iou_threshold``. If fewer than ``k`` are kept, the walk is repeated with looser thresholds
    (0.8, 0.9, 0.95), so ``k`` crops are returned whenever ``k`` sufficiently different boxes exist;
    identical boxes are never returned twice. Returns int64 [<= k].
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if k < 1 or boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes, boxes)
    chosen: list[int] = []
    for threshold in (iou_threshold, *[t for t in _RELAXED_IOU if t > iou_threshold]):
        for i in order:
            if len(chosen) >= k:
                break
            if i in chosen:
                continue
            if not chosen or float(iou[i, chosen].max()) <= threshold:
                chosen.append(int(i))
        if len(chosen) >= k:
            break
    chosen.sort(key=lambda i: (-scores[i], i))
    return np.asarray(chosen, dtype=np.int64)


# ------------------------------------------------------------------------------ refinement of chosen views

# Chosen on FCDB validation images (10 % of FCDB train; never test), flat between 0.2 and 0.3.
REFINE_TEMPERATURE = 0.25  # softmax temperature, in units of the photo's score standard deviation
REFINE_MIN_IOU = 0.5  # a candidate helps refine a chosen view only when it overlaps it this much


def refine_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    chosen: np.ndarray,
    temperature: float = REFINE_TEMPERATURE,
    min_iou: float = REFINE_MIN_IOU,
) -> np.ndarray:
    """Score-weighted mean box around each chosen view -> float64 [K, 4] ``x1 y1 x2 y2``.

    The candidates are a grid, so the single best one is quantised to the grid spacing; its
    well-scored neighbours say on which side of it the best crop lies. Each candidate joins the chosen
    view it overlaps most, when that IoU is >= ``min_iou``; the chosen view's refined box is the mean
    of its members weighted by ``softmax((score - chosen score) / (temperature * std(scores)))``.
    ``temperature <= 0`` (or all scores equal) returns the chosen boxes unchanged. Averaging boxes of
    one aspect ratio keeps that ratio. boxes [N, 4], scores [N], chosen int [K] indices into them.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    chosen = np.asarray(chosen, dtype=np.int64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    spread = float(scores.std()) if scores.size else 0.0
    if chosen.size == 0 or temperature <= 0 or spread <= 0:
        return boxes[chosen].copy()
    overlap = box_iou(boxes[chosen], boxes)  # [K, N]
    owner = np.argmax(overlap, axis=0)  # the chosen view each candidate overlaps most
    refined = np.empty((chosen.size, 4), dtype=np.float64)
    for k, index in enumerate(chosen):
        members = np.flatnonzero((owner == k) & (overlap[k] >= min_iou))
        members = np.union1d(members, [index])
        weights = np.exp((scores[members] - scores[index]) / (temperature * spread))
        refined[k] = (boxes[members] * weights[:, None]).sum(axis=0) / weights.sum()
    return refined


def snap_box(box: np.ndarray, width: int, height: int, ratio: tuple[int, int] | None = None) -> np.ndarray:
    """A float box -> int64 [4] pixel box inside the ``width`` x ``height`` photo, at least 1 px wide.

    With ``ratio`` ``(a, b)`` the result is exactly ``k*a`` x ``k*b`` pixels (``k`` the nearest size
    that fits), centred where ``box`` is centred and shifted inside the photo.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    width, height = int(width), int(height)
    if ratio is None:
        left = int(np.clip(round(x1), 0, width - 1))
        top = int(np.clip(round(y1), 0, height - 1))
        right = int(np.clip(round(x2), left + 1, width))
        bottom = int(np.clip(round(y2), top + 1, height))
        return np.array([left, top, right, bottom], dtype=np.int64)
    a, b = reduce_ratio(*ratio)
    k_max = max(1, min(width // a, height // b))
    k = int(np.clip(round(((x2 - x1) / a + (y2 - y1) / b) / 2), 1, k_max))
    w, h = k * a, k * b
    left = int(np.clip(round((x1 + x2 - w) / 2), 0, max(0, width - w)))
    top = int(np.clip(round((y1 + y2 - h) / 2), 0, max(0, height - h)))
    return np.array([left, top, left + w, top + h], dtype=np.int64)
