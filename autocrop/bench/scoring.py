"""The bench's path to the model: the crop engine's own decode and score steps, model loaded once.

Every score the bench reports comes from :class:`autocrop.engine.Engine` -- the code path of
``autocrop crop`` and ``Cropper``: :meth:`Engine.decode` decodes each photo once, EXIF-oriented, at
reduced size (JPEG ``Image.draft`` to a short side >= the model's input side, see
:func:`autocrop.imageio.load_reduced`), and :meth:`Engine.score_boxes` scores all candidates in one
forward pass. Candidate boxes are kept in pixels of the full-size oriented photo (where the
annotations live) and divided by the decode scale only for scoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocrop.errors import AutocropError, ModelError


@dataclass
class DecodedImage:
    """One decoded photo.

    reduced: :class:`autocrop.imageio.ReducedImage` (RGB image at reduced size + ``scale``, original
             pixels per reduced pixel).
    width, height: full-size EXIF-oriented size in pixels (the frame annotations and candidates use).
    """

    reduced: Any
    width: int
    height: int

    @property
    def scale(self) -> float:
        return float(self.reduced.scale)


class BenchScorer:
    """The engine with its model loaded once, and how long loading took.

    ``score(decoded, boxes)``: boxes float [N, 4] ``x1 y1 x2 y2`` in full-size pixels -> float32 [N].
    """

    def __init__(self, engine: Any, load_seconds: float = 0.0, torch_import_seconds: float = 0.0) -> None:
        self.engine = engine
        self.load_seconds = load_seconds
        self.torch_import_seconds = torch_import_seconds

    @classmethod
    def load(cls, model_path: str | Path | None = None, device: str = "cpu", threads: int | None = None) -> "BenchScorer":
        """Load ``model_path`` (``None``: the packaged default); a failure becomes a one-line :class:`ModelError`.

        threads: torch intra-op threads (None: ``$AUTOCROP_THREADS`` or torch's default), as in the engine.
        """
        start = time.perf_counter()
        import torch  # noqa: F401  (timed apart from the model load itself)

        torch_seconds = time.perf_counter() - start
        from autocrop.engine import Engine

        engine = Engine(model=model_path, device=device, threads=threads)
        start = time.perf_counter()
        try:
            engine.scorer  # noqa: B018  (loads the model now, so the load is timed here)
        except AutocropError:
            raise
        except Exception as err:  # a file that is not a model must never produce a traceback
            raise ModelError(f"{model_path}: cannot load model ({type(err).__name__}: {err})") from None
        return cls(engine, time.perf_counter() - start, torch_seconds)

    @classmethod
    def from_scorer(cls, scorer: Any) -> "BenchScorer":
        """Wrap an already built scorer (e.g. ``ViewScorer.untrained()`` in tests) in the engine."""
        from autocrop.engine import Engine

        return cls(Engine(scorer=scorer))

    @property
    def model(self) -> Any:
        return self.engine.scorer

    @property
    def card(self) -> dict:
        return getattr(self.model, "card", None) or {}

    @property
    def weights_path(self) -> Path | None:
        return getattr(self.model, "weights_path", None)

    def decode(self, path: str | Path) -> DecodedImage:
        """Decode ``path`` once, no larger than the model needs; :class:`InputError` when unreadable."""
        reduced = self.engine.decode(path)
        return DecodedImage(reduced=reduced, width=int(reduced.info.width), height=int(reduced.info.height))

    def score(self, decoded: DecodedImage, boxes: np.ndarray) -> np.ndarray:
        """Model scores float32 [N] for ``boxes`` [N, 4] given in full-size pixels of ``decoded``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = self.engine.score_boxes(decoded.reduced.image, (boxes / decoded.scale).astype(np.float32))
        return np.asarray(scores, dtype=np.float32).reshape(-1)
