"""Benchmark metrics: hand-worked cases, and agreement with independent implementations.

The hand-worked numbers in the comments were computed on paper from the definitions in
autocrop/bench/metrics.py (GAICD Acc_K/N, SRCC, PCC; FCDB/FLMS IoU and boundary displacement).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autocrop.bench.baselines import area_scores, baseline_top1, centre_box, centre_scores
from autocrop.bench.metrics import (
    acc_k_n,
    average_ranks,
    best_match,
    boundary_displacement,
    box_metrics,
    crop_iou,
    gaicd_metrics,
    pearson,
    spearman,
)

# 7 candidates. MOS sorted: 5, 4, 4, 4, 3, 2, 1 -> 5th best = 3, 2nd best = 4 (three crops tie at 4).
MOS = np.array([3.0, 5.0, 4.0, 4.0, 2.0, 4.0, 1.0])
# predicted order: idx0 (MOS 3), idx2 (MOS 4), idx4 (MOS 2), idx6 (MOS 1), ...
PRED = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6])


def test_average_ranks_ties_share_the_mean_rank():
    assert average_ranks(np.array([10, 20, 20, 30])).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks(np.array([3.0, 3.0, 3.0])).tolist() == [2.0, 2.0, 2.0]
    assert average_ranks(np.array([2.0, 1.0])).tolist() == [2.0, 1.0]


@pytest.mark.parametrize(
    "k, n, expected",
    [
        (1, 5, 1.0),  # {3} >= 3
        (2, 5, 1.0),  # {3, 4}
        (3, 5, 2 / 3),  # {3, 4, 2}
        (4, 5, 0.5),  # {3, 4, 2, 1}
        (1, 2, 0.0),  # threshold 4 (ties in MOS): 3 < 4
        (2, 2, 0.5),  # 4 >= 4 counts: the tie with the 2nd best is "in the top 2"
        (3, 2, 1 / 3),
        (4, 2, 0.25),
    ],
)
def test_acc_k_n_hand_worked_with_mos_ties(k, n, expected):
    assert acc_k_n(PRED, MOS, k, n) == pytest.approx(expected)


def test_acc_with_fewer_than_n_candidates_counts_every_crop():
    # 7 candidates, N = 10: every candidate is in the top 10, so any returned crop counts
    for k in (1, 2, 3, 4):
        assert acc_k_n(PRED, MOS, k, 10) == 1.0
    # 2 candidates, K = 4: the returned set is both candidates; N = 1 -> threshold = best MOS 5
    assert acc_k_n(np.array([1.0, 0.0]), np.array([2.0, 5.0]), 1, 1) == 0.0
    assert acc_k_n(np.array([1.0, 0.0]), np.array([2.0, 5.0]), 4, 1) == 0.5


def test_acc_with_constant_predictions_returns_candidates_in_order():
    const = np.zeros_like(PRED)
    # top-K = first K candidates: MOS 3, 5, 4, 4 -> all >= 3 (N=5); vs threshold 4 (N=2): 0, 1/2, 2/3, 3/4
    assert [acc_k_n(const, MOS, k, 5) for k in (1, 2, 3, 4)] == [1.0, 1.0, 1.0, 1.0]
    assert [acc_k_n(const, MOS, k, 2) for k in (1, 2, 3, 4)] == pytest.approx([0.0, 0.5, 2 / 3, 0.75])


def test_acc_rejects_mismatched_input():
    with pytest.raises(ValueError):
        acc_k_n(PRED[:3], MOS, 1, 5)
    with pytest.raises(ValueError):
        acc_k_n(np.array([]), np.array([]), 1, 5)


def test_spearman_and_pearson_hand_worked():
    # no ties: d = [0, 1, 1, 0] -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # tie in x: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    # x = [1, 2, 3], y = [1, 2, 4]: 3 / sqrt(2 * 14/3) = sqrt(27/28)
    assert pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(math.sqrt(27 / 28))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlation_of_constant_or_tiny_input_is_undefined():
    assert pearson([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [4, 4, 4]) is None
    assert pearson([1.0], [2.0]) is None
    assert spearman([0.1] * 5, [1, 2, 3, 4, 5]) is None


def test_gaicd_metrics_average_over_images_and_count_degenerate():
    # image A: PRED/MOS above; image B: constant predictions on the same MOS
    m = gaicd_metrics([PRED, np.zeros(7)], [MOS, MOS])
    assert m.n_images == 2
    assert m.acc[(1, 5)] == pytest.approx(100.0)  # (1 + 1) / 2
    assert m.acc[(3, 5)] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert m.acc[(4, 5)] == pytest.approx(100 * (0.5 + 1) / 2)
    assert m.acc[(1, 10)] == pytest.approx(100.0)  # fewer than 10 candidates
    assert m.fewer_than_n == {5: 0, 10: 2}
    assert m.acc5_mean == pytest.approx(np.mean([100, 100, 100 * 5 / 6, 75]))
    # image B's correlations are undefined -> contribute 0
    assert m.degenerate_correlation == 1
    assert m.srcc == pytest.approx(spearman(PRED, MOS) / 2)
    assert m.pcc == pytest.approx(pearson(PRED, MOS) / 2)
    d = m.as_dict()
    assert list(d)[:8] == ["acc1_5", "acc2_5", "acc3_5", "acc4_5", "acc1_10", "acc2_10", "acc3_10", "acc4_10"]


def test_perfect_and_reversed_predictions():
    rng = np.random.default_rng(3)
    mos = [rng.integers(1, 6, 40).astype(float) + rng.random(40) for _ in range(5)]
    perfect = gaicd_metrics([m.copy() for m in mos], mos)
    assert perfect.acc5_mean == 100.0 and perfect.acc10_mean == 100.0
    assert perfect.srcc == pytest.approx(1.0) and perfect.pcc == pytest.approx(1.0)
    reverse = gaicd_metrics([-m for m in mos], mos)
    assert reverse.acc[(1, 10)] == 0.0
    assert reverse.srcc == pytest.approx(-1.0)


def test_iou_and_displacement_hand_worked():
    gt = np.array([[10, 10, 60, 40]])  # 50 x 30
    box = np.array([20, 10, 70, 40])  # shifted right by 10
    # intersection 40 x 30 = 1200, union 1500 + 1500 - 1200 = 1800
    assert crop_iou(box, gt)[0] == pytest.approx(2 / 3)
    # image 100 x 50: (10/100 + 10/100 + 0 + 0) / 4
    assert boundary_displacement(box, gt, 100, 50)[0] == pytest.approx(0.05)
    assert crop_iou(box, np.array([[80, 0, 90, 5]]))[0] == 0.0


def test_crop_iou_is_the_geometry_iou_of_one_row():
    from autocrop.geometry import box_iou

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (20, 2))
    gts = np.concatenate([xy, xy + rng.uniform(1, 50, (20, 2))], axis=1)
    box = np.array([10.0, 20.0, 70.0, 60.0])
    assert crop_iou(box, gts).tolist() == box_iou(box[None], gts)[0].tolist()  # the very same numbers


@pytest.mark.parametrize("degenerate", [
    [50, 10, 20, 40],   # x2 < x1: negative width
    [20, 40, 50, 10],   # y2 < y1: negative height
    [50, 40, 20, 10],   # both negative: a positive "area"
    [20, 10, 20, 40],   # zero width
])
def test_degenerate_boxes_have_zero_iou_never_negative(degenerate):
    """The metric clamps degenerate boxes: an inverted box covers nothing, whatever the sign of its "area"."""
    gts = np.array([[10, 10, 60, 40], [0, 0, 100, 50], [20, 10, 50, 40]])
    assert crop_iou(np.array(degenerate), gts).tolist() == [0.0, 0.0, 0.0]
    assert crop_iou(np.array([10, 10, 60, 40]), np.array([degenerate])).tolist() == [0.0]
    iou, disp = best_match(np.array(degenerate), gts, 100, 50)
    assert iou == 0.0 and disp >= 0.0
    m = box_metrics([np.array(degenerate), np.array([10, 10, 60, 40])], [gts, gts], [(100, 50), (100, 50)])
    assert m.iou == pytest.approx(0.5)  # (0 + 1) / 2: the degenerate crop counts as no overlap at all


def test_best_match_takes_max_iou_and_min_disp_over_ground_truths():
    box = np.array([0, 0, 50, 50])
    gts = np.array([[0, 0, 100, 100], [0, 0, 50, 10]])
    # gt0: IoU 2500/10000 = .25, Disp (0 + .5 + 0 + .5)/4 = .25; gt1: IoU 500/2500 = .2, Disp (0+0+0+.4)/4 = .1
    iou, disp = best_match(box, gts, 100, 100)
    assert iou == pytest.approx(0.25) and disp == pytest.approx(0.1)
    m = box_metrics([box, np.array([0, 0, 100, 100])], [gts, gts], [(100, 100), (100, 100)])
    assert m.iou == pytest.approx((0.25 + 1.0) / 2)
    assert m.disp == pytest.approx((0.1 + 0.0) / 2)


def test_centre_box_keeps_ratio_and_area():
    box = centre_box(300, 200)
    w, h = box[2] - box[0], box[3] - box[1]
    assert w * h == pytest.approx(0.8 * 300 * 200)
    assert w / h == pytest.approx(1.5)
    assert (box[0] + box[2]) / 2 == pytest.approx(150) and (box[1] + box[3]) / 2 == pytest.approx(100)
    boxes = np.array([[0, 0, 300, 200], box, [0, 0, 100, 100]])
    assert centre_scores(boxes, 300, 200).argmax() == 1
    assert area_scores(boxes).tolist() == pytest.approx([60000, 48000, 10000])
    rng = np.random.default_rng(0)
    assert baseline_top1("largest", boxes, 300, 200, rng).tolist() == [0, 0, 300, 200]
    assert baseline_top1("centre", boxes, 300, 200, rng) == pytest.approx(box)


# ---------------------------------------------------------------------------------------------
# agreement with independent implementations (floor: 0.1 points)
# ---------------------------------------------------------------------------------------------


def _acc_by_loops(preds: list, gts: list) -> dict:
    """Straightforward GAIC-style loop: python sorts (stable, descending), count, divide."""
    sums = {(k, n): 0.0 for k in (1, 2, 3, 4) for n in (5, 10)}
    for pred, gt in zip(preds, gts):
        pred, gt = list(map(float, pred)), list(map(float, gt))
        order_gt = sorted(range(len(gt)), key=lambda j: gt[j], reverse=True)
        order_pr = sorted(range(len(pred)), key=lambda j: pred[j], reverse=True)
        for n in (5, 10):
            nth = gt[order_gt[min(n, len(gt)) - 1]]
            for k in (1, 2, 3, 4):
                returned = order_pr[:k]
                hits = 0
                for j in returned:
                    if gt[j] >= nth:
                        hits += 1
                sums[(k, n)] += hits / len(returned)
    return {key: 100.0 * v / len(preds) for key, v in sums.items()}


def _random_images(seed: int, count: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    preds, mos = [], []
    for _ in range(count):
        size = int(rng.integers(6, 95))
        m = np.round(rng.uniform(1, 5, size), 1)  # rounded: many ties, like real MOS
        p = np.round(m + rng.normal(0, 0.8, size), 2)
        if rng.random() < 0.1:
            p = np.round(rng.normal(0, 1, size), 0)  # coarse predictions: ties in the ranking too
        preds.append(p.astype(np.float32))
        mos.append(m.astype(np.float32))
    return preds, mos


def test_agrees_with_scipy_correlations_and_loop_accuracy():
    stats = pytest.importorskip("scipy.stats")
    preds, mos = _random_images(seed=7, count=120)
    ours = gaicd_metrics(preds, mos)
    srcc = [stats.spearmanr(p, m)[0] for p, m in zip(preds, mos)]
    pcc = [stats.pearsonr(p, m)[0] for p, m in zip(preds, mos)]
    assert not np.isnan(srcc).any()
    assert abs(ours.srcc - float(np.mean(srcc))) * 100 < 0.1
    assert abs(ours.pcc - float(np.mean(pcc))) * 100 < 0.1
    for p, m in zip(preds[:20], mos[:20]):
        assert spearman(p, m) == pytest.approx(stats.spearmanr(p, m)[0], abs=1e-9)
        assert pearson(p, m) == pytest.approx(stats.pearsonr(p, m)[0], abs=1e-6)
    loops = _acc_by_loops(preds, mos)
    for key, value in loops.items():
        assert abs(ours.acc[key] - value) < 0.1, key
    assert abs(ours.acc5_mean - np.mean([loops[(k, 5)] for k in (1, 2, 3, 4)])) < 0.1


@pytest.mark.data
def test_agrees_with_scipy_on_real_gaicd_mos(gaicd_items):
    """Real MOS (many ties at the annotation resolution) against a smooth pseudo-prediction (crop area)."""
    stats = pytest.importorskip("scipy.stats")
    preds = [area_scores(i.boxes) for i in gaicd_items]
    mos = [i.scores for i in gaicd_items]
    ours = gaicd_metrics(preds, mos)
    assert abs(ours.srcc - np.mean([stats.spearmanr(p, m)[0] for p, m in zip(preds, mos)])) * 100 < 0.1
    assert abs(ours.pcc - np.mean([stats.pearsonr(p, m)[0] for p, m in zip(preds, mos)])) * 100 < 0.1
    loops = _acc_by_loops(preds, mos)
    assert all(abs(ours.acc[key] - v) < 0.1 for key, v in loops.items())


@pytest.fixture(scope="module")
def gaicd_items(data_dir):
    from autocrop.data import load_gaicd

    root = data_dir / "GAICD"
    if not (root / "annotations" / "test").is_dir():
        pytest.skip(f"GAICD data not found at {root} (set AUTOCROP_DATA_DIR)")
    items, _ = load_gaicd(root, "test")
    return items
