"""Training samples: images decoded and resized once to the network input size, with their supervision.

FCDB gives one best crop per image plus pairwise human votes. We turn that into supervision for GAIC
grid candidates as follows (documented in the README):
- listwise soft targets: every grid candidate (plus the best crop itself) gets the target logit
  IoU(candidate, best crop) / tau, so the top-1 distribution concentrates on crops that overlap the
  photographer's crop most (tau = ``FCDB_IOU_TEMPERATURE``);
- pairs from the votes: each annotated pair (a, b) is scored by the network and trained with a
  RankNet-style BCE on s_a - s_b against q = votes_a / (votes_a + votes_b) (ties at q = 0.5 carry
  no direction and are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autocrop.candidates import grid_candidates
from autocrop.data.fcdb import FCDBImage
from autocrop.data.gaicd import ScoredImage
from autocrop.geometry import box_iou
from autocrop.io.decode import load_reduced
from autocrop.model.config import ModelConfig
from autocrop.model.preprocess import resize_for_model

FCDB_IOU_TEMPERATURE = 0.05


@dataclass
class TrainSample:
    """One image ready for training.

    pixels: uint8 [h, w, 3] at the network input size.
    boxes:  float32 [N, 4] candidate crops in input pixels (x1 y1 x2 y2).
    mos:    float32 [N] mean opinion scores (GAICD; or a teacher's scores when teacher_labelled) or None.
    iou_target: float32 [N] IoU of each candidate with the best crop (FCDB) or None.
    pair_a, pair_b: float32 [P, 4] voted pairs (input pixels); pair_q: float32 [P] P(a better than b).
    """

    dataset: str
    name: str
    pixels: np.ndarray
    boxes: np.ndarray
    mos: np.ndarray | None = None
    iou_target: np.ndarray | None = None
    pair_a: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    pair_b: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    pair_q: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    original_size: tuple[int, int] = (0, 0)
    teacher_labelled: bool = False  # mos holds a teacher model's scores (self-training), not human votes


def decode_resized(path: Path, config: ModelConfig) -> tuple[np.ndarray, float, float, tuple[int, int]]:
    """(uint8 [h, w, 3] at input size, scale_x, scale_y, original (w, h)) for an image file.

    Decoded exactly as the crop engine and ``Cropper.score`` decode a photo (EXIF-oriented, JPEG draft
    reduction, the same resize), so validation figures are those of the deployed path.
    Scales are input pixels per pixel of the EXIF-oriented original.
    """
    reduced = load_reduced(path, config.input_short_side)
    pixels, sx, sy = resize_for_model(reduced.image, config)
    full_w, full_h = reduced.info.width, reduced.info.height
    return pixels, sx / reduced.scale, sy / reduced.scale, (full_w, full_h)


def gaicd_sample(image: ScoredImage, config: ModelConfig) -> TrainSample:
    """A GAICD image decoded at the network input size, its annotated crops scaled to input pixels, MOS as labels."""
    pixels, sx, sy, size = decode_resized(image.path, config)
    scale = np.asarray([sx, sy, sx, sy], np.float32)
    return TrainSample("gaicd", image.name, pixels, image.boxes * scale, mos=image.scores.copy(), original_size=size)


def fcdb_sample(image: FCDBImage, config: ModelConfig) -> TrainSample:
    """An FCDB image at the network input size: grid candidates + the annotated crop (last), IoU targets, pairs."""
    pixels, sx, sy, size = decode_resized(image.path, config)
    scale = np.asarray([sx, sy, sx, sy], np.float32)
    h, w = pixels.shape[:2]
    best = np.asarray(image.best_box, np.float32) * scale
    best = np.clip(best, 0, [w, h, w, h]).astype(np.float32)
    boxes = np.concatenate([grid_candidates(w, h), best[None]], axis=0).astype(np.float32)
    pairs = [p for p in image.pairs if p.votes_a != p.votes_b]
    pair_a = np.asarray([p.box_a for p in pairs], np.float32).reshape(-1, 4) * scale
    pair_b = np.asarray([p.box_b for p in pairs], np.float32).reshape(-1, 4) * scale
    pair_q = np.asarray([p.votes_a / (p.votes_a + p.votes_b) for p in pairs], np.float32)
    clip = [w, h, w, h]
    return TrainSample(
        "fcdb",
        image.name,
        pixels,
        boxes,
        iou_target=box_iou(boxes, best[None])[:, 0].astype(np.float32),  # [N]: IoU with the best crop
        pair_a=np.clip(pair_a, 0, clip).astype(np.float32),
        pair_b=np.clip(pair_b, 0, clip).astype(np.float32),
        pair_q=pair_q,
        original_size=size,
    )
