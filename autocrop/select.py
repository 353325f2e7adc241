"""Choosing crops from scored candidates: diverse top-k, refinement, the final pixel boxes (plain functions).

For each asked ratio: :func:`select_diverse` picks the best views that are not near-duplicates,
:func:`refine_boxes` moves each chosen view to the score-weighted mean of its neighbours (the grid is
coarse, 1/12 of the photo), and :func:`final_boxes` snaps them to whole pixels and the exact ratio
without ever making two crops more alike than their views were. Every step is *prefix-stable*: the
first k crops of a top-(k+1) request are the crops of the top-k request.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autocrop.geometry import box_iou, max_iou, snap_box, unique_values

DIVERSITY_IOU = 0.7  # two chosen crops overlap by at most this IoU (relaxed only when too few remain)
RELAXED_IOU = (0.8, 0.9, 0.95)
# Chosen on FCDB validation images (10 % of FCDB train; never test), flat between 0.2 and 0.3.
REFINE_TEMPERATURE = 0.25  # softmax temperature, in units of the photo's score standard deviation
REFINE_MIN_IOU = 0.5  # a candidate helps refine a chosen view only when it overlaps it this much


def select_diverse(boxes: np.ndarray, scores: np.ndarray, k: int, iou_threshold: float = DIVERSITY_IOU,
                   priority: np.ndarray | None = None, rounds: np.ndarray | None = None) -> np.ndarray:
    """Indices of up to ``k`` high-scoring boxes that are not near-duplicates, in the order chosen.

    Greedy: walk the boxes by descending score, keep one when its IoU with every kept box is
    <= ``iou_threshold``. If fewer than ``k`` are kept, the walk is repeated with looser thresholds
    (0.8, 0.9, 0.95), so ``k`` crops are returned whenever ``k`` sufficiently different boxes exist;
    identical boxes are never returned twice. The order is the order of choice (best first, then
    the views admitted by looser thresholds), so the result for ``k`` is a prefix of the result for
    ``k + 1``. boxes [N, 4], scores [N] -> int64 [<= k].

    priority: int [N], lower first (e.g. the face rule's rank, :func:`autocrop.faces.rules.priority`): the
    walk takes the boxes by ascending priority, then descending score; None = by score alone.
    rounds: int [N]: the boxes of round 0 go through every threshold (the looser ones too) before any box
    of round 1 is considered, and so on (the face rule: a crop that keeps it, even one more alike to the
    others, comes before one that breaks it); None = one round.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if k < 1 or boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if priority is None:
        order = np.argsort(-scores, kind="stable")
    else:
        order = np.lexsort((-scores, np.asarray(priority, dtype=np.int64).reshape(-1)))
    iou = box_iou(boxes, boxes)
    stage = np.zeros(boxes.shape[0], dtype=np.int64) if rounds is None else np.asarray(rounds, np.int64).reshape(-1)
    chosen: list[int] = []
    for current in unique_values(stage):
        members = order[stage[order] == current]
        for threshold in (iou_threshold, *[t for t in RELAXED_IOU if t > iou_threshold]):
            for i in members:
                if len(chosen) >= k:
                    break
                if i in chosen:
                    continue
                if not chosen or float(iou[i, chosen].max()) <= threshold:
                    chosen.append(int(i))
            if len(chosen) >= k:
                break
    return np.asarray(chosen, dtype=np.int64)


def refine_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    chosen: np.ndarray,
    temperature: float = REFINE_TEMPERATURE,
    min_iou: float = REFINE_MIN_IOU,
) -> np.ndarray:
    """Score-weighted mean box around each chosen view -> float64 [K, 4] ``x1 y1 x2 y2``.

    The candidates are a grid, so the single best one is quantised to the grid spacing; its
    well-scored neighbours say on which side of it the best crop lies. A candidate joins chosen view k
    when it overlaps view k by IoU >= ``min_iou`` and by more than any earlier chosen view; the chosen
    view's refined box is the mean of its members weighted by
    ``softmax((score - chosen score) / (temperature * std(scores)))``.
    ``temperature <= 0`` (or all scores equal) returns the chosen boxes unchanged. Averaging boxes of
    one aspect ratio keeps that ratio. boxes [N, 4], scores [N], chosen int [K] indices into them.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    chosen = np.asarray(chosen, dtype=np.int64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    spread = float(scores.std()) if scores.size else 0.0
    scale = float(np.abs(scores).max()) if scores.size else 0.0
    if chosen.size == 0 or temperature <= 0 or spread <= 1e-9 * max(1.0, scale):  # equal scores up to rounding
        return boxes[chosen].copy()
    overlap = box_iou(boxes[chosen], boxes)  # [K, N]
    refined = np.empty((chosen.size, 4), dtype=np.float64)
    for k, index in enumerate(chosen):
        # a candidate helps the view it overlaps most among views 1..k (earlier views win ties), so the
        # refined box of view k never depends on the views chosen after it
        owner = np.argmax(overlap[: k + 1], axis=0)
        members = np.flatnonzero((owner == k) & (overlap[k] >= min_iou))
        members = unique_values(np.append(members, index))  # np.union1d, without importing numpy.ma
        weights = np.exp((scores[members] - scores[index]) / (temperature * spread))
        refined[k] = (boxes[members] * weights[:, None]).sum(axis=0) / weights.sum()
    return refined


def final_boxes(boxes: np.ndarray, scores: np.ndarray, chosen: np.ndarray, width: int, height: int,
                ratio: tuple[int, int] | None, refine: bool = True, diversity: float = DIVERSITY_IOU,
                accept: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> np.ndarray:
    """The crops returned for the ``chosen`` candidates (in rank order) -> int64 [K, 4] pixels of the photo.

    boxes [N, 4] / scores [N]: one ratio's candidates (pixels); ratio: its exact ``(a, b)``, None when
    free. Each crop is its refined view (see :func:`refine_boxes`) snapped to whole pixels and the
    exact ratio, always inside the photo. Refinement never makes the crops less distinct than the
    chosen views were: crop k keeps its refined box only if it overlaps every earlier crop by at most
    ``max(diversity, the largest IoU of view k with those crops)``; else it is its snapped view. So
    refining never makes a crop more alike to the ones before it than its own view is, and crop k
    depends only on views 1..k: asking for more crops never changes the first ones.
    ``accept(refined, view)`` (int64 [4] boxes), when given, must also hold for the refined box (the face
    rule: :func:`autocrop.faces.rules.no_worse`), else the crop is its view.
    """
    chosen = np.asarray(chosen, dtype=np.int64).reshape(-1)
    views = np.asarray([snap_box(box, width, height, ratio) for box in np.asarray(boxes)[chosen]],
                       dtype=np.int64).reshape(-1, 4)
    if not refine or chosen.size == 0:
        return views
    refined = refine_boxes(boxes, scores, chosen)
    final: list[np.ndarray] = []
    for k, view in enumerate(views):
        candidate = snap_box(refined[k], width, height, ratio)
        earlier = np.asarray(final)
        bound = max(diversity, max_iou(view, earlier))
        keep = max_iou(candidate, earlier) <= bound and (accept is None or bool(accept(candidate, view)))
        final.append(candidate if keep else view)
    return np.asarray(final, dtype=np.int64).reshape(-1, 4)
