"""The Python API, mirroring ``autocrop crop``.

    from autocrop import Cropper

    cropper = Cropper()                                   # packaged model, CPU; loaded on first use
    result = cropper.crop("photo.jpg", ratio="16:9", top=3)          # writes photo.crop1.jpg ...
    for crop in result.crops:
        print(crop.rank, crop.box, crop.width, crop.height, crop.score, crop.path)

    result = cropper.crop("photo.jpg", ratio=["1:1", "4:5"], top=2, write=False)   # nothing written
    images = cropper.render(result)                       # the crops as PIL images

    scores = cropper.score("photo.jpg", [[0, 0, 800, 450], [100, 50, 900, 500]])  # your own boxes

Coordinates: every box is ``x1 y1 x2 y2`` in pixels of the *EXIF-oriented* photo (as a viewer shows
it), x2/y2 exclusive; ``box_norm`` is the same divided by the photo's width/height.
The API uses built-in defaults; it does not read the user's config file or AUTOCROP_* variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autocrop import imageio
from autocrop.engine import (
    DEFAULT_NAME,
    DEFAULT_QUALITY,
    Crop,
    CropResult,
    Engine,
    OutputOptions,
    Scorer,
    check_options,
    check_top,
    parse_ratios,
    parse_size,
    ratios_for_size,
)
from autocrop.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["Crop", "CropResult", "Cropper"]


class Cropper:
    """Finds the best crops of photos with a view-ranking model.

    model:  path to a ``.safetensors`` model (from ``autocrop train``) or None for the packaged default.
    device: torch device string, e.g. "cpu" or "cuda".
    scorer: an already constructed scorer object (advanced; ``model``/``device`` are then unused).
    iou_threshold: the most two returned crops (of one ratio) may overlap, as intersection over union.
    refine: move each chosen view to the score-weighted mean of the candidate views around it (the
        default; see :func:`autocrop.candidates.refine_boxes`); False returns the candidate views themselves.

    The model is loaded once, on the first call that needs it, and reused. Raises
    :class:`autocrop.errors.ModelError` when the model file is missing or damaged, and
    :class:`autocrop.errors.InputError` for unreadable photos or bad arguments.
    """

    def __init__(self, model: str | Path | None = None, device: str = "cpu", *, scorer: Scorer | None = None,
                 iou_threshold: float = 0.7, refine: bool = True) -> None:
        self.engine = Engine(model=model, device=device, scorer=scorer, iou_threshold=iou_threshold, refine=refine)

    def crop(
        self,
        path: str | Path,
        ratio: str | Sequence[str] | None = None,
        top: int = 1,
        *,
        out: str | Path | None = None,
        name: str = DEFAULT_NAME,
        size: str | tuple[int, int] | None = None,
        quality: int = DEFAULT_QUALITY,
        format: str | None = None,
        overwrite: bool = False,
        write: bool = True,
        preview: bool = False,
    ) -> CropResult:
        """Choose the ``top`` best crops of ``path`` per ratio and (unless ``write=False``) write them.

        ratio:   "16:9", "original", "free"/None (GAIC grid), or a list of those (``top`` per ratio).
        out:     output directory (created if needed; default: beside the photo).
        name:    file-name pattern, fields {stem} {rank} {ratio} {ext} {w} {h}.
        size:    (w, h) or "WxH": resize every crop to exactly this size (implies ratio w:h if none).
        format:  "jpeg", "png", "webp", ... (default: the input's format).
        write:   False chooses the crops and plans their paths (``Crop.path``) without writing.
        preview: also write ``STEM.preview.png`` with the ranked boxes drawn.

        Returns a :class:`CropResult`; ``crops`` are best first within each ratio. Existing files are
        never replaced unless ``overwrite``; the input photo never is.
        """
        specs = parse_ratios(list(ratio) if isinstance(ratio, (list, tuple)) else ratio)
        top = check_top(top)
        size_value = tuple(size) if isinstance(size, (tuple, list)) else parse_size(size)
        if size_value is not None:
            size_value = parse_size(f"{size_value[0]}x{size_value[1]}")
        specs = ratios_for_size(specs, size_value)  # type: ignore[arg-type]
        options = check_options(OutputOptions(
            out_dir=Path(out).expanduser() if out is not None else None,
            name=name, size=size_value, quality=quality, format=format, overwrite=overwrite,  # type: ignore[arg-type]
        ), specs, top)
        if write and options.out_dir is not None:
            try:
                options.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"{options.out_dir}: cannot create output directory: {err.strerror or err}") from None
        return self.engine.run(Path(path), specs, top, options, dry_run=not write, preview=preview and write)

    def render(self, result: CropResult, size: str | tuple[int, int] | None = None) -> list[Image.Image]:
        """The crops of ``result`` as full-resolution PIL images (resized to ``size`` when given)."""
        size_value = tuple(size) if isinstance(size, (tuple, list)) else parse_size(size)
        return self.engine.render(result, OutputOptions(size=size_value))  # type: ignore[arg-type]

    def score(self, image: str | Path | Image.Image, boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Model scores of caller-given crops of one photo, in one forward pass.

        image: a photo path (decoded EXIF-oriented, JPEGs at reduced size via draft decoding, exactly
               as the crop command does) or an already EXIF-oriented PIL image.
        boxes: [N, 4] ``x1 y1 x2 y2`` in pixels of the EXIF-oriented full-size photo (floats allowed).
               They are scaled to the decoded size internally; exactly these boxes are scored.
               Coordinates may exceed the photo by at most 1 px (then clipped); x2 > x1, y2 > y1.
        Returns float32 [N]: higher means a better crop. Scores compare crops of the same photo;
        their absolute level carries no meaning across photos.
        """
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size == 0:
            return np.zeros(0, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 4:
            arr = arr.reshape(-1, 4) if arr.ndim == 1 and arr.size == 4 else arr
            if arr.ndim != 2 or arr.shape[1] != 4:
                raise InputError(f"boxes: expected shape [N, 4] (x1 y1 x2 y2), got {list(np.shape(boxes))}")
        if isinstance(image, (str, Path)):
            decoded = self.engine.decode(image)
            width, height, scale, pixels, label = (decoded.info.width, decoded.info.height, decoded.scale,
                                                   decoded.image, str(image))
        else:
            pixels = imageio.to_rgb(image)
            width, height, label = pixels.width, pixels.height, "image"
            # the same integer box-average reduction as decoding a (non-JPEG) file, so both score alike
            factor = max(1, min(width, height) // self.engine.input_short_side)
            pixels, scale = imageio._reduce(pixels, factor), float(factor)
        arr = _checked_boxes(arr, width, height, label)
        return self.engine.score_boxes(pixels, (arr / scale).astype(np.float32))


def _checked_boxes(boxes: np.ndarray, width: int, height: int, label: str) -> np.ndarray:
    """Validate boxes against a ``width`` x ``height`` photo; clip overshoots of up to 1 px."""
    if not np.all(np.isfinite(boxes)):
        raise InputError(f"{label}: boxes contain NaN or infinite values")
    tol = 1.0
    bad = ((boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol) | (boxes[:, 3] > height + tol))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{label}: box {i} {boxes[i].tolist()} lies outside the {width}x{height} photo "
                         "(boxes are x1 y1 x2 y2 pixels of the EXIF-oriented photo)")
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"{label}: box {i} {boxes[i].tolist()} is empty (needs x2 > x1 and y2 > y1)")
    return clipped
