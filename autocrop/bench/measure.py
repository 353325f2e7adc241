"""One model on one benchmark photo: scores of the candidates, the crops ``autocrop crop`` writes, timings.

Both model families go through :class:`~autocrop.cropper.Cropper`, the code path of ``autocrop crop``:

* a **grid** model scores the candidates in one forward pass (:meth:`Cropper.score`); on FCDB / FLMS its
  top-3 free crops are :meth:`Cropper.choose` of those scores (face rule, diverse top-k, refinement; the first
  is the top-1, prefix-stable) and its unrefined view is the best candidate itself;
* a **set** model: on GAICD each annotated candidate is scored ``max_j validity_j x IoU(candidate, pred_j)``
  (:meth:`Cropper.score` -> ``SetScorer.score``); on FCDB / FLMS its top-3 free crops are
  :meth:`Cropper.analyze` (one forward pass; the predictions are the views) and its unrefined view is its most
  valid prediction (no face rule), in whole pixels.

Boxes are ``x1 y1 x2 y2`` pixels of the EXIF-oriented full-size photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from autocrop.ratios import FREE
from autocrop.views import is_set_model

if TYPE_CHECKING:
    from autocrop.cropper import Cropper
    from autocrop.io.decode import ReducedImage
    from autocrop.settings import CropSettings


@dataclass
class Measured:
    """What one model did with one photo.

    scores: float32 [M] of the candidates (None for a set model on FCDB / FLMS: it scores none);
    top: float64 [<= 3, 4] the top-3 free crops, best first (None on GAICD); unrefined: float64 [4] (None on
    GAICD); score_s: seconds of the forward pass; views_s: seconds from the decoded photo to its scored views
    (the grid's candidates excluded: they are made before); count: views scored.
    """

    scores: np.ndarray | None
    top: np.ndarray | None
    unrefined: np.ndarray | None
    score_s: float
    views_s: float
    count: int


def measure(cropper: Cropper, decoded: ReducedImage, boxes: np.ndarray, box_dataset: bool,
            settings: CropSettings) -> Measured:
    """``cropper``'s model on ``decoded`` (candidates ``boxes`` [M, 4]); ``box_dataset``: FCDB / FLMS (top-1
    crops), else GAICD (scores). ``settings``: the cropper's (refine, diversity, faces); top 3, free ratio.

    Raises :class:`~autocrop.errors.UsageError` when ``boxes`` do not fit the photo.
    """
    import time

    top3 = settings.with_(ratios=(FREE,), top=3)
    if box_dataset and is_set_model(cropper.scorer):
        made = cropper.analyze(decoded, top3)
        top = np.asarray([c.box for c in made.crops], dtype=np.float64).reshape(-1, 4)
        if made.faces or top3.keep or top3.focus is not None:  # the face rule or a hint may move the top crop
            view = cropper.analyze(decoded, top3.with_(top=1, refine=False, faces=False))
            unrefined = np.asarray(view.crops[0].box, dtype=np.float64)
        else:  # nothing constrains the crops and set views are not refined: crop 1 is the most valid prediction
            unrefined = top[0].copy()
        views_s = made.timings["score"] + made.timings["candidates"]
        return Measured(None, top, unrefined, made.timings["score"], views_s, made.candidates)
    start = time.perf_counter()
    scores = cropper.score(decoded, boxes)
    score_s = time.perf_counter() - start
    if not box_dataset:
        return Measured(scores, None, None, score_s, score_s, len(boxes))
    unrefined = np.asarray(boxes, dtype=np.float64)[int(np.argmax(scores))]
    top = cropper.choose(decoded, boxes, scores, top3, top=3).astype(np.float64)
    return Measured(scores, top, unrefined, score_s, score_s, len(boxes))
