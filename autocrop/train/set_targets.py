"""Validity targets of the set model, smoothed two ways (Jia et al. 2022, section "label smoothing").

A query matched to a good crop gets that crop's quality as its target (1 for a human ground truth).
An unmatched query is not simply "invalid": if its box is close to a good crop it is nearly as good.
Its target is ``max_j quality_j * ramp(IoU(box, ref_j))`` over reference crops j, where
``ramp(u) = clip((u - iou_low) / (1 - iou_low), 0, 1)``:

* quality-guided (dense labels, GAICD): the references are every annotated crop with its MOS mapped
  to a quality in 0..1 (:func:`mos_quality`);
* self-distillation (sparse labels, FCDB): the references are a first-round model's own predictions
  with their validity (sigmoid) as quality.

All boxes are ``x1 y1 x2 y2`` normalised to the photo.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from autocrop.train.set_matching import pairwise_iou

IOU_LOW = 0.5


def ramp(iou: Tensor, iou_low: float = IOU_LOW) -> Tensor:
    """0 at IoU <= iou_low, rising linearly to 1 at IoU 1 (same shape as ``iou``)."""
    return ((iou - iou_low) / (1.0 - iou_low)).clamp(0.0, 1.0)


def smoothed_targets(
    pred_boxes: Tensor, matched_pred: np.ndarray, matched_quality: Tensor,
    ref_boxes: Tensor | None = None, ref_quality: Tensor | None = None, iou_low: float = IOU_LOW,
) -> Tensor:
    """Validity targets [N] in 0..1 of one photo's predictions.

    pred_boxes [N, 4] (detached), matched_pred int64 [K] indices of matched predictions, matched_quality [K]
    their targets' quality. ref_boxes [R, 4] / ref_quality [R]: the references of unmatched queries
    (None: unmatched target 0, no smoothing).
    """
    targets = torch.zeros(pred_boxes.shape[0], dtype=pred_boxes.dtype)
    if ref_boxes is not None and ref_quality is not None and len(ref_boxes):
        soft = (ref_quality[None, :] * ramp(pairwise_iou(pred_boxes.detach(), ref_boxes), iou_low)).amax(dim=1)
        targets = soft.to(pred_boxes.dtype)
    if len(matched_pred):
        targets[torch.as_tensor(matched_pred)] = matched_quality.to(pred_boxes.dtype)
    return targets


def mos_quality(mos: np.ndarray) -> np.ndarray:
    """MOS [M] of one photo's annotated crops -> quality float32 [M] in 0..1 (min -> 0, max -> 1; flat -> 1)."""
    mos = np.asarray(mos, dtype=np.float64)
    span = mos.max() - mos.min() if mos.size else 0.0
    if span <= 1e-9:
        return np.ones_like(mos, dtype=np.float32)
    return ((mos - mos.min()) / span).astype(np.float32)


def good_crops(quality: np.ndarray, top: int = 4, min_quality: float = 0.75) -> np.ndarray:
    """Indices int64 of the good crops of a densely labelled photo: the ``top`` best with quality >= min_quality
    (always at least the best one)."""
    order = np.argsort(-np.asarray(quality), kind="stable")
    keep = [int(i) for i in order[:top] if quality[i] >= min_quality]
    return np.asarray(keep or [int(order[0])], dtype=np.int64)


def teacher_quality(scores: np.ndarray, temperature: float = 1.0, top_quality: float = 0.9) -> np.ndarray:
    """A grid teacher's scores [K] (standardised-MOS units, best first) -> soft quality float32 [K]:
    ``top_quality * exp(-(best - s) / temperature)``."""
    scores = np.asarray(scores, dtype=np.float64)
    return (top_quality * np.exp(-(scores.max() - scores) / temperature)).astype(np.float32)
