"""Box geometry (autocrop.geometry): IoU by hand, snapping to whole pixels and exact ratios, box validation."""

from __future__ import annotations

import numpy as np
import pytest

from autocrop.errors import UsageError
from autocrop.geometry import (
    box_iou,
    clip_boxes,
    max_iou,
    reduce_ratio,
    snap_box,
    snap_values,
    unique_rows,
    unique_values,
)

# ---------------------------------------------------------------------------------------------- IoU


def test_box_iou_hand_worked() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


@pytest.mark.parametrize("a,b,expected", [
    ([0, 0, 10, 10], [20, 0, 30, 10], 0.0),          # disjoint
    ([0, 0, 10, 10], [2, 3, 6, 8], 20 / 100),         # nested: 4x5 inside 10x10
    ([2, 3, 6, 8], [0, 0, 10, 10], 20 / 100),         # nested, the other way round
    ([1.5, 2.5, 7.5, 9.0], [1.5, 2.5, 7.5, 9.0], 1.0),  # identical (non-integer)
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),         # touching along an edge
    ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),        # touching at a corner
    ([0, 0, 10, 10], [5, 5, 5, 9], 0.0),            # zero-area box inside a box
    ([5, 5, 5, 9], [5, 5, 5, 9], 0.0),              # zero-area with itself: empty union -> 0, not NaN
    ([0, 0, 4, 2], [2, 1, 6, 3], 2 / 14),            # partial overlap: 2x1 of 8 + 8 - 2
])
def test_box_iou_cases(a: list[float], b: list[float], expected: float) -> None:
    got = box_iou(np.array(a, dtype=float), np.array(b, dtype=float))
    assert got.shape == (1, 1) and got.dtype == np.float64
    assert np.isfinite(got).all()
    assert got[0, 0] == pytest.approx(expected, abs=1e-12)
    assert box_iou(np.array(b, dtype=float), np.array(a, dtype=float))[0, 0] == pytest.approx(expected, abs=1e-12)


def test_box_iou_shape_and_pairs() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 50, size=(7, 2))
    a = np.concatenate([xy[:3], xy[:3] + rng.uniform(1, 30, size=(3, 2))], axis=1)
    b = np.concatenate([xy[2:], xy[2:] + rng.uniform(1, 30, size=(5, 2))], axis=1)
    iou = box_iou(a, b)
    assert iou.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            union = np.prod(a[i, 2:] - a[i, :2]) + np.prod(b[j, 2:] - b[j, :2]) - inter
            assert iou[i, j] == pytest.approx(inter / union, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(box_iou(b, a), iou.T)
    assert box_iou(a, np.zeros((0, 4))).shape == (3, 0)


def test_max_iou() -> None:
    box = np.array([0, 0, 10, 10])
    assert max_iou(box, np.zeros((0, 4))) == 0.0
    assert max_iou(box, np.array([[5, 0, 15, 10], [0, 0, 5, 5], [50, 50, 60, 60]])) == pytest.approx(50 / 150)


def test_reduce_ratio() -> None:
    assert reduce_ratio(32, 18) == (16, 9) and reduce_ratio(191, 100) == (191, 100) and reduce_ratio(4, 4) == (1, 1)
    for bad in ((0, 1), (1, 0), (-16, 9)):
        with pytest.raises(ValueError):
            reduce_ratio(*bad)


# -------------------------------------------------------------------------------------------- snapping


def test_snap_box_free_rounds_and_clips_into_the_photo() -> None:
    assert snap_box(np.array([-3.2, 10.4, 99.6, 50.5]), 90, 60).tolist() == [0, 10, 90, 50]
    assert snap_box(np.array([95.0, 70.0, 99.0, 80.0]), 90, 60).tolist() == [89, 59, 90, 60]
    # a ratio crop larger than the photo shrinks to the largest that fits, then is shifted inside
    assert snap_box(np.array([0.0, 0.0, 200.0, 200.0]), 90, 60, (1, 1)).tolist() == [30, 0, 90, 60]


def test_snap_box_hand_worked_ratio() -> None:
    # 16:9, box 170.4 x 90.2 centred at (110.2, 60.1): k = round((170.4/16 + 90.2/9) / 2) = round(10.34) = 10
    box = np.array([25.0, 15.0, 195.4, 105.2])
    assert snap_box(box, 640, 427, (16, 9)).tolist() == [30, 15, 190, 105]
    assert snap_box(box, 640, 427, (32, 18)).tolist() == [30, 15, 190, 105]  # the ratio is reduced first
    assert snap_box(box, 640, 427, (16, 9)).dtype == np.int64


@pytest.mark.parametrize("width,height", [(640, 427), (427, 640), (97, 1301), (4000, 333), (17, 17)])
@pytest.mark.parametrize("ratio", [(16, 9), (1, 1), (4, 5), (191, 100), (9, 16)])
def test_snap_box_exact_ratio_inside_the_photo(width: int, height: int, ratio: tuple[int, int]) -> None:
    a, b = reduce_ratio(*ratio)
    rng = np.random.default_rng(width * 7 + ratio[0])
    corners = rng.uniform(-0.3, 1.3, size=(200, 2, 2)) * [width, height]
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1) + 1], axis=1)
    fits = min(width // a, height // b) >= 1
    for box in boxes:
        x1, y1, x2, y2 = snap_box(box, width, height, ratio).tolist()
        assert 0 <= x1 < x2 and 0 <= y1 < y2
        w, h = x2 - x1, y2 - y1
        assert w * b == h * a and w % a == 0, (box, (x1, y1, x2, y2))
        if fits:
            assert x2 <= width and y2 <= height, (box, (x1, y1, x2, y2))
        free = snap_box(box, width, height).tolist()
        assert 0 <= free[0] < free[2] <= width and 0 <= free[1] < free[3] <= height


def test_snap_box_keeps_an_exact_candidate() -> None:
    box = np.array([64.0, 40.0, 384.0, 220.0])  # 320 x 180 = 20 x (16:9)
    assert snap_box(box, 640, 427, (16, 9)).tolist() == [64, 40, 384, 220]
    assert snap_box(box, 640, 427).tolist() == [64, 40, 384, 220]


def _snap_reference(box: np.ndarray, width: int, height: int, ratio: tuple[int, int] | None) -> list[int]:
    """snap_box written again with numpy (np.rint rounds half to even, as round does; np.clip lets the upper
    bound win, as snap_box does): an independent reference."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    if ratio is None:
        left, top = np.clip(np.rint(x1), 0, width - 1), np.clip(np.rint(y1), 0, height - 1)
        return [int(left), int(top), int(np.clip(np.rint(x2), left + 1, width)),
                int(np.clip(np.rint(y2), top + 1, height))]
    a, b = reduce_ratio(*ratio)
    k = np.clip(np.rint(((x2 - x1) / a + (y2 - y1) / b) / 2), 1, max(1, min(width // a, height // b)))
    w, h = k * a, k * b
    left = np.clip(np.rint((x1 + x2 - w) / 2), 0, max(0, width - w))
    top = np.clip(np.rint((y1 + y2 - h) / 2), 0, max(0, height - h))
    return [int(left), int(top), int(left + w), int(top + h)]


@pytest.mark.parametrize("seed", range(4))
def test_snap_values_is_snap_box_without_numpy(seed: int) -> None:
    """snap_values (the loops' snap_box) gives snap_box's pixels, and both the numpy reference's, on boxes with
    half-pixel ties, boxes reaching outside the photo and boxes upside down."""
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(1, 6001, 2))
    corners = np.round(rng.uniform(-0.2, 1.2, size=(200, 4)) * [width, height, width, height] * 4) / 4  # .25 px
    corners[:70] = np.round(corners[:70]) + 0.5  # every coordinate a tie
    for ratio in (None, (16, 9), (1, 1), (4, 5), (32, 18), (191, 100)):
        for box in corners:
            expected = _snap_reference(box, width, height, ratio)
            assert snap_values(*box.tolist(), width, height, ratio) == tuple(expected), (box, ratio)
            assert snap_box(box, width, height, ratio).tolist() == expected, (box, ratio)


def test_snap_values_raises_like_round_on_values_that_are_not_finite() -> None:
    for bad, error in ((np.nan, ValueError), (np.inf, OverflowError)):
        with pytest.raises(error):
            snap_values(0.0, 0.0, bad, 10.0, 100, 80)
        with pytest.raises(error):
            snap_box(np.array([0.0, 0.0, bad, 10.0]), 100, 80, (16, 9))


# ---------------------------------------------------------------------------------------------- clip_boxes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_boxes_rejects_non_finite(bad: float) -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, bad, 8.0]])
    with pytest.raises(UsageError, match=r"^boxes for a\.jpg: contain NaN or infinite values$"):
        clip_boxes(boxes, 100, 80, "boxes for a.jpg")


@pytest.mark.parametrize("box", [[-1.01, 0, 10, 10], [0, -2, 10, 10], [0, 0, 101.5, 10], [0, 0, 10, 81.01]])
def test_clip_boxes_rejects_boxes_more_than_one_pixel_outside(box: list[float]) -> None:
    boxes = np.array([[0.0, 0.0, 100.0, 80.0], box], dtype=np.float64)
    with pytest.raises(UsageError) as err:
        clip_boxes(boxes, 100, 80)
    message = str(err.value)
    assert message.startswith("boxes: box 1 ") and "outside the 100x80 photo" in message and "\n" not in message


@pytest.mark.parametrize("box", [[5, 5, 5, 9], [5, 9, 8, 9], [8, 5, 5, 9], [100.5, 0, 101, 10]])
def test_clip_boxes_rejects_empty_boxes(box: list[float]) -> None:
    with pytest.raises(UsageError, match=r"^boxes: box 0 .* is empty"):
        clip_boxes(np.array([box], dtype=np.float64), 100, 80)


def test_clip_boxes_clips_a_one_pixel_overshoot() -> None:
    boxes = np.array([[-1.0, -0.5, 101.0, 81.0], [10.0, 20.0, 30.0, 40.0]])
    original = boxes.copy()
    clipped = clip_boxes(boxes, 100, 80)
    np.testing.assert_array_equal(clipped, [[0, 0, 100, 80], [10, 20, 30, 40]])
    assert clipped.dtype == np.float64
    np.testing.assert_array_equal(boxes, original)  # a copy: the caller's array is untouched


@pytest.mark.parametrize("seed", range(5))
def test_unique_rows_and_values_equal_numpy(seed: int) -> None:
    """The start-up-friendly helpers give exactly what np.unique gives (rows sorted, column 0 first)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 4, size=(60, 4)).astype(np.float64)
    assert np.array_equal(unique_rows(rows), np.unique(rows, axis=0))
    assert unique_rows(rows).dtype == rows.dtype
    assert unique_rows(np.zeros((0, 4), np.int64)).shape == (0, 4)
    values = rng.integers(-3, 3, size=40)
    assert np.array_equal(unique_values(values), np.unique(values))
    assert unique_values(np.zeros(0)).shape == (0,)



def test_max_iou_values_is_max_iou_bit_for_bit() -> None:
    from autocrop.geometry import max_iou, max_iou_values

    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(0, 5))
        corners = rng.integers(0, 300, (n + 1, 2))
        sizes = rng.integers(0, 200, (n + 1, 2))  # zero-area boxes too
        boxes = np.concatenate([corners, corners + sizes], axis=1)
        others = [(float(a), float(b), float(c), float(d), float((c - a) * (d - b))) for a, b, c, d in boxes[1:]]
        box = tuple(int(v) for v in boxes[0])
        assert max_iou_values(box, others) == max_iou(boxes[0], boxes[1:])  # exactly, not approximately
