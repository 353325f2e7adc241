"""The views of one photo, their scores and the crops chosen from them, for both model families.

    views = make_views(scorer, lock, decoded, settings, subject)
    crops, warnings = choose_crops(views, settings, decoded, subject, detected=True)
    views.boxes [N, 4] x1 y1 x2 y2 pixels of the EXIF-oriented full-size photo; views.groups [N] ratio index;
    views.scores float32 [N] (higher is better); views.exact[i]: the exact (a, b) of ratio i, None when free

Two model families make views differently; everything after (the face rule, diverse top-k, refinement,
:func:`autocrop.faces.apply.choose`) is the same for both.

* A **grid** model (a view-ranking scorer, ``score(image, boxes)``) scores candidates: GAIC's grid or the
  exact-ratio crops of :func:`autocrop.candidates.candidate_boxes`, plus the views around faces and hints
  (:func:`autocrop.faces.apply.with_extra_candidates`), all in one forward pass.
* A **set** model (Jia et al. 2022, a scorer with ``propose(image)``) predicts its views in one forward pass:
  N boxes and a validity in 0..1 each. Free ratio: the predicted boxes themselves (whole pixels, inside the
  photo), scored by their validity. An exact ratio ``a:b``: each prediction becomes the exact-ratio box with its
  centre and its area (:func:`exact_ratio_boxes`; of all boxes of ratio a:b with that centre, the same-area
  one has the highest IoU with the prediction: for a w x h prediction, IoU(k) = w k b / (w h + a b k^2 - w k b)
  on the sizes k a x k b between the two sides' fits, maximal at k^2 a b = w h), snapped to whole pixels
  ``k a`` x ``k b`` (k the better of the two whole sizes around it, at most the largest that fits) and moved
  inside the photo; it is scored ``validity x IoU(adjusted box, its prediction)``, so a prediction far from
  the ratio ranks lower. Views the face rule adds are scored ``max_j validity_j x IoU(view, prediction_j)``
  (what ``SetScorer.score`` computes) from the same forward pass; with faces or hints, the crops around them
  are always added (:func:`_with_covering_crops`), as N predictions leave the rule little to choose from.
  A set model's views are not refined (:attr:`Views.refine`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.candidates import candidate_boxes
from autocrop.errors import InputError
from autocrop.geometry import box_iou, reduce_ratio

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.faces.rules import Subject
    from autocrop.io.decode import ReducedImage
    from autocrop.model.scorer import Scorer
    from autocrop.results import Crop
    from autocrop.settings import CropSettings


@dataclass
class Views:
    """The scored views of one photo (see the module docstring); ``timings``: seconds of "candidates", "score";
    ``refine``: whether the chosen views may be refined (:func:`autocrop.select.select_crops`): a grid's yes (as
    ``settings.refine`` says), a set model's no (its boxes are regressed, not on a grid, and refining could make
    its top-k more alike than the diversity limit)."""

    boxes: np.ndarray
    groups: np.ndarray
    scores: np.ndarray
    exact: list[tuple[int, int] | None]
    timings: dict[str, float] = field(default_factory=dict)
    refine: bool = True


def is_set_model(scorer: Any) -> bool:
    """True for a set-prediction scorer (it has ``propose``), False for a view-ranking (grid) one."""
    return callable(getattr(scorer, "propose", None))


def score_boxes(scorer: Scorer, lock: AbstractContextManager[Any], image: Image.Image, boxes: np.ndarray) -> np.ndarray:
    """``scorer.score`` of ``boxes`` [N, 4] (pixels of the reduced ``image``) under ``lock`` -> float32 [N]."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    with lock:
        scores = np.asarray(scorer.score(image, boxes), dtype=np.float32).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise RuntimeError(f"scorer returned {scores.shape[0]} scores for {boxes.shape[0]} boxes")
    return scores


def make_views(scorer: Scorer, lock: AbstractContextManager[Any], decoded: ReducedImage, settings: CropSettings,
               subject: Subject | None) -> Views:
    """The scored views of ``decoded`` for every ratio of ``settings`` (grid or set model, see the module).

    Raises :class:`InputError` starting with the photo's label when it is too small for a ratio or no view
    of a ratio can hold every hint.
    """
    from autocrop.faces.apply import with_extra_candidates
    from autocrop.model.set_scorer import validity_scores

    info = decoded.info
    exact = [spec.resolve(info.width, info.height) for spec in settings.ratios]
    labels = [spec.label for spec in settings.ratios]
    t0 = time.perf_counter()
    if not is_set_model(scorer):
        boxes, groups = candidate_boxes(info.width, info.height, settings.ratios, decoded.label)
        boxes, groups = with_extra_candidates(boxes, groups, subject, exact, labels, decoded.label)
        t1 = time.perf_counter()
        scores = score_boxes(scorer, lock, decoded.image, boxes.astype(np.float32) / np.float32(decoded.scale))
        return Views(boxes, groups, scores, exact, {"candidates": t1 - t0, "score": time.perf_counter() - t1})
    with lock:
        predicted, validity = scorer.propose(decoded.image)  # type: ignore[attr-defined]
    t1 = time.perf_counter()
    predicted = clip_predictions(np.asarray(predicted, np.float64).reshape(-1, 4) * decoded.scale,
                                 info.width, info.height)
    validity = np.asarray(validity, np.float64).reshape(-1)
    all_boxes, all_groups, all_scores = [], [], []
    for index, ratio in enumerate(exact):
        if ratio is None:
            boxes, scores = predicted, validity
        else:
            if min(info.width // ratio[0], info.height // ratio[1]) < 1:
                raise InputError(f"{decoded.label}: {info.width}x{info.height} px is too small for ratio "
                                 f"{labels[index]} (needs at least {ratio[0]}x{ratio[1]} px)")
            boxes = exact_ratio_boxes(predicted, info.width, info.height, ratio)
            scores = validity * np.diagonal(box_iou(boxes, predicted)) if len(boxes) else validity
        all_boxes.append(boxes)
        all_groups.append(np.full(len(boxes), index, dtype=np.int64))
        all_scores.append(scores)
    views, groups = np.concatenate(all_boxes), np.concatenate(all_groups)
    scores = np.concatenate(all_scores)
    every, every_groups = with_extra_candidates(views, groups, subject, exact, labels, decoded.label)
    every, every_groups = _with_covering_crops(every, every_groups, len(views), subject, exact)
    extra = every[len(views):]
    scores = np.concatenate([scores, validity_scores(extra, predicted, validity)])
    return Views(every, every_groups, scores.astype(np.float32), exact,
                 {"score": t1 - t0, "candidates": time.perf_counter() - t1}, refine=False)


def _with_covering_crops(boxes: np.ndarray, groups: np.ndarray, predicted: int, subject: Subject | None,
                         exact: list[tuple[int, int] | None]) -> tuple[np.ndarray, np.ndarray]:
    """A set model's views + the crops around the faces and hints of every ratio that got no extra views.

    The grid's hundreds of candidates leave the face rule views to choose from; a set model's N predictions
    may hold one view that keeps it, so :func:`~autocrop.faces.rules.extra_candidates` would add nothing and
    crop 2 would break the rule. The covering crops (:func:`autocrop.candidates.covering_crops`, scored
    ``max_j validity_j x IoU``) give the rule the same room as on the grid. boxes [M, 4] pixels, groups [M];
    the first ``predicted`` rows are the predictions.
    """
    from autocrop.faces import rules

    if subject is None:
        return boxes, groups
    added = [boxes]
    added_groups = [groups]
    for index, ratio in enumerate(exact):
        if (groups[predicted:] == index).any():
            continue  # extra views were added for this ratio already
        more = rules.extra_candidates(np.zeros((0, 4)), rules.for_ratio(subject, ratio), ratio)
        added.append(more)
        added_groups.append(np.full(len(more), index, dtype=np.int64))
    return np.concatenate(added), np.concatenate(added_groups)


def choose_crops(views: Views, settings: CropSettings, decoded: ReducedImage, subject: Subject | None,
                 detected: bool) -> tuple[list[Crop], list[str]]:
    """The crops of every ratio of ``settings`` from ``views`` (:func:`autocrop.faces.apply.choose`: the face rule,
    diverse top-k, refinement when ``views.refine``) and the face rule's warnings; ``detected``: faces were looked
    for. Crops are in ratio order, then rank."""
    from autocrop.faces.apply import choose, crops_of, warnings_of

    width, height = decoded.info.width, decoded.info.height
    chooser = settings if views.refine or not settings.refine else settings.with_(refine=False)
    crops: list[Crop] = []
    warnings: list[str] = []
    for index, spec in enumerate(settings.ratios):
        members = np.flatnonzero(views.groups == index)
        boxes, scores = views.boxes[members], views.scores[members]
        picks = choose(boxes, scores, chooser, views.exact[index], width, height, subject)
        crops += crops_of(picks, scores, spec.label, width, height, detected)
        warnings += warnings_of(picks, spec.label, decoded.label)
    return crops, warnings


def clip_predictions(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Predicted boxes [N, 4] (pixels, float) in whole pixels inside the photo, at least 1 px wide and high ->
    float64 [N, 4] (whole numbers: the crops are chosen on the boxes they will be)."""
    out = np.round(np.asarray(boxes, np.float64).reshape(-1, 4))
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, height)
    out[:, 0] = np.minimum(out[:, 0], width - 1.0)
    out[:, 1] = np.minimum(out[:, 1], height - 1.0)
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 1.0)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 1.0)
    return out


def exact_ratio_boxes(boxes: np.ndarray, width: int, height: int, ratio: tuple[int, int]) -> np.ndarray:
    """The best box of exactly ``ratio`` near each of ``boxes`` [N, 4] -> int64 [N, 4] pixels of the photo.

    Each box becomes the ``k a`` x ``k b`` box (``a:b`` the reduced ratio) with its centre and, as near as whole
    sizes allow, its area (the maximum-IoU box of that ratio and centre): of the two whole ``k`` around
    ``sqrt(w h / (a b))``, at most the largest that fits the photo, the one with the higher IoU; then moved
    (same size) inside the ``width`` x ``height`` photo. Every result has whole-pixel corners and the exact
    ratio, as :func:`autocrop.candidates.ratio_candidates`' boxes do.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    a, b = reduce_ratio(*ratio)
    k_max = max(1, min(int(width) // a, int(height) // b))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ideal = np.sqrt(np.maximum(w * h, 0.0) / (a * b))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    best = np.zeros((len(boxes), 4), dtype=np.int64)
    best_iou = np.full(len(boxes), -1.0)
    for k in (np.floor(ideal), np.ceil(ideal)):
        k = np.clip(k, 1, k_max).astype(np.int64)
        kw, kh = k * a, k * b
        x1 = np.clip(np.round(cx - kw / 2), 0, np.maximum(0, width - kw)).astype(np.int64)
        y1 = np.clip(np.round(cy - kh / 2), 0, np.maximum(0, height - kh)).astype(np.int64)
        candidate = np.stack([x1, y1, x1 + kw, y1 + kh], axis=1)
        iou = np.diagonal(box_iou(candidate, boxes)) if len(boxes) else np.zeros(0)
        better = iou > best_iou
        best[better], best_iou[better] = candidate[better], iou[better]
    return best

