"""Choosing crops from scored candidates: diverse top-k of the refined crops (plain functions).

For each asked ratio, :func:`select_crops` walks the candidates best first and keeps a candidate when its
*crop* -- its view moved to the score-weighted mean of its neighbours (:func:`refine_boxes`; the grid is
coarse, 1/12 of the photo), snapped to whole pixels and the exact ratio -- is not a near-duplicate of the
crops kept before it. :func:`select_diverse` is the same walk on plain boxes. Every step is
*prefix-stable*: the first k crops of a top-(k+1) request are the crops of the top-k request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from autocrop.geometry import box_iou, max_iou_values, snap_values, unique_values

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
    iou = box_iou(boxes, boxes)
    chosen: list[int] = []
    for i in _walk(_passes(scores, k, priority, rounds), k, iou_threshold,
                   lambda i, threshold: not chosen or float(iou[i, chosen].max()) <= threshold):
        chosen.append(i)
    return np.asarray(chosen, dtype=np.int64)


def _passes(scores: np.ndarray, k: int, priority: np.ndarray | None, rounds: np.ndarray | None) -> list[list[int]]:
    """The candidates of each round of :func:`_walk` (ascending round), in the order it tries them: by ascending
    ``priority`` (None: all equal), then descending score, ties in index order. scores [N]; empty when
    ``k < 1`` or N = 0 (nothing to walk)."""
    if k < 1 or scores.shape[0] == 0:
        return []
    if priority is None:
        order = np.argsort(-scores, kind="stable")
    else:
        order = np.lexsort((-scores, np.asarray(priority, dtype=np.int64).reshape(-1)))
    stage = np.zeros(scores.shape[0], dtype=np.int64) if rounds is None else np.asarray(rounds, np.int64).reshape(-1)
    return [order[stage[order] == current].tolist() for current in unique_values(stage)]


def _walk(passes: list[list[int]], k: int, iou_threshold: float, fits: Callable[[int, float], bool]) -> Iterator[int]:
    """The greedy walk of :func:`select_diverse` over the rounds ``passes`` (:func:`_passes`): yields up to ``k``
    candidate indices, each one that ``fits(i, threshold)`` given those yielded before it (the caller records
    them before the next is tried)."""
    taken: set[int] = set()
    for members in passes:
        for threshold in (iou_threshold, *[t for t in RELAXED_IOU if t > iou_threshold]):
            for i in members:
                if len(taken) >= k:
                    return
                if i in taken:
                    continue
                if fits(i, threshold):
                    taken.add(i)
                    yield i
            if len(taken) >= k:
                return


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
        earlier = overlap[:k].max(axis=0) if k else None
        refined[k] = _refined_view(boxes, scores, int(index), overlap[k], earlier, temperature * spread, min_iou)
    return refined


def _refined_view(boxes: np.ndarray, scores: np.ndarray, index: int, own: np.ndarray, earlier: np.ndarray | None,
                  softness: float, min_iou: float) -> np.ndarray:
    """The refined box of view ``index`` -> float64 [4]: own [N] is its IoU with every candidate, earlier
    [N] the largest IoU of each candidate with the views chosen before it (None: none chosen); softness =
    temperature * std(scores) (> 0)."""
    # a candidate helps the view it overlaps most among the views so far (earlier views win ties), so the
    # refined box of a view never depends on the views chosen after it
    helps = own >= min_iou
    if earlier is not None:
        helps &= own > earlier
    helps[index] = True  # the view itself, always (a new array: `own >= min_iou` made it)
    members = np.flatnonzero(helps)
    weights = np.exp((scores[members] - scores[index]) / softness)
    return (boxes[members] * weights[:, None]).sum(axis=0) / weights.sum()


def select_crops(boxes: np.ndarray, scores: np.ndarray, k: int, width: int, height: int,
                 ratio: tuple[int, int] | None, refine: bool = True, diversity: float = DIVERSITY_IOU,
                 priority: np.ndarray | None = None, rounds: np.ndarray | None = None,
                 accept: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` crops written for one ratio's candidates -> (int64 [K] candidate indices, int64 [K, 4] crops).

    boxes [N, 4] / scores [N]: the candidates (pixels of the photo); ratio: their exact ``(a, b)``, None when
    free. The walk of :func:`select_diverse` (by ``priority``, then score; ``rounds``; thresholds
    ``diversity`` then 0.8, 0.9, 0.95), except that what must stay ``diversity`` apart are the *crops*: a
    candidate's crop is its view refined as :func:`refine_boxes` refines the views chosen so far plus this
    one, snapped to whole pixels and the exact ratio inside the photo (its snapped view when ``refine`` is off
    or ``accept(refined, view)`` says no: the face rule, :func:`autocrop.faces.rules.no_worse`). So
    refinement can never make two written crops near-duplicates, and crop k depends only on crops 1..k-1:
    asking for more crops never changes the first ones.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    spread = float(scores.std()) if scores.size else 0.0
    scale = float(np.abs(scores).max()) if scores.size else 0.0
    refine = refine and spread > 1e-9 * max(1.0, scale)  # equal scores up to rounding: nothing to refine
    overlap = box_iou(boxes, boxes) if refine else np.zeros((0, 0))
    rows = boxes.tolist()  # Python floats: snapping one box with numpy costs ~10x more (a walk snaps ~50)
    chosen: list[int] = []
    kept: list[tuple[int, int, int, int]] = []
    kept_floats: list[tuple[float, float, float, float, float]] = []  # x1 y1 x2 y2 area, for max_iou_values
    cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    earlier: dict[int, np.ndarray | None] = {0: None}  # per number of chosen views: their largest IoU [N]

    def crop_of(i: int) -> tuple[int, int, int, int]:
        key = (i, len(chosen))  # a crop depends on the views chosen before it, which only grow
        if key not in cache:
            x1, y1, x2, y2 = rows[i]
            view = crop = snap_values(x1, y1, x2, y2, width, height, ratio)
            if refine:
                if len(chosen) not in earlier:
                    earlier[len(chosen)] = overlap[chosen].max(axis=0)
                refined = _refined_view(boxes, scores, i, overlap[i], earlier[len(chosen)],
                                        REFINE_TEMPERATURE * spread, REFINE_MIN_IOU)
                x1, y1, x2, y2 = refined.tolist()
                crop = snap_values(x1, y1, x2, y2, width, height, ratio)
                if accept is not None and not accept(np.array(crop, np.int64), np.array(view, np.int64)):
                    crop = view
            cache[key] = crop
        return cache[key]

    def fits(i: int, threshold: float) -> bool:
        return not kept or max_iou_values(crop_of(i), kept_floats) <= threshold

    for i in _walk(_passes(scores, k, priority, rounds), k, diversity, fits):
        crop = crop_of(i)
        x1, y1, x2, y2 = (float(v) for v in crop)
        kept.append(crop)
        kept_floats.append((x1, y1, x2, y2, (x2 - x1) * (y2 - y1)))
        chosen.append(i)
    return np.asarray(chosen, dtype=np.int64), np.asarray(kept, dtype=np.int64).reshape(-1, 4)
