"""Losses of the set model: Hungarian matching per photo, then L1 + GIoU on matched boxes and BCE on validity.

Boxes are ``x1 y1 x2 y2`` normalised to the photo. Every decoder layer is supervised (DETR's auxiliary
losses), each matched on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from autocrop.train.set_matching import MatchWeights, match, paired_giou
from autocrop.train.set_targets import IOU_LOW, smoothed_targets


@dataclass
class PhotoTargets:
    """Supervision of one photo.

    boxes [T, 4]: the good crops to match (normalised x1 y1 x2 y2); quality [T] in 0..1: their validity
    target (1 for a human ground truth). ref_boxes [R, 4] / ref_quality [R]: references that smooth the
    validity of unmatched queries (quality-guided or self-distillation; None: unmatched target 0).
    """

    boxes: Tensor
    quality: Tensor
    ref_boxes: Tensor | None = None
    ref_quality: Tensor | None = None


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (and of the matching cost, :class:`MatchWeights`)."""

    l1: float = 5.0
    giou: float = 2.0
    validity: float = 2.0
    iou_low: float = IOU_LOW

    @property
    def matching(self) -> MatchWeights:
        return MatchWeights(l1=self.l1, giou=self.giou, validity=1.0)


def photo_loss(boxes: Tensor, logits: Tensor, target: PhotoTargets, weights: LossWeights) -> dict[str, Tensor]:
    """Loss terms of one photo and one layer: boxes [N, 4], logits [N] -> {"l1", "giou", "validity"} (scalars)."""
    pred_idx, tgt_idx = match(boxes, logits, target.boxes, weights.matching)
    pred_t, tgt_t = torch.as_tensor(pred_idx), torch.as_tensor(tgt_idx)
    quality = target.quality[tgt_t]
    norm = quality.sum().clamp(min=1e-6)
    matched, wanted = boxes[pred_t], target.boxes[tgt_t]
    l1 = ((matched - wanted).abs().sum(dim=1) * quality).sum() / norm
    giou = ((1.0 - paired_giou(matched, wanted)) * quality).sum() / norm
    validity_target = smoothed_targets(boxes.detach(), pred_idx, quality, target.ref_boxes, target.ref_quality,
                                       weights.iou_low)
    validity = F.binary_cross_entropy_with_logits(logits, validity_target)
    return {"l1": l1, "giou": giou, "validity": validity}


def set_loss(layers: list[tuple[Tensor, Tensor]], targets: list[PhotoTargets],
             weights: LossWeights = LossWeights()) -> tuple[Tensor, dict[str, float]]:
    """Total loss (mean over photos, sum over decoder layers) and its parts (last layer, floats).

    layers: per decoder layer (boxes [B, N, 4], logits [B, N]); targets: one :class:`PhotoTargets` per photo.
    """
    total = torch.zeros(())
    parts: dict[str, float] = {}
    for index, (boxes, logits) in enumerate(layers):
        sums: dict[str, Tensor] = {}
        for b, target in enumerate(targets):
            for key, value in photo_loss(boxes[b], logits[b], target, weights).items():
                sums[key] = sums.get(key, torch.zeros(())) + value / len(targets)
        total = total + weights.l1 * sums["l1"] + weights.giou * sums["giou"] + weights.validity * sums["validity"]
        if index == len(layers) - 1:
            parts = {k: float(v.detach()) for k, v in sums.items()}
    return total, parts
