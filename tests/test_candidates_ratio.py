"""Ratio-constrained candidates, ratio helpers, diversity-aware top-k and refinement (autocrop.candidates)."""

from __future__ import annotations

import numpy as np
import pytest

from autocrop.candidates import (
    box_iou,
    grid_candidates,
    ratio_candidates,
    reduce_ratio,
    refine_boxes,
    select_diverse,
    simple_ratio,
    snap_box,
)

SIZES = [(6000, 4000), (1024, 683), (683, 1024), (801, 799), (4000, 333), (97, 1301)]
RATIOS = [(16, 9), (1, 1), (4, 5), (3, 2), (9, 16), (191, 100), (21, 9)]


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("rw,rh", RATIOS)
def test_ratio_candidates_exact_integer_ratio_inside_image(width: int, height: int, rw: int, rh: int) -> None:
    boxes = ratio_candidates(width, height, rw, rh)
    a, b = reduce_ratio(rw, rh)
    if min(width // a, height // b) < 1:
        assert boxes.shape == (0, 4)
        return
    assert boxes.shape[0] >= 1
    assert np.all(boxes == np.round(boxes)), "corners must be whole pixels"
    w = (boxes[:, 2] - boxes[:, 0]).astype(np.int64)
    h = (boxes[:, 3] - boxes[:, 1]).astype(np.int64)
    assert np.all(w * rh == h * rw), "every crop has exactly the asked ratio"
    assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0
    assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_ratio_candidates_sizes_span_half_to_full_of_largest_crop() -> None:
    boxes = ratio_candidates(6000, 4000, 16, 9)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = 6000 * 3375  # 16:9 across the full width
    assert areas.max() == largest
    assert 0.49 <= areas.min() / largest <= 0.55
    # several sizes, and a fine grid of positions at the smallest size
    widths = np.unique(boxes[:, 2] - boxes[:, 0])
    assert len(widths) >= 6
    smallest = boxes[(boxes[:, 2] - boxes[:, 0]) == widths.min()]
    assert len(np.unique(smallest[:, 0])) >= 7 and len(np.unique(smallest[:, 1])) >= 7
    # the centred crop of each size is a candidate
    for w in widths:
        h = w * 9 // 16
        centred = [(6000 - w) // 2, (4000 - h) // 2]
        same = boxes[(boxes[:, 2] - boxes[:, 0]) == w]
        assert np.min(np.abs(same[:, :2] - centred).sum(axis=1)) <= 1


def test_ratio_candidates_too_small_image_is_empty() -> None:
    assert ratio_candidates(10, 3, 1, 5).shape == (0, 4)
    assert ratio_candidates(100, 1, 16, 9).shape == (0, 4)
    one = ratio_candidates(16, 9, 16, 9)
    assert one.tolist() == [[0, 0, 16, 9]]


def test_reduce_and_simple_ratio() -> None:
    assert reduce_ratio(32, 18) == (16, 9)
    assert reduce_ratio(3, 2) == (3, 2)
    with pytest.raises(ValueError):
        reduce_ratio(16, 0)
    assert simple_ratio(1024, 683) == (3, 2)
    assert simple_ratio(4000, 3000) == (4, 3)
    assert simple_ratio(1920, 1080) == (16, 9)
    # the simplest ratio within 0.5 %; none with terms <= 64: the exact (reduced) ratio
    assert simple_ratio(1009, 331) == (49, 16)  # 0.47 % off
    assert simple_ratio(6500, 97) == (6500, 97)


def test_grid_candidates_unchanged() -> None:
    boxes = grid_candidates(1200, 1200)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all(w * h >= 0.5 * 1200 * 1200 - 1e-3)
    assert np.all((w / h >= 0.5) & (w / h <= 2.0))
    assert [0, 0, 1200, 1200] in boxes.tolist()
    assert boxes[:, :2].max() <= 400 and boxes[:, 2:].min() >= 800


def test_box_iou_hand_worked() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


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


def test_select_diverse_is_best_first() -> None:
    rng = np.random.default_rng(0)
    boxes = ratio_candidates(1024, 683, 1, 1)
    scores = rng.normal(size=len(boxes))
    chosen = select_diverse(boxes, scores, 5)
    assert len(chosen) == 5
    assert chosen[0] == int(np.argmax(scores))
    assert np.all(np.diff(scores[chosen]) <= 0)


# ---------------------------------------------------------------------------------------- refinement


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


def test_refine_boxes_without_spread_or_temperature_keeps_the_chosen_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=float)
    np.testing.assert_array_equal(refine_boxes(boxes, np.array([1.0, 0.5]), np.array([1]), temperature=0), boxes[[1]])
    np.testing.assert_array_equal(refine_boxes(boxes, np.array([1.0, 1.0]), np.array([0])), boxes[[0]])
    assert refine_boxes(boxes, np.array([1.0, 0.5]), np.zeros(0, dtype=int)).shape == (0, 4)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        refine_boxes(boxes, np.array([1.0]), np.array([0]))


def test_refine_boxes_neighbours_belong_to_the_chosen_view_they_overlap_most() -> None:
    # chosen 0 and 2; box 1 overlaps box 2 (IoU 0.82) more than box 0 (0.54): it refines box 2 only
    # (box 3, far away and poorly scored, gives the scores their spread)
    boxes = np.array([[0, 0, 100, 100], [30, 0, 130, 100], [40, 0, 140, 100], [500, 500, 600, 600]], dtype=float)
    scores = np.array([1.0, 1.0, 1.0, -5.0])
    refined = refine_boxes(boxes, scores, np.array([0, 2]))
    np.testing.assert_allclose(refined[0], boxes[0])
    np.testing.assert_allclose(refined[1], (boxes[1] + boxes[2]) / 2)


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("rw,rh", [(16, 9), (1, 1), (4, 5), (191, 100)])
def test_refined_ratio_crops_snap_to_the_exact_ratio_inside_the_photo(width: int, height: int, rw: int, rh: int) -> None:
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


def test_snap_box_free_rounds_and_clips_into_the_photo() -> None:
    assert snap_box(np.array([-3.2, 10.4, 99.6, 50.5]), 90, 60).tolist() == [0, 10, 90, 50]
    assert snap_box(np.array([95.0, 70.0, 99.0, 80.0]), 90, 60).tolist() == [89, 59, 90, 60]
    # a ratio crop larger than the photo shrinks to the largest that fits, then is shifted inside
    assert snap_box(np.array([0.0, 0.0, 200.0, 200.0]), 90, 60, (1, 1)).tolist() == [30, 0, 90, 60]
