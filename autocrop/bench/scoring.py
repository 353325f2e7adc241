"""The bench's path to the model: load once, decode each image once, score candidate boxes.

Every score the bench reports comes from :meth:`autocrop.model.ViewScorer.score` -- the same call the
crop engine makes -- on an image decoded once per photo. JPEG files are decoded with ``Image.draft``
to the smallest DCT scale whose short side still reaches the model's ``input_short_side`` (the model
resizes to that side anyway), and the boxes, given in pixels of the full-size file, are scaled by the
exact ratio of the decoded to the full size on each axis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocrop.errors import InputError, ModelError

# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse)
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass
class DecodedImage:
    """A decoded, EXIF-oriented RGB image and the size of the full-resolution photo.

    image:  PIL RGB image, possibly reduced by JPEG draft decoding.
    width, height: full-resolution (EXIF-oriented) size in pixels: the frame annotations refer to.
    """

    image: Any
    width: int
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """(decoded px per full-size px) on x and y."""
        return self.image.width / self.width, self.image.height / self.height


def decode_image(path: str | Path, min_short_side: int) -> DecodedImage:
    """Decode ``path`` once: JPEG draft to a short side >= ``min_short_side``, RGB, EXIF orientation applied.

    Raises :class:`InputError` (one line) when the file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            full_w, full_h = opened.size
            orientation = opened.getexif().get(0x0112, 1)
            if opened.format == "JPEG" and min_short_side > 0:
                opened.draft("RGB", (min_short_side, min_short_side))
            image = _orient(opened.convert("RGB"), orientation)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot decode image ({err})") from None
    if orientation in _SWAPPING_ORIENTATIONS:
        full_w, full_h = full_h, full_w
    return DecodedImage(image=image, width=full_w, height=full_h)


def _orient(image: Any, orientation: int) -> Any:
    """Apply EXIF ``orientation`` (2..8) to a PIL image."""
    from PIL import Image

    ops = {
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_270],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_90],
    }.get(orientation, [])
    for op in ops:
        image = image.transpose(op)
    return image


class BenchScorer:
    """The model, loaded once, with the timing of its load.

    ``score(decoded, boxes)``: boxes float [N, 4] ``x1 y1 x2 y2`` in full-size pixels -> float32 [N].
    """

    def __init__(self, scorer: Any, load_seconds: float = 0.0, torch_import_seconds: float = 0.0) -> None:
        self.scorer = scorer
        self.load_seconds = load_seconds
        self.torch_import_seconds = torch_import_seconds

    @classmethod
    def load(cls, model_path: str | Path | None = None) -> "BenchScorer":
        """Load ``model_path`` (``None``: the packaged default); any failure becomes a one-line :class:`ModelError`."""
        start = time.perf_counter()
        import torch  # noqa: F401  (timed apart from the model load itself)

        torch_seconds = time.perf_counter() - start
        from autocrop.model import load_scorer

        start = time.perf_counter()
        try:
            scorer = load_scorer(model_path)
        except ModelError:
            raise
        except Exception as err:  # a file that is not a model must never produce a traceback
            raise ModelError(f"{model_path}: cannot load model ({type(err).__name__}: {err})") from None
        return cls(scorer, time.perf_counter() - start, torch_seconds)

    @property
    def card(self) -> dict:
        return getattr(self.scorer, "card", None) or {}

    @property
    def input_short_side(self) -> int:
        return int(getattr(self.scorer, "input_short_side", 256))

    def decode(self, path: str | Path) -> DecodedImage:
        """Decode ``path`` once, no larger than the model needs (see :func:`decode_image`)."""
        return decode_image(path, self.input_short_side)

    def score(self, decoded: DecodedImage, boxes: np.ndarray) -> np.ndarray:
        """Model scores float32 [N] for ``boxes`` [N, 4] given in full-size pixels of ``decoded``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = decoded.scale
        scaled = (boxes * np.asarray([sx, sy, sx, sy])).astype(np.float32)
        scores = np.asarray(self.scorer.score(decoded.image, scaled), dtype=np.float32).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ModelError(f"model returned {scores.shape[0]} scores for {boxes.shape[0]} boxes")
        return scores
