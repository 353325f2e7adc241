"""The face rule and the hints inside one crop run: the glue between :mod:`autocrop.faces.rules` and the Cropper.

    subject = photo_subject(faces, width, height, settings, label)        # None: nothing constrains the crops
    boxes, groups = with_extra_candidates(boxes, groups, subject, exact_ratios, labels, photo_label)
    picks = choose(boxes_of_ratio, scores_of_ratio, settings, exact_ratio, width, height, subject)

Boxes are ``x1 y1 x2 y2`` pixels of the EXIF-oriented full-size photo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from autocrop import select
from autocrop.errors import InputError
from autocrop.faces import rules
from autocrop.faces.hints import resolve_focus, resolve_keep

if TYPE_CHECKING:
    from autocrop.faces.detect import Face
    from autocrop.results import Crop
    from autocrop.settings import CropSettings


@dataclass(frozen=True)
class Pick:
    """One chosen crop of a ratio: its candidate (index into that ratio's boxes), its final box (int64 [4]),
    the faces wholly inside it (indices into the photo's faces; None without face detection), what it
    breaks of the rule (words; empty when nothing), and why: ``unavoidable`` when no view of the ratio
    keeps the rule better (else only fewer distinct views than asked keep it); ``main``: a main face exists."""

    index: int
    box: np.ndarray
    faces: tuple[int, ...] | None
    problems: tuple[str, ...] = ()
    unavoidable: bool = True
    main: bool = False


def photo_subject(faces: Sequence[Face] | None, width: int, height: int, settings: CropSettings,
                  label: str) -> rules.Subject | None:
    """The subject of one photo (faces found, resolved hints), or None when nothing constrains its crops.

    Raises :class:`InputError` starting with ``label`` for a hint outside the photo.
    """
    keep = resolve_keep(settings.keep, width, height, label) if settings.keep else None
    focus = resolve_focus(settings.focus, width, height, label)
    subject = rules.make_subject(faces or (), width, height, keep, focus)
    return subject if subject.active else None


def with_extra_candidates(boxes: np.ndarray, groups: np.ndarray, subject: rules.Subject | None,
                          exact: Sequence[tuple[int, int] | None], ratio_labels: Sequence[str],
                          label: str) -> tuple[np.ndarray, np.ndarray]:
    """The candidates (int64 [N, 4], ratio index [N]) with :func:`rules.extra_candidates` added per ratio.

    Raises :class:`InputError` starting with ``label`` when no view of a ratio can hold every hint (a keep
    box larger than any crop of that ratio, hints too far apart).
    """
    if subject is None:
        return boxes, groups
    all_boxes, all_groups = [boxes], [groups]
    for index, ratio in enumerate(exact):
        members = boxes[groups == index]
        seen = rules.for_ratio(subject, ratio)
        extra = rules.extra_candidates(members, seen, ratio).astype(np.int64)
        known = {tuple(b) for b in members.astype(np.int64).tolist()}
        extra = extra[np.asarray([tuple(b) not in known for b in extra.tolist()], dtype=bool).reshape(-1)]
        if len(subject.keep) or subject.focus is not None:
            together = np.concatenate([members, extra], axis=0)
            if not (rules.hints_missed(together, seen) == 0).any():
                raise InputError(f"{label}: no {ratio_labels[index]} crop of this {subject.width}x{subject.height} "
                                 "photo holds every keep box and the focus point (a box larger than the largest "
                                 "crop of that ratio, or hints too far apart)")
        all_boxes.append(extra)
        all_groups.append(np.full(extra.shape[0], index, dtype=np.int64))
    return np.concatenate(all_boxes, axis=0), np.concatenate(all_groups, axis=0)


def choose(boxes: np.ndarray, scores: np.ndarray, settings: CropSettings, ratio: tuple[int, int] | None,
           width: int, height: int, subject: rules.Subject | None, top: int | None = None) -> list[Pick]:
    """The ``top`` (default ``settings.top``) crops of one ratio's scored candidates, best first.

    Without a subject: :func:`autocrop.select.select_crops` (the greedy walk of
    :func:`~autocrop.select.select_diverse` on the refined, snapped crops). With one: candidates missing a
    hint are dropped, the rest are walked by the rule's priority (:func:`rules.priority`) then by the
    focus-pulled score, views that keep the rule (main face in, no face cut) before any that breaks it even
    when they are more alike to the crops already chosen (the looser IoU thresholds), and a refined crop is
    kept only when it breaks the rule no more than its view (:func:`rules.no_worse`). Faces are seen as
    :func:`rules.for_ratio` says
    (a face too large for the ratio by its core). Prefix-stable like the functions it calls.
    """
    k = settings.top if top is None else top
    boxes = np.asarray(boxes).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if subject is None:
        chosen, final = select.select_crops(boxes, scores, k, width, height, ratio, settings.refine, settings.diversity)
        return [Pick(int(i), box, None) for i, box in zip(chosen, final)]
    subject = rules.for_ratio(subject, ratio)
    penalty = rules.penalties(boxes, subject)
    allowed = np.flatnonzero(penalty[:, 0] == 0) if (penalty[:, 0] == 0).any() else np.arange(len(boxes))
    pulled = rules.pulled_scores(boxes[allowed], scores[allowed], subject)
    priority = rules.priority(penalty[allowed])
    keeps = (penalty[allowed, 1:4] == 0).all(axis=1)  # main face in, no face cut
    chosen, final = select.select_crops(boxes[allowed], pulled, k, width, height, ratio, settings.refine,
                                        settings.diversity, priority=priority, rounds=(~keeps).astype(np.int64),
                                        accept=lambda new, view: rules.no_worse(new, view, subject))
    inside, _ = rules.face_states(final, subject)
    final_penalty = rules.penalties(final, subject)
    best = penalty[allowed][int(np.argmin(priority))] if len(allowed) else np.zeros(5, dtype=np.int64)
    unavoidable = bool(rules.violations(best))
    return [Pick(int(allowed[i]), box, tuple(int(j) for j in np.flatnonzero(inside[n])),
                 tuple(rules.violations(final_penalty[n])), unavoidable, subject.main >= 0)
            for n, (i, box) in enumerate(zip(chosen, final))]



def choose_scored(boxes: np.ndarray, scores: np.ndarray, score: Callable[[np.ndarray], np.ndarray],
                  settings: CropSettings, ratio: tuple[int, int] | None, width: int, height: int,
                  subject: rules.Subject | None, label: str, top: int = 1) -> np.ndarray:
    """:func:`choose` for caller-given candidates of one ratio (the bench) -> int64 [<= top, 4] pixels.

    Extra views, when the rule adds any, are scored by ``score(float32 [M, 4] px of the photo) -> [M]``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    groups = np.zeros(boxes.shape[0], dtype=np.int64)
    ratio_label = "free" if ratio is None else f"{ratio[0]}:{ratio[1]}"
    every, _ = with_extra_candidates(boxes, groups, subject, [ratio], [ratio_label], label)
    if every.shape[0] > boxes.shape[0]:
        extra = np.asarray(score(every[boxes.shape[0]:].astype(np.float32)), dtype=np.float64).reshape(-1)
        scores = np.concatenate([scores, extra])
    picks = choose(every, scores, settings, ratio, width, height, subject, top=top)
    return np.asarray([p.box for p in picks], dtype=np.int64).reshape(-1, 4)


def crops_of(picks: Sequence[Pick], scores: np.ndarray, ratio_label: str, width: int, height: int,
             detected: bool) -> list[Crop]:
    """The :class:`~autocrop.results.Crop` of each pick of one ratio (rank = order; score = its view's);
    ``detected``: faces were looked for (a crop then lists the faces inside it, () when none)."""
    from autocrop.results import Crop

    crops = []
    for rank, pick in enumerate(picks, start=1):
        x1, y1, x2, y2 = (int(v) for v in pick.box)
        crops.append(Crop(rank=rank, ratio=ratio_label, box=(x1, y1, x2, y2),
                          box_norm=(x1 / width, y1 / height, x2 / width, y2 / height), width=x2 - x1,
                          height=y2 - y1, score=float(scores[pick.index]),
                          faces=pick.faces if pick.faces is not None or not detected else ()))
    return crops


def warnings_of(picks: Sequence[Pick], ratio_label: str, label: str) -> list[str]:
    """One line per pick that breaks the face rule, e.g. "a.jpg: 9:16 crop 1 cuts 2 faces (no 9:16 crop ...)"."""
    lines = []
    for rank, pick in enumerate(picks, start=1):
        if not pick.problems:
            continue
        if not pick.unavoidable:
            why = f"fewer {ratio_label} crops than asked keep the face rule"
        elif pick.main:
            why = f"no {ratio_label} crop of this photo holds the main face without cutting a face"
        else:
            why = f"no {ratio_label} crop of this photo avoids it"
        lines.append(f"{label}: {ratio_label} crop {rank} {' and '.join(pick.problems)} ({why})")
    return lines
