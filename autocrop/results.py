"""What a crop run returns: :class:`Crop` and :class:`CropResult` (frozen), and their one JSON schema.

Boxes are always ``x1 y1 x2 y2`` integer pixels of the EXIF-oriented photo (``box``; x2/y2 exclusive)
and the same divided by the photo's width/height (``box_norm``, 0..1).

JSON (``CropResult.to_dict()``; the crop command prints ``{"results": [...], "failed": N, "dry_run": bool}``)::

    {"input": "photo.jpg", "width": 800, "height": 538, "format": "JPEG", "candidates": 89,
     "faces": [{"box": [x1, y1, x2, y2], "score": 0.93}],
     "crops": [{"rank": 1, "ratio": "16:9", "box": [x1, y1, x2, y2], "box_norm": [...],
                "width": 768, "height": 432, "score": 0.41, "faces": [0], "path": "photo.crop1.jpg",
                "exists": false}],
     "warnings": [], "preview": null, "error": null}

``exists`` is only present in a dry run: whether the planned file is already there. ``faces`` (the
result's) lists the faces found, best first, boxes in whole pixels of the photo (the face itself, not
grown); it is null when face detection was off. A crop's ``faces`` are the indices of the faces wholly
inside it (null when detection was off). ``warnings``: one line per crop that could not keep the face
rule (it cuts a face, or leaves the main face out, because no crop of that ratio could avoid it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.faces.detect import Face


@dataclass(frozen=True)
class Crop:
    """One chosen crop.

    rank:     1 = best, per ratio (the order of choice; see :func:`autocrop.select.select_diverse`).
    ratio:    the asked ratio's label ("16:9", "original", "free").
    box:      (x1, y1, x2, y2) integer pixels of the EXIF-oriented photo.
    box_norm: ``box`` divided by the photo's width/height (floats in 0..1).
    width, height: pixel size of the output (the box's size, or after ``size``/``long_edge`` resizing).
    score:    the model's score of the candidate view the crop was refined from (higher is better;
              comparable within one photo only).
    path:     the written (or, in a dry run, the planned) output file; None when nothing is planned.
    exists:   dry runs only: whether ``path`` exists already (None otherwise).
    image:    the cropped pixels when the caller asked for images instead of files (not in JSON).
    faces:    indices into :attr:`CropResult.faces` of the faces wholly inside the crop (their grown
              boxes, see :mod:`autocrop.faces.rules`); None when faces were not detected.
    """

    rank: int
    ratio: str
    box: tuple[int, int, int, int]
    box_norm: tuple[float, float, float, float]
    width: int
    height: int
    score: float
    path: Path | None = None
    exists: bool | None = None
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    faces: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rank": self.rank,
            "ratio": self.ratio,
            "box": list(self.box),
            "box_norm": [round(v, 6) for v in self.box_norm],
            "width": self.width,
            "height": self.height,
            "score": round(float(self.score), 6),
            "faces": list(self.faces) if self.faces is not None else None,
            "path": str(self.path) if self.path is not None else None,
        }
        if self.exists is not None:
            data["exists"] = self.exists
        return data


@dataclass(frozen=True)
class CropResult:
    """The crops chosen for one photo.

    source:  the input: its path, or a label such as "<stdin>" for photos given in memory.
    width, height: its EXIF-oriented size in pixels. format: Pillow's format name of the input.
    crops:   best first within each asked ratio (ratios in the order asked).
    candidates: how many views were scored.
    timings: seconds per stage ("decode", "faces", "candidates", "score", "select", after writing "write").
    preview: the preview PNG, when one was written (or planned, in a dry run).
    faces:   the faces found (:class:`autocrop.faces.Face`, boxes in pixels of the photo), best first;
             None when face detection was off.
    warnings: one line per crop that breaks the face rule because no crop of its ratio could keep it.
    """

    source: str
    width: int
    height: int
    format: str
    crops: tuple[Crop, ...]
    candidates: int = 0
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    preview: Path | None = None
    faces: tuple[Face, ...] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def paths(self) -> list[Path]:
        """The output files of the crops (written or planned), in order."""
        return [c.path for c in self.crops if c.path is not None]

    @property
    def images(self) -> list[Image.Image]:
        """The cropped pixels, when the call returned images (empty otherwise)."""
        return [c.image for c in self.crops if c.image is not None]

    def with_crops(self, crops: list[Crop] | tuple[Crop, ...], **changes: Any) -> CropResult:
        """A copy with other crops (and other fields changed); timings are carried over."""
        return replace(self, crops=tuple(crops), timings=dict(self.timings), **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.source,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "candidates": self.candidates,
            "faces": [f.to_dict() for f in self.faces] if self.faces is not None else None,
            "crops": [c.to_dict() for c in self.crops],
            "warnings": list(self.warnings),
            "preview": str(self.preview) if self.preview is not None else None,
            "error": None,
        }


def failure_dict(source: str, error: str) -> dict[str, Any]:
    """The JSON entry of an input that failed (same keys as :meth:`CropResult.to_dict`)."""
    return {"input": source, "width": None, "height": None, "format": None, "candidates": 0, "faces": None,
            "crops": [], "warnings": [], "preview": None, "error": error}
