"""Face detection with the packaged YuNet model on onnxruntime: preprocessing, output decoding and NMS (numpy only).

    detector = YuNetDetector()                 # the session opens on first use
    faces = detector.detect(reduced_rgb, scale=decoded.scale)   # boxes in pixels of the full-size photo

YuNet is anchor-free: for each stride s in 8, 16, 32 and each cell (row r, column c) of the input
divided by s, it gives a class score ``cls``, an objectness ``obj``, a box ``dx dy lw lh`` and five
landmarks. A face's score is ``sqrt(cls * obj)`` (both clipped to 0..1); its box is centred at
``((c + dx) * s, (r + dy) * s)`` with size ``(exp(lw) * s, exp(lh) * s)``. Boxes above
:data:`SCORE_THRESHOLD` go through greedy non-maximum suppression (:data:`NMS_IOU`).

Input: the photo's reduced image (the one the ranking model sees, EXIF-oriented RGB), shrunk so its long
side is at most :data:`DETECT_LONG_SIDE` pixels, as BGR float32 0..255 (the layout YuNet was trained on),
zero-padded at the right and bottom to multiples of 32. Faces smaller than about 10 px at that size
(about 2 % of the photo's long side) are not found.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from autocrop.faces.model import DETECTOR_FILE, open_session

if TYPE_CHECKING:
    from PIL import Image

STRIDES = (8, 16, 32)
SIZE_MULTIPLE = 32
DETECT_LONG_SIDE = 640  # px: a reduced image with a longer side is shrunk (see docs/faces.md: cost vs faces found)
SHRINK_LONG_SIDE = 512  # px of the long side it is shrunk to
SCORE_THRESHOLD = 0.6  # sqrt(cls * obj) of a kept face
NMS_IOU = 0.3  # a face overlapping a better one by more than this IoU is the same face
MAX_FACES = 100  # faces kept per photo, best first


@dataclass(frozen=True)
class Face:
    """A detected face.

    box:   (x1, y1, x2, y2) pixels of the EXIF-oriented full-size photo (floats; the face itself, forehead
           to chin, as YuNet draws it: :mod:`autocrop.faces.rules` grows it for hair and chin).
    score: the detector's confidence, 0..1.
    """

    box: tuple[float, float, float, float]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"box": [x1, y1, x2, y2] whole pixels, "score": 0.93}``."""
        return {"box": [int(round(v)) for v in self.box], "score": round(float(self.score), 4)}


class FaceDetector(Protocol):
    """What the Cropper needs from a face detector (tests pass fixed faces through this)."""

    def detect(self, image: Image.Image, scale: float = 1.0) -> tuple[Face, ...]:
        """Faces in ``image`` (RGB), boxes in pixels of ``image`` times ``scale`` (pixels of the full photo)."""
        ...


def detector_input(image: Image.Image, long_side: int = DETECT_LONG_SIDE) -> tuple[np.ndarray, int, int]:
    """``image`` as YuNet's input -> (float32 [1, 3, H, W] BGR 0..255, width, height).

    Taken as it is when its long side is at most ``long_side`` px (never enlarged); a larger image is
    shrunk to :data:`SHRINK_LONG_SIDE` (box filter). Zero-padded at the right and bottom to multiples
    of 32; ``width`` x ``height`` is the unpadded part (px of the input).
    """
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > long_side:
        factor = max(rgb.size) / min(long_side, SHRINK_LONG_SIDE)
        size = (max(1, round(rgb.width / factor)), max(1, round(rgb.height / factor)))
        rgb = rgb.resize(size, PILImage.Resampling.BOX)
    width, height = rgb.size
    pad_w = -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE
    pad_h = -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE
    blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
    blob[0, :, :height, :width] = np.asarray(rgb)[:, :, ::-1].transpose(2, 0, 1)  # RGB HWC -> BGR CHW
    return blob, width, height


def decode_outputs(outputs: dict[str, np.ndarray], height: int, width: int,
                   score_threshold: float = SCORE_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """YuNet's raw outputs for an input of ``height`` x ``width`` px (multiples of 32) -> boxes and scores.

    outputs: ``cls_S``, ``obj_S``, ``bbox_S`` for S in 8, 16, 32 (shapes [1, H/S * W/S, 1|1|4]).
    Returns float64 [N, 4] ``x1 y1 x2 y2`` px of the input and float64 [N] scores, for the cells whose
    score ``sqrt(clip(cls) * clip(obj))`` is at least ``score_threshold`` (no suppression yet).
    """
    all_boxes, all_scores = [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        cls = np.clip(np.asarray(outputs[f"cls_{stride}"], dtype=np.float64).reshape(-1), 0.0, 1.0)
        obj = np.clip(np.asarray(outputs[f"obj_{stride}"], dtype=np.float64).reshape(-1), 0.0, 1.0)
        if cls.size != rows * cols or obj.size != rows * cols:
            raise ValueError(f"stride {stride}: {cls.size} cells for a {rows}x{cols} grid")
        score = np.sqrt(cls * obj)
        hit = np.flatnonzero(score >= score_threshold)
        if hit.size == 0:
            continue
        bbox = np.asarray(outputs[f"bbox_{stride}"], dtype=np.float64).reshape(-1, 4)[hit]
        r, c = np.divmod(hit, cols)
        cx, cy = (c + bbox[:, 0]) * stride, (r + bbox[:, 1]) * stride
        w, h = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
        all_boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        all_scores.append(score[hit])
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.concatenate(all_boxes), np.concatenate(all_scores)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU, limit: int = MAX_FACES) -> np.ndarray:
    """Greedy non-maximum suppression -> int64 indices of the kept boxes, best score first (at most ``limit``)."""
    from autocrop.geometry import box_iou

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    kept: list[int] = []
    suppressed = np.zeros(order.size, dtype=bool)
    for i in range(order.size):
        if suppressed[i]:
            continue
        kept.append(int(order[i]))
        if len(kept) >= limit:
            break
        suppressed |= iou[i] > iou_threshold
    return np.asarray(kept, dtype=np.int64)


class YuNetDetector:
    """The packaged YuNet face detector (thread-safe; its onnxruntime session opens on first use).

    model: the .onnx file (its card beside it must hold its sha256). score_threshold / nms_iou / long_side:
    see the module constants. Raises :class:`~autocrop.errors.ModelError` (one line) when the file is
    damaged or onnxruntime is missing.
    """

    def __init__(self, model: str | Path | None = None, score_threshold: float = SCORE_THRESHOLD,
                 nms_iou: float = NMS_IOU, long_side: int = DETECT_LONG_SIDE) -> None:
        self.model = Path(model) if model is not None else DETECTOR_FILE
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.long_side = int(long_side)
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The onnxruntime session (opened once, under a lock)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = open_session(self.model)
        return self._session

    def detect(self, image: Image.Image, scale: float = 1.0) -> tuple[Face, ...]:
        """Faces in ``image`` (RGB), best first; boxes in pixels of ``image`` times ``scale``, inside the image."""
        session = self.session
        blob, width, height = detector_input(image, self.long_side)
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(names, {session.get_inputs()[0].name: blob})))
        boxes, scores = decode_outputs(outputs, blob.shape[2], blob.shape[3], self.score_threshold)
        keep = nms(boxes, scores, self.nms_iou)
        boxes = boxes[keep]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        boxes *= np.array([image.width / width, image.height / height] * 2) * float(scale)
        return tuple(Face(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s))
                     for b, s in zip(boxes, scores[keep]) if b[2] - b[0] >= 1 and b[3] - b[1] >= 1
                     and math.isfinite(float(s)))
