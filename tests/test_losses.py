"""Losses against values worked out by hand."""

import math

import pytest
import torch

from autocrop.train.losses import (
    ListwiseTop1Loss,
    PairwiseBCELoss,
    RankConsistencyLoss,
    RankingGainLoss,
    SmoothL1ScoreLoss,
    mos_pairs,
)


def test_smooth_l1_hand_values():
    pred = torch.tensor([0.0, 2.0, -1.0])
    target = torch.tensor([0.5, 0.0, -1.0])
    # |d| = 0.5 -> 0.5*0.25 = 0.125 ; |d| = 2 -> 2 - 0.5 = 1.5 ; 0 -> 0
    assert SmoothL1ScoreLoss()(pred, target).item() == pytest.approx((0.125 + 1.5 + 0.0) / 3)


def test_ranking_gain_paper_formula_by_hand():
    # ground truth order: crop 1 (0.8) is rank 1, crop 0 (0.2) is rank 2
    pred = torch.tensor([0.5, 1.0])
    target = torch.tensor([0.2, 0.8])
    sigma_rank1 = 0.8 - abs(1.0 - 0.8)  # 0.6
    sigma_rank2 = 0.2 - abs(0.5 - 0.2)  # -0.1
    beta = (math.exp(sigma_rank1) - 1) / math.log(2) + (math.exp(sigma_rank2) - 1) / math.log(3)
    loss = RankingGainLoss(normalize=False)(pred, target)
    assert loss.item() == pytest.approx(math.exp(-beta), rel=1e-6)
    normalized = RankingGainLoss(normalize=True)(pred, target)
    assert normalized.item() == pytest.approx(math.exp(-beta / (1 / math.log(2) + 1 / math.log(3))), rel=1e-6)


def test_ranking_gain_prefers_accurate_predictions():
    target = torch.tensor([1.0, 0.0, -1.0])
    exact = RankingGainLoss()(target.clone(), target)
    off = RankingGainLoss()(target + torch.tensor([-0.5, 0.3, 0.2]), target)
    assert exact < off


def test_listwise_top1_hand_values():
    pred = torch.tensor([0.0, math.log(3.0)])  # softmax -> [0.25, 0.75]
    target = torch.tensor([0.0, 0.0])  # uniform target
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert ListwiseTop1Loss()(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_listwise_top1_temperature_sharpens_target():
    pred = torch.tensor([0.0, 0.0])
    target = torch.tensor([1.0, 0.0])
    # T -> 0 puts all mass on crop 0: loss -> -log 0.5
    assert ListwiseTop1Loss(temperature=1e-3)(pred, target).item() == pytest.approx(math.log(2), rel=1e-5)


def test_pairwise_bce_hand_values():
    logits = torch.tensor([0.0, math.log(4.0)])  # p = 0.5, 0.8
    q = torch.tensor([1.0, 0.6])
    expected = (-math.log(0.5) + -(0.6 * math.log(0.8) + 0.4 * math.log(0.2))) / 2
    assert PairwiseBCELoss()(logits, q).item() == pytest.approx(expected, rel=1e-6)


def test_rank_consistency_hinge_hand_values():
    score_i = torch.tensor([1.0, 0.0, 0.5])
    score_j = torch.tensor([0.0, 0.05, 0.5])
    p = torch.tensor([0.9, 0.9, 0.2])
    # pair 0: i>j predicted and agreed with margin 1 -> max(0, 0.1 - 1) = 0
    # pair 1: i>j, scores 0 vs 0.05 -> 0.1 + 0.05 = 0.15
    # pair 2: j>i (sign -1), equal scores -> 0.1 - 0 = 0.1
    assert RankConsistencyLoss(delta=0.1)(score_i, score_j, p).item() == pytest.approx((0 + 0.15 + 0.1) / 3)


def test_rank_consistency_does_not_backprop_into_labels():
    p = torch.tensor([0.9], requires_grad=True)
    loss = RankConsistencyLoss()(torch.tensor([0.0], requires_grad=True), torch.tensor([0.0]), p)
    loss.backward()
    assert p.grad is None or torch.all(p.grad == 0)


def test_mos_pairs_respects_margin():
    mos = torch.tensor([3.0, 3.4, 4.0, 2.0])
    i, j = mos_pairs(mos, margin=0.5)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert pairs == {(0, 3), (1, 3), (2, 0), (2, 1), (2, 3)}  # 4.0-3.4 = 0.6 > 0.5
