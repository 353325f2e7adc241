"""The subject rule: which candidate views may win, given the faces found and the user's hints (plain functions).

All boxes are ``x1 y1 x2 y2`` in pixels of the EXIF-oriented full-size photo.

* **Grown faces.** A detected face box (forehead to chin) is grown for hair and chin: :data:`GROW_TOP`
  (40 %) of its height above, :data:`GROW_BOTTOM` (15 %) below, :data:`GROW_SIDE` (15 %) of its width
  on each side, clipped to the photo.
* **Inside, outside, cut.** A crop holds a grown face when at least ``1 - CUT_TOLERANCE`` (95 %) of the
  grown box's area is inside it, leaves it out when at most :data:`CUT_TOLERANCE` (5 %) is; anything
  between is a cut.
* **Main face and group.** The main face is the tallest face whose box is at least :data:`MAIN_MIN_HEIGHT`
  (4 %) of the photo's short side; the group is the faces at least :data:`GROUP_MIN_HEIGHT` (half) as
  tall as the main face (the main face included). Smaller faces are background: never cut, may be left out.
* **Faces larger than the ratio allows.** A grown face wider or taller than the largest crop of the asked
  ratio cannot be held; for that ratio it is replaced by its centred core, at most :data:`CORE_FRACTION`
  (90 %) of the largest crop's width and height (:func:`for_ratio`), so the crop centres on the face
  instead of leaving it out.
* **Hints.** Every ``keep`` box must lie wholly inside a crop, and the ``focus`` point too (hard rule).
* **Order.** Candidates are ranked by their penalties, compared in this order (:func:`penalties`):
  hints missed, main face not inside, group faces cut, background faces cut, group faces not inside;
  the model's score (with the focus pull, :func:`pulled_scores`) orders views of equal penalties.
  So a view that holds the main face, cuts no face and holds the whole group wins whenever there is one.
  When every view holding the main face cuts another face (two people one above the other, seen through
  a 16:9 crop), the main face still wins: of those views, the one cutting the fewest group faces, then
  the fewest background faces, is chosen and the result carries a warning (:func:`violations`).

:func:`extra_candidates` adds views where a ratio's candidates have none without penalty: crops of that
ratio around the group, the main face and all faces (with the hints) at several sizes, and each view
that cuts a face moved so that the face is wholly in or wholly out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from autocrop.candidates import covering_crops, repaired_crops
from autocrop.geometry import reduce_ratio, unique_rows, unique_values

if TYPE_CHECKING:
    from autocrop.faces.detect import Face

GROW_TOP, GROW_BOTTOM, GROW_SIDE = 0.40, 0.15, 0.15  # fractions of the face box's height / width
CUT_TOLERANCE = 0.05  # fraction of a grown face's area that may be on the other side of a crop edge
MAIN_MIN_HEIGHT = 0.04  # the main face is at least this fraction of the photo's short side tall
GROUP_MIN_HEIGHT = 0.5  # faces at least this fraction of the main face's height are kept together with it
FOCUS_PULL = 1.0  # score penalty per unit of focus offset, in standard deviations of the ratio's scores
CORE_FRACTION = 0.9  # a face too large for a ratio must keep its centre: this share of the largest crop's size
HINT_TOLERANCE = 0.5  # px a hint may cross a crop edge (crops have whole-pixel corners, hints need not)
MAX_EXTRA = 400  # extra views per ratio at most (evenly thinned beyond)
PENALTY_NAMES = ("hints_missed", "main_out", "group_cut", "background_cut", "group_out")


@dataclass(frozen=True)
class Subject:
    """What one photo's crops must respect (pixels of the photo).

    faces: float64 [F, 4] grown face boxes, in the order of the detected faces. main: index of the main
    face or -1. group: bool [F], the faces kept together with the main face (main included; all False
    without a main face). keep: float64 [K, 4] boxes that must be inside. focus: (x, y) or None.
    """

    width: int
    height: int
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    main: int = -1
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    keep: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    focus: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        """Whether anything constrains the crops."""
        return bool(len(self.faces) or len(self.keep) or self.focus is not None)


def grow_faces(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Face boxes [F, 4] -> float64 [F, 4] grown for hair and chin (module margins), clipped to the photo."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    grown = np.stack([boxes[:, 0] - GROW_SIDE * w, boxes[:, 1] - GROW_TOP * h,
                      boxes[:, 2] + GROW_SIDE * w, boxes[:, 3] + GROW_BOTTOM * h], axis=1)
    grown[:, [0, 2]] = np.clip(grown[:, [0, 2]], 0, width)
    grown[:, [1, 3]] = np.clip(grown[:, [1, 3]], 0, height)
    return grown


def make_subject(faces: Sequence[Face], width: int, height: int, keep: np.ndarray | None = None,
                 focus: tuple[float, float] | None = None) -> Subject:
    """The :class:`Subject` of a ``width`` x ``height`` photo: detected ``faces`` (photo pixels) and the
    resolved hints (pixels; see :mod:`autocrop.faces.hints`)."""
    raw = np.asarray([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
    heights = raw[:, 3] - raw[:, 1]
    main = int(np.argmax(heights)) if len(faces) else -1
    if main >= 0 and heights[main] < MAIN_MIN_HEIGHT * min(width, height):
        main = -1
    group = heights >= GROUP_MIN_HEIGHT * heights[main] if main >= 0 else np.zeros(len(faces), dtype=bool)
    keep_boxes = np.zeros((0, 4)) if keep is None else np.asarray(keep, dtype=np.float64).reshape(-1, 4)
    return Subject(width, height, grow_faces(raw, width, height), main, group, keep_boxes, focus)


def for_ratio(subject: Subject, ratio: tuple[int, int] | None) -> Subject:
    """``subject`` as crops of ``ratio`` (None: free) see it: each grown face wider or taller than the largest
    crop of that ratio becomes its centred core, at most :data:`CORE_FRACTION` of that crop's width and height."""
    if ratio is None or not len(subject.faces):
        return subject
    a, b = reduce_ratio(*ratio)
    k = min(subject.width // a, subject.height // b)
    max_w, max_h = k * a, k * b
    faces = subject.faces.copy()
    w, h = faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]
    big = (w > max_w) | (h > max_h)
    if not big.any():
        return subject
    cx, cy = (faces[:, 0] + faces[:, 2]) / 2, (faces[:, 1] + faces[:, 3]) / 2
    half_w, half_h = np.minimum(w, CORE_FRACTION * max_w) / 2, np.minimum(h, CORE_FRACTION * max_h) / 2
    faces[big] = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)[big]
    return replace(subject, faces=faces)


def inside_fraction(crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each box's area inside each crop -> float64 [N, M] (crops [N, 4], boxes [M, 4]; empty box: 1)."""
    a = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.where(area[None, :] > 0, iw * ih / np.maximum(area[None, :], 1e-12), 1.0)


def face_states(crops: np.ndarray, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """(inside, cut): bool [N, F] per crop and grown face (see the module's tolerance)."""
    frac = inside_fraction(crops, subject.faces)
    inside = frac >= 1.0 - CUT_TOLERANCE
    return inside, ~inside & (frac > CUT_TOLERANCE)


def hints_missed(crops: np.ndarray, subject: Subject) -> np.ndarray:
    """Number of hints (keep boxes, focus point) not wholly inside each crop (0.5 px tolerance) -> int64 [N]."""
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    eps = HINT_TOLERANCE
    missed = np.zeros(crops.shape[0], dtype=np.int64)
    for x1, y1, x2, y2 in subject.keep:
        missed += ~((crops[:, 0] <= x1 + eps) & (crops[:, 1] <= y1 + eps)
                    & (crops[:, 2] >= x2 - eps) & (crops[:, 3] >= y2 - eps))
    if subject.focus is not None:
        fx, fy = subject.focus
        missed += ~((crops[:, 0] <= fx + eps) & (fx - eps <= crops[:, 2])
                    & (crops[:, 1] <= fy + eps) & (fy - eps <= crops[:, 3]))
    return missed


def penalties(crops: np.ndarray, subject: Subject) -> np.ndarray:
    """int64 [N, 5] penalties of each crop, compared left to right (see :data:`PENALTY_NAMES`); 0 = none."""
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    inside, cut = face_states(crops, subject)
    group = subject.group
    main_out = (~inside[:, subject.main]).astype(np.int64) if subject.main >= 0 else np.zeros(len(crops), np.int64)
    return np.stack([hints_missed(crops, subject), main_out, cut[:, group].sum(axis=1),
                     cut[:, ~group].sum(axis=1), (~inside[:, group]).sum(axis=1)], axis=1).astype(np.int64)


def priority(penalty: np.ndarray) -> np.ndarray:
    """Dense lexicographic rank of penalty rows [N, P] -> int64 [N] (0 = the least penalised)."""
    penalty = np.asarray(penalty, dtype=np.int64)
    if penalty.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(penalty, axis=0, return_inverse=True)  # unique rows come sorted lexicographically
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def pulled_scores(crops: np.ndarray, scores: np.ndarray, subject: Subject) -> np.ndarray:
    """Scores with the focus pull: ``score - FOCUS_PULL * std(scores) * d`` -> float64 [N].

    ``d`` is the distance from the crop's centre to the focus point divided by half the crop's diagonal
    (0 at the centre, 1 at a corner). Without a focus point the scores are returned unchanged.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if subject.focus is None or scores.size == 0:
        return scores
    crops = np.asarray(crops, dtype=np.float64).reshape(-1, 4)
    cx, cy = (crops[:, 0] + crops[:, 2]) / 2, (crops[:, 1] + crops[:, 3]) / 2
    half_diagonal = np.hypot(crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]) / 2
    d = np.hypot(cx - subject.focus[0], cy - subject.focus[1]) / np.maximum(half_diagonal, 1e-9)
    spread = float(scores.std()) or 1.0
    return scores - FOCUS_PULL * spread * d


def no_worse(box: np.ndarray, than: np.ndarray, subject: Subject) -> bool:
    """Whether ``box`` is penalised no more than ``than`` (lexicographically): refinement may move a view there."""
    both = penalties(np.stack([np.asarray(box, np.float64), np.asarray(than, np.float64)]), subject)
    return tuple(both[0]) <= tuple(both[1])


def violations(penalty: np.ndarray) -> list[str]:
    """What a chosen crop's penalty row breaks, in words (empty when it keeps the rule)."""
    found = []
    cut = int(penalty[2] + penalty[3])
    if cut:
        found.append(f"cuts {cut} face{'s' if cut > 1 else ''}")
    if penalty[1]:
        found.append("leaves the main face out")
    return found


def extra_candidates(boxes: np.ndarray, subject: Subject, ratio: tuple[int, int] | None) -> np.ndarray:
    """Views to add to one ratio's candidates ``boxes`` [N, 4] -> float64 [M, 4] whole pixels (may be empty).

    Only when none of ``boxes`` is free of penalties: crops of ``ratio`` (None: free) around the hints with the
    group, the main face, all faces, or nothing else (:func:`autocrop.candidates.covering_crops`), and the
    views that cut a face moved to hold it or leave it (:func:`autocrop.candidates.repaired_crops`).
    At most :data:`MAX_EXTRA`, thinned evenly.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not subject.active or (boxes.shape[0] and int(penalties(boxes, subject).sum(axis=1).min()) == 0):
        return np.zeros((0, 4))
    width, height = subject.width, subject.height
    found: list[np.ndarray] = []
    for target in _targets(subject):
        found.append(covering_crops(target, width, height, ratio))
    if len(subject.faces):
        _, cut = face_states(boxes, subject)
        found.append(repaired_crops(boxes, cut, subject.faces, width, height, ratio))
    extra = np.round(np.concatenate(found, axis=0)) if found else np.zeros((0, 4))
    extra = extra[(extra[:, 2] > extra[:, 0]) & (extra[:, 3] > extra[:, 1])]
    extra = unique_rows(extra)
    if extra.shape[0] > MAX_EXTRA:
        extra = extra[unique_values(np.round(np.linspace(0, extra.shape[0] - 1, MAX_EXTRA)).astype(np.int64))]
    return extra


def _targets(subject: Subject) -> list[np.ndarray]:
    """Boxes the extra crops are laid around: hints with the group / the main face / all faces / alone."""
    hints = list(subject.keep)
    if subject.focus is not None:
        fx, fy = subject.focus
        hints.append(np.array([fx, fy, fx, fy]))
    sets: list[list[np.ndarray]] = []
    if subject.main >= 0:
        sets.append(hints + list(subject.faces[subject.group]))
        sets.append(hints + [subject.faces[subject.main]])
    if len(subject.faces):
        sets.append(hints + list(subject.faces))
    if hints:
        sets.append(hints)
    out: list[np.ndarray] = []
    for members in sets:
        arr = np.asarray(members, dtype=np.float64).reshape(-1, 4)
        union = np.array([arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])
        if not any(np.array_equal(union, seen) for seen in out):
            out.append(union)
    return out
