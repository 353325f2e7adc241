"""Quality metrics of the cropping benchmarks (pure numpy; no torch).

GAICD protocol (Zeng et al., "Grid anchor based image cropping"), per image, then averaged over images:

* ``Acc_K/N`` (K = 1..4, N = 5, 10): the share of the K best *predicted* crops whose annotated MOS is
  at least the N-th best *annotated* MOS. Ties in the annotated MOS therefore count in the crop's
  favour (every crop tied with the N-th best is "in the top N"). Ties in the *predicted* scores are
  broken by candidate order (the earlier candidate ranks higher; a stable sort), so a constant
  predictor returns the first K candidates.
  With fewer than N candidates every candidate is in the top N (the threshold is the lowest MOS), so
  any returned crop counts; with fewer than K candidates the K returned crops are all candidates.
  Reported in percent (points), like the papers.
* ``mean Acc5`` / ``mean Acc10``: the mean of ``Acc_K/5`` / ``Acc_K/10`` over K = 1..4.
* ``SRCC`` / ``PCC``: Spearman (average ranks for ties) and Pearson correlation between predicted
  scores and MOS of one image, averaged over images. A correlation is undefined when either side is
  constant (or the image has fewer than 2 candidates); such an image contributes a correlation of 0
  (no evidence of agreement) and is counted in ``degenerate_correlation``.

FCDB / FLMS protocol (Chen et al. 2017; Fang et al. 2014), per image, then averaged over images:

* ``IoU`` of the top-1 crop with the ground-truth crop.
* ``Disp`` (boundary displacement): mean of the four edge offsets ``|dx1|/W, |dx2|/W, |dy1|/H, |dy2|/H``
  (W, H: image width and height, so 0 = identical, 1 = maximally wrong).
* Where an image has several ground-truth crops (FLMS: up to 10 expert crops), the best match counts
  for each metric: the maximum IoU and the minimum Disp over the ground truths (the protocol of the
  VEN/VPN and CACNet evaluation code).

Diversity (every model; FCDB / FLMS runs): the top-3 crops ``autocrop crop --top 3`` writes for a free ratio, and
the IoU of each pair of them (:func:`diversity_metrics`): the mean per image, averaged over images, and the
largest seen.

All boxes are ``x1 y1 x2 y2`` in pixels of the same image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autocrop.geometry import box_iou

ACC_KS = (1, 2, 3, 4)
ACC_NS = (5, 10)


# ---------------------------------------------------------------------------------------------
# ranks and correlations
# ---------------------------------------------------------------------------------------------


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` [n] (ascending), tied values sharing the mean of their ranks -> float64 [n]."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(n, dtype=np.float64)
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and sorted_values[stop] == sorted_values[start]:
            stop += 1
        # positions start..stop-1 hold equal values: ranks start+1..stop, mean (start+1+stop)/2
        ranks[order[start:stop]] = (start + 1 + stop) / 2.0
        start = stop
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two [n] vectors; ``None`` when undefined (n < 2 or a constant side)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"pearson: length mismatch {x.size} vs {y.size}")
    if x.size < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(np.dot(dx, dx)), float(np.dot(dy, dy))
    # relative tolerance: a "constant" float32 vector may carry rounding noise after the mean is removed
    if sxx <= 1e-24 * max(1.0, float(np.dot(x, x))) or syy <= 1e-24 * max(1.0, float(np.dot(y, y))):
        return None
    r = float(np.dot(dx, dy) / np.sqrt(sxx * syy))
    return max(-1.0, min(1.0, r))


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson of average ranks); ``None`` when undefined."""
    x = np.asarray(x).ravel()
    y = np.asarray(y).ravel()
    if x.size != y.size:
        raise ValueError(f"spearman: length mismatch {x.size} vs {y.size}")
    if x.size < 2:
        return None
    return pearson(average_ranks(x), average_ranks(y))


# ---------------------------------------------------------------------------------------------
# GAICD
# ---------------------------------------------------------------------------------------------


def acc_k_n(pred: np.ndarray, mos: np.ndarray, k: int, n: int) -> float:
    """Acc_K/N of one image as a fraction in [0, 1] (see the module docstring for ties and small N).

    pred: [M] predicted scores (higher = better); mos: [M] annotated mean opinion scores.
    """
    pred = np.asarray(pred, dtype=np.float64).ravel()
    mos = np.asarray(mos, dtype=np.float64).ravel()
    if pred.size != mos.size:
        raise ValueError(f"acc_k_n: {pred.size} predictions for {mos.size} annotated crops")
    if pred.size == 0:
        raise ValueError("acc_k_n: an image without candidates")
    if k < 1 or n < 1:
        raise ValueError("acc_k_n: K and N must be >= 1")
    mos_desc = np.sort(mos)[::-1]
    threshold = mos_desc[min(n, mos.size) - 1]
    top_k = np.argsort(-pred, kind="stable")[: min(k, pred.size)]
    return float(np.mean(mos[top_k] >= threshold))


@dataclass
class GAICDMetrics:
    """Averaged GAICD metrics. ``acc[(K, N)]`` and the means are in percent; SRCC/PCC in [-1, 1]."""

    n_images: int
    acc: dict[tuple[int, int], float]
    acc5_mean: float
    acc10_mean: float
    srcc: float
    pcc: float
    degenerate_correlation: int = 0
    fewer_than_n: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Flat JSON-friendly dict: ``acc1_5`` ... ``acc4_10``, ``acc5_mean``, ``acc10_mean``, ``srcc``, ``pcc``."""
        ordered = sorted(self.acc.items(), key=lambda t: (t[0][1], t[0][0]))
        out: dict = {f"acc{k}_{n}": round(v, 4) for (k, n), v in ordered}
        out.update(
            acc5_mean=round(self.acc5_mean, 4),
            acc10_mean=round(self.acc10_mean, 4),
            srcc=round(self.srcc, 5),
            pcc=round(self.pcc, 5),
            n_images=self.n_images,
            degenerate_correlation=self.degenerate_correlation,
            fewer_than_n={str(n): c for n, c in self.fewer_than_n.items()},
        )
        return out


def gaicd_metrics(
    predictions: list[np.ndarray], mos_list: list[np.ndarray], ks: tuple[int, ...] = ACC_KS,
    ns: tuple[int, ...] = ACC_NS,
) -> GAICDMetrics:
    """GAICD metrics over images: ``predictions[i]`` and ``mos_list[i]`` are [M_i] for image i."""
    if len(predictions) != len(mos_list):
        raise ValueError(f"gaicd_metrics: {len(predictions)} predictions for {len(mos_list)} images")
    if not predictions:
        raise ValueError("gaicd_metrics: no images")
    acc_sum = {(k, n): 0.0 for n in ns for k in ks}
    srcc_sum = pcc_sum = 0.0
    degenerate = 0
    fewer = {n: 0 for n in ns}
    for pred, mos in zip(predictions, mos_list):
        for n in ns:
            fewer[n] += int(np.size(mos) < n)
            for k in ks:
                acc_sum[(k, n)] += acc_k_n(pred, mos, k, n)
        s, p = spearman(pred, mos), pearson(pred, mos)
        degenerate += int(s is None or p is None)
        srcc_sum += s or 0.0
        pcc_sum += p or 0.0
    count = len(predictions)
    acc = {key: 100.0 * v / count for key, v in acc_sum.items()}

    def mean_over_k(n: int) -> float:
        return float(np.mean([acc[(k, n)] for k in ks])) if n in ns else float("nan")

    return GAICDMetrics(
        n_images=count,
        acc=acc,
        acc5_mean=mean_over_k(5),
        acc10_mean=mean_over_k(10),
        srcc=srcc_sum / count,
        pcc=pcc_sum / count,
        degenerate_correlation=degenerate,
        fewer_than_n=fewer,
    )


# ---------------------------------------------------------------------------------------------
# FCDB / FLMS
# ---------------------------------------------------------------------------------------------


def crop_iou(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one crop [4] with each ground truth of ``gts`` [G, 4] (``x1 y1 x2 y2`` pixels) -> float64 [G].

    :func:`autocrop.geometry.box_iou` for one row. A degenerate box (``x2 <= x1`` or ``y2 <= y1``, on
    either side) has no intersection with anything, so its IoU is 0 -- never negative, whatever the
    sign of its "area".
    """
    return box_iou(np.asarray(box, dtype=np.float64).reshape(1, 4), gts)[0]


def boundary_displacement(box: np.ndarray, gts: np.ndarray, width: float, height: float) -> np.ndarray:
    """Disp of one box [4] against each of ``gts`` [G, 4] -> float64 [G]: mean of |dx1|/W, |dx2|/W, |dy1|/H, |dy2|/H."""
    if width <= 0 or height <= 0:
        raise ValueError(f"boundary_displacement: image size must be positive, got {width}x{height}")
    box = np.asarray(box, dtype=np.float64).reshape(4)
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    d = np.abs(gts - box[None, :]) / np.asarray([width, height, width, height], dtype=np.float64)
    return d.mean(axis=1)


def best_match(box: np.ndarray, gts: np.ndarray, width: float, height: float) -> tuple[float, float]:
    """(max IoU, min Disp) of ``box`` over the ground-truth crops ``gts`` [G, 4] of a ``width`` x ``height`` image."""
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    if len(gts) == 0:
        raise ValueError("best_match: no ground-truth crop")
    return float(crop_iou(box, gts).max()), float(boundary_displacement(box, gts, width, height).min())


@dataclass
class BoxMetrics:
    """Averaged FCDB/FLMS metrics of the top-1 crops: IoU (higher is better), Disp (lower is better)."""

    n_images: int
    iou: float
    disp: float

    def as_dict(self) -> dict:
        return {"iou": round(self.iou, 5), "disp": round(self.disp, 5), "n_images": self.n_images}


def box_metrics(
    chosen: list[np.ndarray], ground_truths: list[np.ndarray], sizes: list[tuple[float, float]]
) -> BoxMetrics:
    """Mean best-match IoU / Disp of ``chosen[i]`` [4] against ``ground_truths[i]`` [G_i, 4].

    ``sizes[i]``: (W, H) of image i.
    """
    if not (len(chosen) == len(ground_truths) == len(sizes)):
        raise ValueError("box_metrics: chosen boxes, ground truths and sizes differ in length")
    if not chosen:
        raise ValueError("box_metrics: no images")
    ious, disps = zip(*(best_match(b, g, w, h) for b, g, (w, h) in zip(chosen, ground_truths, sizes)))
    return BoxMetrics(n_images=len(chosen), iou=float(np.mean(ious)), disp=float(np.mean(disps)))


# ---------------------------------------------------------------------------------------------
# diversity of the top-k
# ---------------------------------------------------------------------------------------------


def pairwise_ious(boxes: np.ndarray) -> np.ndarray:
    """IoU of every pair of ``boxes`` [K, 4] (``x1 y1 x2 y2``, one unit) -> float64 [K * (K - 1) / 2]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    upper = np.triu_indices(len(boxes), k=1)
    return box_iou(boxes, boxes)[upper]


def diversity_metrics(tops: list[np.ndarray], limit: float = 0.7) -> dict:
    """How alike the top-k crops of each image are: ``tops[i]`` [K_i, 4] pixels of image i, best first.

    ``mean_pairwise_iou``: the mean IoU over the pairs of an image's crops, averaged over the images with at
    least two crops (lower = more varied); ``max_pairwise_iou``: the largest IoU of any pair seen;
    ``pairs_over``: pairs more alike than ``limit``; ``images``: images with at least two crops.
    """
    per_image = [pairwise_ious(t) for t in tops]
    per_image = [p for p in per_image if p.size]
    if not per_image:
        return {"mean_pairwise_iou": None, "max_pairwise_iou": None, "pairs_over": 0, "limit": limit, "images": 0}
    every = np.concatenate(per_image)
    return {
        "mean_pairwise_iou": round(float(np.mean([p.mean() for p in per_image])), 5),
        "max_pairwise_iou": round(float(every.max()), 5),
        "pairs_over": int((every > limit).sum()),
        "limit": limit,
        "images": len(per_image),
    }
