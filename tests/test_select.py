"""Choosing crops (autocrop.select): diverse top-k in the order of choice, refinement, the written crops.

The central property (issue 12, item 1): asking for more crops never changes the first ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from autocrop.candidates import candidate_boxes, ratio_candidates
from autocrop.geometry import box_iou, max_iou, reduce_ratio, snap_box
from autocrop.ratios import parse_ratio
from autocrop.select import (
    REFINE_MIN_IOU,
    REFINE_TEMPERATURE,
    RELAXED_IOU,
    _refined_view,
    refine_boxes,
    select_crops,
    select_diverse,
)

SIZES = [(6000, 4000), (1024, 683), (683, 1024), (801, 799), (4000, 333), (97, 1301)]


def _random_candidates(seed: int, n: int = 60, width: int = 640, height: int = 427) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random free boxes inside a ``width`` x ``height`` photo (many overlapping) and normal scores."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, width * 0.5, n)
    y1 = rng.uniform(0, height * 0.5, n)
    x2 = np.minimum(x1 + rng.uniform(width * 0.15, width * 0.5, n), width)
    y2 = np.minimum(y1 + rng.uniform(height * 0.2, height * 0.5, n), height)
    return np.stack([x1, y1, x2, y2], axis=1), rng.normal(size=n)


# -------------------------------------------------------------------------------------- select_diverse


def test_select_diverse_skips_near_duplicates() -> None:
    boxes = np.array([[0, 0, 100, 100], [1, 1, 101, 101], [2, 0, 102, 100], [300, 0, 400, 100], [0, 300, 100, 400]])
    scores = np.array([0.9, 0.89, 0.88, 0.5, 0.4])
    chosen = select_diverse(boxes, scores, 3, iou_threshold=0.7)
    assert chosen.tolist() == [0, 3, 4]
    iou = box_iou(boxes[chosen], boxes[chosen])
    assert np.all(iou[~np.eye(3, dtype=bool)] <= 0.7)


def test_select_diverse_relaxes_but_never_repeats() -> None:
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 100], [4, 0, 104, 100]], dtype=float)
    scores = np.array([1.0, 0.9, 0.8])
    chosen = select_diverse(boxes, scores, 3)
    # box 1 equals box 0 (IoU 1): never chosen; box 2 (IoU 0.92) joins only after relaxing
    assert chosen.tolist() == [0, 2]
    assert select_diverse(boxes, scores, 0).tolist() == []
    assert select_diverse(np.zeros((0, 4)), np.zeros(0), 3).tolist() == []
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        select_diverse(boxes, scores[:2], 1)


def test_select_diverse_is_best_first() -> None:
    rng = np.random.default_rng(0)
    boxes = ratio_candidates(1024, 683, 1, 1)
    scores = rng.normal(size=len(boxes))
    chosen = select_diverse(boxes, scores, 5)
    assert len(chosen) == 5
    assert chosen[0] == int(np.argmax(scores))
    assert np.all(np.diff(scores[chosen]) <= 0)  # all five pass the first threshold here: descending scores


def test_select_diverse_returns_the_order_of_choice_not_of_score() -> None:
    # B overlaps A with IoU 7500/10000 = 0.75 > 0.7: it is admitted only by the relaxed 0.8 walk, after C
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 75], [300, 0, 400, 100]], dtype=float)
    scores = np.array([1.0, 0.9, 0.1])
    assert box_iou(boxes[0], boxes[1])[0, 0] == pytest.approx(0.75)
    assert select_diverse(boxes, scores, 3).tolist() == [0, 2, 1]
    assert select_diverse(boxes, scores, 2).tolist() == [0, 2]
    assert select_diverse(boxes, scores, 3, iou_threshold=0.8).tolist() == [0, 1, 2]


@pytest.mark.parametrize("threshold", [0.3, 0.7])
@pytest.mark.parametrize("seed", range(12))
def test_select_diverse_top_k_is_a_prefix_of_top_k_plus_one(seed: int, threshold: float) -> None:
    boxes, scores = _random_candidates(seed)
    previous = select_diverse(boxes, scores, 1, iou_threshold=threshold)
    assert previous.tolist() == [int(np.argmax(scores))]
    for k in range(2, 8):
        chosen = select_diverse(boxes, scores, k, iou_threshold=threshold)
        assert len(chosen) == k and len(set(chosen.tolist())) == k
        assert chosen[: k - 1].tolist() == previous.tolist(), (k, previous, chosen)
        previous = chosen


# ------------------------------------------------------------------------------------------- refinement


def test_refine_boxes_hand_worked_weights() -> None:
    # A and B overlap with IoU 80/120 = 0.67 (>= 0.5); C overlaps neither and never takes part.
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], dtype=float)
    scores = np.array([2.0, 1.0, 0.0])
    spread = np.std(scores)  # 0.8165
    w_b = np.exp((1.0 - 2.0) / (0.25 * spread))  # 0.00745
    expected = (boxes[0] + w_b * boxes[1]) / (1 + w_b)
    np.testing.assert_allclose(refine_boxes(boxes, scores, np.array([0]), temperature=0.25), [expected])
    # equal scores for A and B: the plain mean of the two
    np.testing.assert_allclose(refine_boxes(boxes, np.array([1.0, 1.0, 0.0]), np.array([0])), [[1, 0, 11, 10]])


def test_refine_boxes_two_boxes_by_hand() -> None:
    # A = [0 0 100 100] (score 1), B = A shifted 10 px right (score 0): IoU 90/110 = 0.82, std(scores) = 0.5.
    boxes = np.array([[0, 0, 100, 100], [10, 0, 110, 100]], dtype=float)
    scores = np.array([1.0, 0.0])
    # temperature 1: weight of B = exp((0 - 1) / (1 * 0.5)) = exp(-2); x shift = 10 * e^-2 / (1 + e^-2) = 1.19203
    np.testing.assert_allclose(refine_boxes(boxes, scores, np.array([0]), temperature=1.0),
                               [[1.1920292202, 0, 101.1920292202, 100]], rtol=0, atol=1e-9)
    # the default temperature 0.25: weight exp(-8), shift 10 * e^-8 / (1 + e^-8) = 0.0033535
    np.testing.assert_allclose(refine_boxes(boxes, scores, np.array([0])),
                               [[0.0033535013, 0, 100.0033535013, 100]], rtol=0, atol=1e-9)
    # refining B (the worse one): A weighs exp(+2) against B's 1 -> x1 = 10 / (1 + e^2) = 1.19203
    np.testing.assert_allclose(refine_boxes(boxes, scores, np.array([1]), temperature=1.0),
                               [[10 / (1 + math.e**2), 0, 100 + 10 / (1 + math.e**2), 100]], rtol=0, atol=1e-9)
    # min_iou above their IoU: B does not take part, A stays where it is
    np.testing.assert_array_equal(refine_boxes(boxes, scores, np.array([0]), min_iou=0.9), boxes[[0]])


def test_refine_boxes_without_spread_or_temperature_keeps_the_chosen_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=float)
    np.testing.assert_array_equal(refine_boxes(boxes, np.array([1.0, 0.5]), np.array([1]), temperature=0), boxes[[1]])
    np.testing.assert_array_equal(refine_boxes(boxes, np.array([1.0, 0.5]), np.array([0]), temperature=-1),
                                  boxes[[0]])
    np.testing.assert_array_equal(refine_boxes(boxes, np.array([1.0, 1.0]), np.array([0])), boxes[[0]])
    assert refine_boxes(boxes, np.array([1.0, 0.5]), np.zeros(0, dtype=int)).shape == (0, 4)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        refine_boxes(boxes, np.array([1.0]), np.array([0]))


@pytest.mark.parametrize("seed", range(4))
def test_equal_scores_or_zero_temperature_leave_the_crops_at_the_views(seed: int) -> None:
    boxes, scores = _random_candidates(seed)
    chosen = select_diverse(boxes, scores, 4)
    views = np.array([snap_box(b, 640, 427) for b in boxes[chosen]])
    np.testing.assert_array_equal(refine_boxes(boxes, np.full(len(boxes), 0.3), chosen), boxes[chosen])
    np.testing.assert_array_equal(refine_boxes(boxes, scores, chosen, temperature=0.0), boxes[chosen])
    flat, crops = select_crops(boxes, np.full(len(boxes), 0.3), 4, 640, 427, None)
    np.testing.assert_array_equal(crops, [snap_box(b, 640, 427) for b in boxes[flat]])
    unrefined, crops = select_crops(boxes, scores, 4, 640, 427, None, refine=False)
    np.testing.assert_array_equal(unrefined, chosen)  # the plain walk on (snapped) views
    np.testing.assert_array_equal(crops, views)


def test_refine_boxes_neighbours_help_the_view_they_overlap_most_among_earlier_views() -> None:
    # box 1 overlaps box 0 with IoU 70/130 = 0.54 and box 2 with 90/110 = 0.82; box 2 overlaps box 0 by 0.43
    # (< 0.5). Box 3, far away and poorly scored, gives the scores their spread.
    boxes = np.array([[0, 0, 100, 100], [30, 0, 130, 100], [40, 0, 140, 100], [500, 500, 600, 600]], dtype=float)
    scores = np.array([1.0, 1.0, 1.0, -5.0])
    # chosen 0 then 2: when view 0 is refined no later view exists, so box 1 helps it; box 1 helps view 2 too
    # (it overlaps view 2 more than the earlier view 0)
    refined = refine_boxes(boxes, scores, np.array([0, 2]))
    np.testing.assert_allclose(refined, [(boxes[0] + boxes[1]) / 2, (boxes[1] + boxes[2]) / 2])
    np.testing.assert_allclose(refined[:1], refine_boxes(boxes, scores, np.array([0])))  # prefix-stable
    # chosen 2 then 0: box 1 overlaps the earlier view 2 more than view 0, so it does not help view 0
    refined = refine_boxes(boxes, scores, np.array([2, 0]))
    np.testing.assert_allclose(refined, [(boxes[1] + boxes[2]) / 2, boxes[0]])


def test_refine_boxes_with_equal_scores_that_are_not_exact_binary_fractions() -> None:
    # np.std([0.7, 0.7, 0.7]) is 1.1e-16, not 0: still "all scores equal", so the boxes must not move
    boxes = np.array([[0, 0, 100, 100], [10, 0, 110, 100], [20, 0, 120, 100]], dtype=float)
    for value in (0.7, 0.3, 0.1):
        scores = np.full(3, value)
        np.testing.assert_array_equal(refine_boxes(boxes, scores, np.array([0])), boxes[[0]], err_msg=str(value))


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("rw,rh", [(16, 9), (1, 1), (4, 5), (191, 100)])
def test_refined_ratio_crops_snap_to_the_exact_ratio_inside(width: int, height: int, rw: int, rh: int) -> None:
    boxes = ratio_candidates(width, height, rw, rh)
    if len(boxes) == 0:
        pytest.skip("no crop of this ratio fits")
    scores = np.random.default_rng(width + rw).normal(size=len(boxes))
    chosen = select_diverse(boxes, scores, 3)
    a, b = reduce_ratio(rw, rh)
    for box in refine_boxes(boxes, scores, chosen):
        x1, y1, x2, y2 = snap_box(box, width, height, (rw, rh)).tolist()
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (x2 - x1) * b == (y2 - y1) * a and (x2 - x1) % a == 0
    # an unrefined candidate snaps to itself
    for box in boxes[chosen]:
        np.testing.assert_array_equal(snap_box(box, width, height, (rw, rh)), box.astype(np.int64))


# ------------------------------------------------------------------------------------------ select_crops


@pytest.mark.parametrize("seed", range(12))
def test_select_crops_are_prefix_stable_for_free_crops(seed: int) -> None:
    boxes, scores = _random_candidates(seed)
    previous = None
    for k in range(1, 7):
        _, crops = select_crops(boxes, scores, k, 640, 427, None, refine=True)
        assert crops.shape == (k, 4)
        if previous is not None:
            np.testing.assert_array_equal(crops[: k - 1], previous, err_msg=f"top-{k} changed the first crops")
        previous = crops


@pytest.mark.parametrize("ratio", ["16:9", "1:1", "4:5", "3:2", "original"])
@pytest.mark.parametrize("seed", range(3))
def test_select_crops_are_prefix_stable_for_exact_ratios(ratio: str, seed: int) -> None:
    spec = parse_ratio(ratio)
    boxes, _ = candidate_boxes(640, 427, (spec,))
    scores = np.random.default_rng(seed).normal(size=len(boxes))
    exact = spec.resolve(640, 427)
    previous = None
    for k in range(1, 6):
        _, crops = select_crops(boxes, scores, k, 640, 427, exact, refine=True)
        if previous is not None:
            np.testing.assert_array_equal(crops[: k - 1], previous, err_msg=f"{ratio}: top-{k} changed the first crops")
        previous = crops


def test_select_crops_top1_is_the_best_view_refined() -> None:
    """Crop 1 is the best candidate refined by every neighbour (no earlier crop owns any), as always."""
    boxes, scores = _random_candidates(5)
    best = int(np.argmax(scores))
    chosen, crops = select_crops(boxes, scores, 3, 640, 427, None)
    assert chosen[0] == best
    np.testing.assert_array_equal(crops[0], snap_box(refine_boxes(boxes, scores, np.array([best]))[0], 640, 427))


@pytest.mark.parametrize("width,height", [(640, 427), (427, 640), (1024, 683), (801, 799), (4000, 333), (97, 1301)])
@pytest.mark.parametrize("ratio", ["16:9", "1:1", "4:5", "9:16", "191:100", "original"])
def test_select_crops_keep_the_exact_ratio_inside_the_photo(width: int, height: int, ratio: str) -> None:
    spec = parse_ratio(ratio)
    exact = spec.resolve(width, height)
    a, b = reduce_ratio(*exact)
    if min(width // a, height // b) < 1:
        pytest.skip("no crop of this ratio fits")
    boxes, _ = candidate_boxes(width, height, (spec,))
    scores = np.random.default_rng(width * 3 + height).normal(size=len(boxes))
    chosen, crops = select_crops(boxes, scores, 5, width, height, exact)
    assert crops.dtype == np.int64 and crops.shape == (len(chosen), 4)
    w, h = crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]
    assert np.all(w * b == h * a) and np.all(w % a == 0) and np.all(w > 0)
    assert np.all(crops[:, :2] >= 0) and np.all(crops[:, 2] <= width) and np.all(crops[:, 3] <= height)


@pytest.mark.parametrize("ratio", ["random", "free", "16:9", "1:1"])
@pytest.mark.parametrize("seed", range(4))
def test_written_crops_keep_the_diversity_limit(ratio: str, seed: int) -> None:
    """The crops themselves (refined, snapped) overlap by at most ``diversity`` whenever enough distinct crops
    exist: refinement can no longer move an earlier crop onto a later one (the grid model's top-3 used to)."""
    if ratio == "random":
        boxes, scores = _random_candidates(seed)
        exact = None
    else:
        spec = parse_ratio(ratio)
        boxes, _ = candidate_boxes(640, 427, (spec,))
        scores = np.random.default_rng(seed).normal(size=len(boxes))
        exact = spec.resolve(640, 427)
    for diversity in (0.5, 0.7):
        _, crops = select_crops(boxes, scores, 6, 640, 427, exact, refine=True, diversity=diversity)
        assert np.all(crops[:, :2] >= 0) and np.all(crops[:, 2] <= 640) and np.all(crops[:, 3] <= 427)
        worst = [float(box_iou(crops[k], crops[:k]).max()) for k in range(1, len(crops))]
        assert max(worst, default=0.0) <= 0.95 + 1e-12, worst  # the loosest threshold
        if diversity == 0.7:  # the default limit: the grid has enough distinct crops for the first three
            first = [float(box_iou(crops[k], crops[:k]).max()) for k in range(1, 3)]
            assert max(first) <= diversity + 1e-12, f"the first 3 crops overlap by {first}"


def test_select_crops_strict_limit_when_candidates_are_plenty() -> None:
    """On the real 16:9 grid of a photo, the top-3 crops are all at most 0.7 apart after refinement."""
    boxes, _ = candidate_boxes(1024, 683, (parse_ratio("free"),))
    for seed in range(10):
        scores = np.random.default_rng(seed).normal(size=len(boxes))
        _, crops = select_crops(boxes, scores, 3, 1024, 683, None)
        assert box_iou(crops, crops)[np.triu_indices(3, 1)].max() <= 0.7 + 1e-12, seed


def test_select_crops_without_refinement_are_the_snapped_views() -> None:
    boxes, _ = candidate_boxes(640, 427, (parse_ratio("16:9"),))
    scores = np.random.default_rng(1).normal(size=len(boxes))
    chosen, crops = select_crops(boxes, scores, 3, 640, 427, (16, 9), refine=False)
    np.testing.assert_array_equal(chosen, select_diverse(boxes, scores, 3))
    np.testing.assert_array_equal(crops, boxes[chosen])
    chosen, crops = select_crops(boxes, scores, 0, 640, 427, (16, 9))
    assert chosen.shape == (0,) and crops.shape == (0, 4)


# ------------------------------------------------------------- select_crops against its first, plain form


def _plain_select_crops(boxes: np.ndarray, scores: np.ndarray, k: int, width: int, height: int,
                        ratio: tuple[int, int] | None, refine: bool = True, diversity: float = 0.7,
                        priority: np.ndarray | None = None, rounds: np.ndarray | None = None,
                        accept: Callable[[np.ndarray, np.ndarray], bool] | None = None,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """select_crops as first written: each crop tried is refined by _refined_view, snapped by snap_box and
    compared by max_iou, one at a time (slow: ~80 us a crop; the benchmark figures were made with it)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    spread = float(scores.std()) if scores.size else 0.0
    refine = refine and spread > 1e-9 * max(1.0, float(np.abs(scores).max()) if scores.size else 0.0)
    overlap = box_iou(boxes, boxes)
    if priority is None:
        order = np.argsort(-scores, kind="stable")
    else:
        order = np.lexsort((-scores, priority))
    stage = np.zeros(len(scores), dtype=np.int64) if rounds is None else np.asarray(rounds)
    chosen: list[int] = []
    crops: list[np.ndarray] = []

    def crop_of(i: int) -> np.ndarray:
        if not refine:
            return snap_box(boxes[i], width, height, ratio)
        earlier = overlap[chosen].max(axis=0) if chosen else None
        refined = _refined_view(boxes, scores, i, overlap[i], earlier, REFINE_TEMPERATURE * spread, REFINE_MIN_IOU)
        crop, view = snap_box(refined, width, height, ratio), snap_box(boxes[i], width, height, ratio)
        return crop if accept is None or accept(crop, view) else view

    for current in sorted(set(stage.tolist())):
        for threshold in (diversity, *[t for t in RELAXED_IOU if t > diversity]):
            for i in order[stage[order] == current].tolist():
                if len(chosen) < k and i not in chosen:
                    crop = crop_of(i)
                    if not crops or max_iou(crop, np.asarray(crops)) <= threshold:
                        chosen.append(i)
                        crops.append(crop)
    return np.asarray(chosen, dtype=np.int64), np.asarray(crops, dtype=np.int64).reshape(-1, 4)


@pytest.mark.parametrize("seed", range(16))
def test_select_crops_equal_their_plain_form(seed: int) -> None:
    """The cached select_crops (Python-float snapping and IoU) gives exactly the crops of the plain one: on a
    photo's candidates with smooth scores (long walks through near-duplicates), random boxes, tied scores, the
    face rule's priority, rounds and a refusing accept."""
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(200, 6001, 2))
    spec = parse_ratio(["free", "16:9", "1:1", "4:5", "3:2", "original"][seed % 6])
    if seed % 4 == 3:
        boxes, _ = _random_candidates(seed, n=80, width=width, height=height)
        ratio = None
    else:
        boxes = candidate_boxes(width, height, (spec,))[0].astype(np.float64)
        ratio = spec.resolve(width, height)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    scores = -np.hypot(*(centres - rng.uniform(0, 1, 2) * [width, height]).T) / max(width, height)
    scores += rng.normal(0, [0.0, 0.003, 0.02, 0.2][seed % 4], len(boxes))
    if seed % 5 == 4:
        scores = np.round(scores, 1)  # many ties
    kwargs: dict = {}
    if seed % 3 == 1:
        kwargs = {"priority": rng.integers(0, 3, len(boxes)), "rounds": rng.integers(0, 2, len(boxes)),
                  "accept": lambda crop, view: int(crop.sum() + seed) % 3 != 0}
    for k, diversity in ((3, 0.7), (6, 0.5)):
        chosen, crops = select_crops(boxes, scores, k, width, height, ratio, diversity=diversity, **kwargs)
        plain = _plain_select_crops(boxes, scores, k, width, height, ratio, diversity=diversity, **kwargs)
        assert chosen.dtype == crops.dtype == np.int64 and crops.shape == (len(chosen), 4)
        np.testing.assert_array_equal(chosen, plain[0])
        np.testing.assert_array_equal(crops, plain[1])
