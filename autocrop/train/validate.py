"""Validation during training: GAICD-style ranking metrics and FCDB-style top-1 IoU / displacement
(of the refined best view, refined as :class:`autocrop.cropper.Cropper` refines it).

The metric definitions are those of :mod:`autocrop.bench.metrics` (the benchmark uses the same code).
"""

from __future__ import annotations

import numpy as np
import torch

from autocrop.model.network import ViewRankingNet, normalize_image, pixels_to_tensor
from autocrop.train.samples import TrainSample


@torch.inference_mode()
def predict(net: ViewRankingNet, sample: TrainSample, flip_tta: bool | None = None) -> np.ndarray:
    """Scores float32 [N] of ``sample.boxes`` (network in its current mode; flip averaging: its config unless given)."""
    image = normalize_image(pixels_to_tensor(sample.pixels))
    return net.predict(image, torch.from_numpy(sample.boxes), flip_tta).numpy()


def validate(net: ViewRankingNet, samples: list[TrainSample]) -> dict[str, float]:
    """Metrics over ``samples`` in eval mode (GAICD ones -> acc/srcc/pcc in %/[-1, 1], FCDB ones -> iou/disp)."""
    from autocrop.bench.metrics import box_metrics, gaicd_metrics
    from autocrop.select import refine_boxes

    was_training = net.training
    net.eval()
    preds: list[np.ndarray] = []
    mos: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    sizes: list[tuple[float, float]] = []
    for sample in samples:
        scores = predict(net, sample)
        if sample.mos is not None:
            preds.append(scores)
            mos.append(sample.mos)
        elif sample.iou_target is not None:
            h, w = sample.pixels.shape[:2]
            candidates = sample.boxes[:-1]  # the last box is the ground truth itself, not a candidate
            top1 = np.array([int(np.argmax(scores[:-1]))])
            chosen.append(refine_boxes(candidates, scores[:-1], top1)[0])  # as the Cropper does
            truths.append(sample.boxes[-1:])
            sizes.append((float(w), float(h)))
    net.train(was_training)
    metrics: dict[str, float] = {}
    if preds:
        g = gaicd_metrics(preds, mos)
        metrics.update(
            acc1_5=g.acc[(1, 5)], acc1_10=g.acc[(1, 10)], acc5=g.acc5_mean, acc10=g.acc10_mean, srcc=g.srcc, pcc=g.pcc
        )
    if chosen:
        b = box_metrics(chosen, truths, sizes)
        metrics.update(iou=b.iou, disp=b.disp)
    return metrics
