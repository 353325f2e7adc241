"""Trivial croppers measured beside the model in every bench run, through the same metric code.

* ``random``: seeded uniform random scores for the candidates (GAICD: ranking; FCDB/FLMS: the
  top-1 is a uniformly random candidate).
* ``largest``: score = crop area, so the largest candidate ranks first (ties: candidate order).
* ``centre``: the centred crop of 0.8 of the image area with the photo's own aspect ratio. FCDB/FLMS:
  that box itself is the top-1 crop. GAICD: candidates are ranked by their IoU with that box.

Boxes are ``x1 y1 x2 y2`` pixels.
"""

from __future__ import annotations

import numpy as np

from autocrop.geometry import box_iou

BASELINES = ("random", "largest", "centre")
CENTRE_AREA_FRACTION = 0.8


def random_scores(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniform random scores in [0, 1) -> float64 [count] (seeded by the caller's ``rng``)."""
    return rng.random(count)


def area_scores(boxes: np.ndarray) -> np.ndarray:
    """Area in square pixels of each box [N, 4] -> float64 [N]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def centre_box(width: float, height: float, area_fraction: float = CENTRE_AREA_FRACTION) -> np.ndarray:
    """The centred box covering ``area_fraction`` of a ``width`` x ``height`` image, same aspect -> float64 [4]."""
    if not 0 < area_fraction <= 1:
        raise ValueError(f"centre_box: area_fraction must be in (0, 1], got {area_fraction}")
    side = float(np.sqrt(area_fraction))
    w, h = width * side, height * side
    x1, y1 = (width - w) / 2.0, (height - h) / 2.0
    return np.asarray([x1, y1, x1 + w, y1 + h], dtype=np.float64)


def centre_scores(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """IoU of each candidate [N, 4] with :func:`centre_box` of the image -> float64 [N] (GAICD ranking)."""
    return box_iou(centre_box(width, height), boxes)[0]


def baseline_scores(name: str, boxes: np.ndarray, width: float, height: float, rng: np.random.Generator) -> np.ndarray:
    """Scores [N] of baseline ``name`` for candidates ``boxes`` [N, 4] of a ``width`` x ``height`` image."""
    if name == "random":
        return random_scores(len(boxes), rng)
    if name == "largest":
        return area_scores(boxes)
    if name == "centre":
        return centre_scores(boxes, width, height)
    raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")


def baseline_top1(name: str, boxes: np.ndarray, width: float, height: float, rng: np.random.Generator) -> np.ndarray:
    """The top-1 crop [4] of baseline ``name`` among ``boxes`` (``centre``: the centre box itself)."""
    if name == "centre":
        return centre_box(width, height)
    scores = baseline_scores(name, boxes, width, height, rng)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[int(np.argmax(scores))]
