"""Hungarian matching of predicted crops to labelled good crops (set prediction, DETR / Jia et al. 2022).

Boxes are ``x1 y1 x2 y2`` normalised to the photo (0..1) with x1 < x2, y1 < y2. The matching cost of
prediction i and target j is ``l1_weight * L1(i, j) + giou_weight * (1 - GIoU(i, j)) - validity_weight *
p_i`` (p_i = sigmoid of the validity logit), minimised over one-to-one assignments by
``scipy.optimize.linear_sum_assignment`` (scipy: a training dependency, the ``train`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def pairwise_giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of boxes a [N, 4] and b [M, 4] (x1 y1 x2 y2, x1 < x2, y1 < y2) -> [N, M] in -1..1."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])).prod(dim=-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def paired_giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of corresponding rows of a [K, 4] and b [K, 4] -> [K]."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=-1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(dim=-1)
    return inter / union.clamp(min=1e-9) - (hull - union) / hull.clamp(min=1e-9)


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a [N, 4] and b [M, 4] (x1 y1 x2 y2) -> [N, M] in 0..1."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]))
    inter = inter.clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


@dataclass(frozen=True)
class MatchWeights:
    """Weights of the matching cost terms (DETR's defaults, with a validity term)."""

    l1: float = 5.0
    giou: float = 2.0
    validity: float = 1.0


def match_cost(pred_boxes: Tensor, pred_logits: Tensor, target_boxes: Tensor,
               weights: MatchWeights = MatchWeights()) -> Tensor:
    """Cost [N, T] of assigning prediction i (boxes [N, 4], logits [N]) to target j (boxes [T, 4])."""
    l1 = torch.cdist(pred_boxes, target_boxes, p=1)
    giou = pairwise_giou(pred_boxes, target_boxes)
    return weights.l1 * l1 + weights.giou * (1.0 - giou) - weights.validity * torch.sigmoid(pred_logits)[:, None]


def hungarian(cost: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of a cost [N, T] -> (prediction indices, target indices), int64 [min(N, T)],
    sorted by prediction index. Needs scipy (the ``train`` extra)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("set model training needs scipy: pip install 'autocrop-views[train]'") from err

    matrix = cost.detach().cpu().double().numpy() if isinstance(cost, Tensor) else np.asarray(cost, np.float64)
    if matrix.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(matrix)
    return rows.astype(np.int64), cols.astype(np.int64)


def match(pred_boxes: Tensor, pred_logits: Tensor, target_boxes: Tensor,
          weights: MatchWeights = MatchWeights()) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of one photo's predictions to its targets -> (prediction idx, target idx)."""
    with torch.no_grad():
        return hungarian(match_cost(pred_boxes.float(), pred_logits.float(), target_boxes.float(), weights))
