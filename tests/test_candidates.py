"""Candidate views (autocrop.candidates): GAIC's grid, exact-ratio crops, candidate_boxes; ratio helpers.

Selection and refinement are tested in test_select.py, IoU and snapping in test_geometry.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from autocrop.candidates import candidate_boxes, grid_candidates, ratio_candidates
from autocrop.errors import InputError, UsageError
from autocrop.geometry import reduce_ratio
from autocrop.ratios import RatioSpec, parse_ratio, parse_ratios, simple_ratio

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


# ------------------------------------------------------------------------------------- candidate_boxes


def test_candidate_boxes_groups_follow_the_ratios() -> None:
    ratios = parse_ratios(["16:9", "free", "original"])
    boxes, groups = candidate_boxes(640, 427, ratios)
    assert boxes.dtype == np.int64 and groups.dtype == np.int64
    assert boxes.shape == (groups.size, 4)
    assert sorted(set(groups.tolist())) == [0, 1, 2] and np.all(np.diff(groups) >= 0)  # ratio by ratio, in order
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 640) and np.all(boxes[:, 3] <= 427)
    assert np.all((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all(w[groups == 0] * 9 == h[groups == 0] * 16)
    assert np.all(w[groups == 2] * 2 == h[groups == 2] * 3)  # "original" of 640x427 is 3:2
    np.testing.assert_array_equal(boxes[groups == 0], ratio_candidates(640, 427, 16, 9).astype(np.int64))
    free = boxes[groups == 1]
    np.testing.assert_array_equal(free, np.unique(np.round(grid_candidates(640, 427)).astype(np.int64), axis=0))
    assert [0, 0, 640, 427] in free.tolist()


def test_candidate_boxes_too_small_names_the_label_and_ratio() -> None:
    with pytest.raises(InputError) as err:
        candidate_boxes(10, 10, (RatioSpec("fixed", 16, 9),), label="tiny.png")
    assert str(err.value) == "tiny.png: 10x10 px is too small for ratio 16:9 (needs at least 16x9 px)"


@pytest.mark.parametrize("text,start", [("16:0", "ratio 16:0: "), ("-1:2", "ratio -1:2: "), ("abc", "ratio 'abc': "),
                                        ("100:1", "ratio 100:1: ")])
def test_parse_ratio_errors_name_the_parameter(text: str, start: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_ratio(text)
    assert str(err.value).startswith(start) and "--" not in str(err.value)


def test_parse_ratio_forms() -> None:
    assert parse_ratio("32:18") == parse_ratio("16x9") == parse_ratio("16/9") == RatioSpec("fixed", 16, 9)
    assert parse_ratio("1.91:1") == RatioSpec("fixed", 191, 100)
    assert parse_ratio("Original").kind == "original" and parse_ratio("free").kind == "free"
    assert parse_ratios(["16:9,1:1", "16:9"]) == (RatioSpec("fixed", 16, 9), RatioSpec("fixed", 1, 1))
    assert parse_ratios(None) == (RatioSpec("free"),)
