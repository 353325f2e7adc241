"""The engine every command shares: photo -> candidate views -> scores -> chosen crops -> files.

    engine = Engine()                                    # the model is loaded on first use
    result = engine.analyze("photo.jpg", ratios=["16:9"], top=3)   # nothing written
    paths = engine.write(result, OutputOptions(out_dir=Path("crops")))

Steps of :meth:`Engine.analyze`:
1. decode the photo EXIF-oriented at reduced size (JPEG draft decoding, short side >= the model's
   input size; :func:`autocrop.imageio.load_reduced`);
2. candidates in pixels of the oriented original: GAIC's grid when no ratio is asked, otherwise crops
   of exactly each asked ratio (:func:`autocrop.candidates.ratio_candidates`), all ratios together;
3. one forward pass of the scorer over every candidate (boxes scaled to the decoded size);
4. per ratio, the ``top`` best candidates that are not near-duplicates (greedy IoU suppression);
5. each chosen view refined to the score-weighted mean of its well-overlapping neighbours, snapped to
   whole pixels (and to the exact ratio): :func:`autocrop.candidates.refine_boxes`. The grid is coarse
   (1/12 of the photo), and this lands between grid points when the scores say so.

:meth:`Engine.write` then decodes the full-resolution photo once, crops, optionally resizes to
``--size``, and encodes each crop atomically (EXIF kept with orientation 1, ICC kept).
Boxes are always ``x1 y1 x2 y2`` integer pixels of the EXIF-oriented original (``box``) and the same
divided by its width/height (``box_norm``, 0..1).
"""

from __future__ import annotations

import os
import re
import string
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from autocrop import candidates as cand
from autocrop import imageio
from autocrop.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

DEFAULT_NAME = "{stem}.crop{rank}.{ext}"
DEFAULT_NAME_MULTI = "{stem}.{ratio}.crop{rank}.{ext}"
NAME_FIELDS = frozenset({"stem", "rank", "ratio", "ext", "w", "h"})
PREVIEW_LONG_SIDE = 1600
DEFAULT_QUALITY = 95


class Scorer(Protocol):
    """What the engine needs from a model (see :func:`autocrop.model.load_scorer`)."""

    input_short_side: int

    def score(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """image: RGB PIL image; boxes float [N, 4] x1 y1 x2 y2 pixels of that image -> float32 [N]."""
        ...


# ---------------------------------------------------------------------------------------- ratios


@dataclass(frozen=True)
class RatioSpec:
    """An asked aspect ratio: ``w:h`` (reduced integers), ``original`` (the photo's own) or ``free``.

    ``label`` is what the user typed, normalised (``16:9``, ``original``, ``free``).
    """

    kind: str  # "fixed" | "original" | "free"
    w: int = 0
    h: int = 0

    @property
    def label(self) -> str:
        return f"{self.w}:{self.h}" if self.kind == "fixed" else self.kind

    @property
    def slug(self) -> str:
        """File-name friendly label: ``16x9``, ``original``, ``free``."""
        return f"{self.w}x{self.h}" if self.kind == "fixed" else self.kind

    def resolve(self, width: int, height: int) -> tuple[int, int] | None:
        """The exact integer ratio for a ``width`` x ``height`` photo, or None for free crops."""
        if self.kind == "fixed":
            return self.w, self.h
        if self.kind == "original":
            return cand.simple_ratio(width, height)
        return None


FREE = RatioSpec("free")
_RATIO_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*[:x/]\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)


def parse_ratio(text: str) -> RatioSpec:
    """``16:9`` / ``16x9`` / ``16/9`` / ``1.91:1`` / ``original`` / ``free`` -> :class:`RatioSpec`.

    Raises :class:`InputError` ("--ratio 16:0: ...") for anything else, zero or negative terms included.
    """
    raw = str(text).strip()
    low = raw.lower()
    if low in ("original", "orig", "source"):
        return RatioSpec("original")
    if low in ("free", "any", "none"):
        return FREE
    if raw.startswith("-") or re.search(r"[:x/]\s*-", raw):
        raise InputError(f"--ratio {raw}: ratio terms must be positive (e.g. 16:9)")
    match = _RATIO_RE.match(raw)
    if not match:
        raise InputError(f"--ratio {raw}: not a ratio (use W:H such as 16:9, 'original' or 'free')")
    try:
        fw = Fraction(match.group(1)).limit_denominator(1000)
        fh = Fraction(match.group(2)).limit_denominator(1000)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--ratio {raw}: not a ratio (use W:H such as 16:9)") from None
    if fw <= 0 or fh <= 0:
        raise InputError(f"--ratio {raw}: ratio terms must be positive (e.g. 16:9)")
    frac = fw / fh
    w, h = cand.reduce_ratio(frac.numerator, frac.denominator)
    if max(w, h) / min(w, h) > 20:
        raise InputError(f"--ratio {raw}: too extreme (at most 20:1)")
    return RatioSpec("fixed", w, h)


def parse_ratios(values: list[str] | tuple[str, ...] | str | None) -> list[RatioSpec]:
    """Several ``--ratio`` values (each may also be comma-separated) -> distinct specs, in order.

    Nothing asked -> ``[FREE]`` (GAIC's grid).
    """
    if values is None:
        return [FREE]
    if isinstance(values, str):
        values = [values]
    specs: list[RatioSpec] = []
    for value in values:
        for part in str(value).split(","):
            if part.strip():
                spec = parse_ratio(part)
                if spec not in specs:
                    specs.append(spec)
    return specs or [FREE]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--size 1920x1080`` -> (1920, 1080); None stays None. Raises InputError when malformed."""
    if text is None or str(text).strip() == "":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(text))
    if not match:
        raise InputError(f"--size {text}: use WIDTHxHEIGHT in pixels, e.g. 1920x1080")
    w, h = int(match.group(1)), int(match.group(2))
    if w < 1 or h < 1 or w > 65535 or h > 65535:
        raise InputError(f"--size {text}: width and height must be 1..65535 pixels")
    return w, h


# ---------------------------------------------------------------------------------------- results


@dataclass
class Crop:
    """One chosen crop.

    rank:     1 = best, per ratio.
    ratio:    the asked ratio's label ("16:9", "original", "free").
    box:      (x1, y1, x2, y2) integer pixels of the EXIF-oriented original photo.
    box_norm: ``box`` divided by the photo's width/height (floats in 0..1).
    width, height: pixel size of the output file (the box size, or ``--size``).
    score:    the model's score of the candidate view the crop was refined from (higher is better;
              comparable within one photo).
    path:     the written (or, in a dry run, the planned) output file; None before planning.
    """

    rank: int
    ratio: str
    box: tuple[int, int, int, int]
    box_norm: tuple[float, float, float, float]
    width: int
    height: int
    score: float
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["box"] = list(self.box)
        data["box_norm"] = [round(v, 6) for v in self.box_norm]
        data["score"] = round(float(self.score), 6)
        data["path"] = str(self.path) if self.path is not None else None
        return data


@dataclass
class CropResult:
    """Crops chosen for one photo.

    source: the input file. width, height: its EXIF-oriented size in pixels. format: Pillow's format
    name of the input. crops: best first within each asked ratio (ratios in the order asked).
    candidates: how many views were scored. timings: seconds per stage ("decode", "candidates",
    "score", "select", and after writing "render"). preview: the preview PNG, when one was written.
    """

    source: Path
    width: int
    height: int
    format: str
    crops: list[Crop]
    candidates: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    preview: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.source),
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "candidates": self.candidates,
            "crops": [c.to_dict() for c in self.crops],
            "preview": str(self.preview) if self.preview is not None else None,
            "error": None,
        }


@dataclass(frozen=True)
class OutputOptions:
    """Where and how crops are written.

    out_dir: directory for the outputs (None: beside the input). name: file-name pattern with fields
    {stem} {rank} {ratio} {ext} {w} {h} (``{ext}`` is appended when missing). size: (w, h) to resize
    every crop to, or None. quality: JPEG/WebP quality 1..100. format: "jpeg"/"png"/"webp"/... or None
    to keep the input's. overwrite: replace existing files (never the input itself).
    """

    out_dir: Path | None = None
    name: str = DEFAULT_NAME
    size: tuple[int, int] | None = None
    quality: int = DEFAULT_QUALITY
    format: str | None = None
    overwrite: bool = False


def check_name_pattern(pattern: str) -> str:
    """Validate an output name pattern; returns it with ``.{ext}`` appended when it has none."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    except ValueError as err:
        raise InputError(f"--name {pattern}: bad pattern ({err})") from None
    unknown = {f for f in fields if f not in NAME_FIELDS}
    if unknown or "" in fields:
        raise InputError(f"--name {pattern}: unknown field(s) {sorted(unknown or {'{}'})}; "
                         f"use {{stem}} {{rank}} {{ratio}} {{ext}} {{w}} {{h}}")
    if "/" in pattern or "\\" in pattern or pattern in (".", ".."):
        raise InputError(f"--name {pattern}: must be a file name, not a path (use --out for the directory)")
    if "ext" not in fields:
        pattern += ".{ext}"
    return pattern


def check_options(options: OutputOptions, ratios: list[RatioSpec], top: int) -> OutputOptions:
    """Check options that concern every photo (raises InputError before any photo is processed)."""
    name = check_name_pattern(options.name)
    fields = {f for _, f, _, _ in string.Formatter().parse(name) if f}
    if len(ratios) > 1 and "ratio" not in fields:
        if options.name in (DEFAULT_NAME, DEFAULT_NAME.removesuffix(".{ext}")):
            name = DEFAULT_NAME_MULTI
        else:
            raise InputError(f"--name {options.name}: needs {{ratio}} when several ratios are asked")
    if top > 1 and "rank" not in fields:
        raise InputError(f"--name {options.name}: needs {{rank}} when --top is more than 1")
    if not 1 <= int(options.quality) <= 100:
        raise InputError(f"--quality {options.quality}: must be 1..100")
    if options.format is not None:
        imageio.output_format("", options.format)
    if options.size is not None:
        sw, sh = options.size
        for spec in ratios:
            if spec.kind == "fixed" and Fraction(sw, sh) != Fraction(spec.w, spec.h):
                raise InputError(f"--size {sw}x{sh} does not have the asked ratio {spec.label}")
            if spec.kind == "original":
                raise InputError(f"--size {sw}x{sh} cannot be combined with --ratio original")
    return replace(options, name=name)


def ratios_for_size(ratios: list[RatioSpec], size: tuple[int, int] | None) -> list[RatioSpec]:
    """With ``--size WxH`` and no ratio asked, crops take the ratio W:H (so nothing is stretched)."""
    if size is not None and ratios == [FREE]:
        w, h = cand.reduce_ratio(*size)
        return [RatioSpec("fixed", w, h)]
    return ratios


def check_top(top: int) -> int:
    if int(top) < 1:
        raise InputError(f"--top {top}: must be at least 1")
    return int(top)


# ---------------------------------------------------------------------------------------- engine


class Engine:
    """The shared pipeline. One instance loads its model once (lazily) and can be reused for many photos.

    model:  path to a weights file (``.safetensors``) or None for the packaged default model.
    device: torch device string ("cpu", "cuda", ...).
    scorer: an already built scorer (tests, ``Cropper``); ``model``/``device`` are then ignored.
    iou_threshold: the largest IoU two chosen crops of one ratio may have (see select_diverse).
    refine: move each chosen view to the score-weighted mean of its neighbours (see refine_boxes);
        False returns the chosen grid views themselves.
    threads: torch intra-op threads (default: ``$AUTOCROP_THREADS``, else :func:`default_threads`).

    Thread safety: scoring is serialised with a lock; decoding/rendering may run in parallel threads.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        scorer: Scorer | None = None,
        iou_threshold: float = cand.DIVERSITY_IOU,
        threads: int | None = None,
        refine: bool = True,
    ) -> None:
        self.model_path = Path(model).expanduser() if model else None
        self.device = device or "cpu"
        self.iou_threshold = float(iou_threshold)
        self.refine = bool(refine)
        self.threads = threads
        self._scorer = scorer
        self._load_lock = threading.Lock()
        self._score_lock = threading.Lock()
        self._preloader: threading.Thread | None = None
        self._input_short_side: int | None = None

    # ---- model

    @property
    def scorer(self) -> Scorer:
        """The model, loaded on first access (raises :class:`~autocrop.errors.ModelError`)."""
        if self._scorer is None:
            with self._load_lock:
                if self._scorer is None:
                    self._configure_torch()
                    from autocrop.model import load_scorer

                    self._scorer = load_scorer(self.model_path, device=self.device)
        return self._scorer

    @property
    def model_loaded(self) -> bool:
        return self._scorer is not None

    def preload(self) -> None:
        """Start loading the model (torch import included, ~1.3 s) in a background thread.

        Decoding can then overlap with it: Pillow releases the GIL while decoding. Errors are not
        raised here; the next use of :attr:`scorer` raises them.
        """
        if self._scorer is not None or self._preloader is not None:
            return

        def load() -> None:
            try:
                self.scorer  # noqa: B018 - loads and caches
            except Exception:  # reported by the next access from the caller's thread
                pass

        self._preloader = threading.Thread(target=load, name="autocrop-model-load", daemon=True)
        self._preloader.start()

    def wait(self) -> None:
        """Wait for a background model load started by :meth:`preload` (call before exiting)."""
        if self._preloader is not None:
            self._preloader.join()

    @property
    def input_short_side(self) -> int:
        """Short side (px) the model resizes photos to, without waiting for the model when possible.

        Read from the weights file's header (safetensors metadata, plain JSON) while the model is
        still loading; the loaded model's own value otherwise.
        """
        if self._scorer is not None:
            return int(self._scorer.input_short_side)
        if self._input_short_side is None:
            self._input_short_side = _peek_input_short_side(self.model_path)
        if self._input_short_side is None:
            return int(self.scorer.input_short_side)
        return self._input_short_side

    def _configure_torch(self) -> None:
        """Set torch's intra-op threads: ``threads``, else ``$AUTOCROP_THREADS``, else :func:`default_threads`."""
        threads = self.threads
        if threads is None and os.environ.get("AUTOCROP_THREADS", "").strip():
            try:
                threads = int(os.environ["AUTOCROP_THREADS"])
            except ValueError:
                raise InputError(f"AUTOCROP_THREADS={os.environ['AUTOCROP_THREADS']}: not an integer") from None
        if threads is None or threads < 1:
            threads = default_threads()
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def score_boxes(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """Score ``boxes`` [N, 4] (pixels of ``image``) in one forward pass -> float32 [N]."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        scorer = self.scorer
        with self._score_lock:
            try:
                import torch

                with torch.inference_mode():
                    scores = scorer.score(image, boxes)
            except ImportError:  # a scorer without torch (tests)
                scores = scorer.score(image, boxes)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise RuntimeError(f"scorer returned {scores.shape[0]} scores for {boxes.shape[0]} boxes")
        return scores

    # ---- analysis

    def decode(self, path: str | Path) -> imageio.ReducedImage:
        """Decode ``path`` for the model (EXIF-oriented, reduced size; see imageio.load_reduced)."""
        return imageio.load_reduced(path, self.input_short_side)

    def candidates(self, width: int, height: int, ratios: list[RatioSpec],
                   path: Path | str = "image") -> tuple[np.ndarray, np.ndarray]:
        """All candidate boxes for the asked ratios -> (int64 [N, 4] pixels, int64 [N] ratio index).

        Raises :class:`InputError` when the photo is too small for one of the ratios.
        """
        all_boxes, groups = [], []
        for index, spec in enumerate(ratios):
            exact = spec.resolve(width, height)
            if exact is None:
                boxes = np.round(cand.grid_candidates(width, height)).astype(np.int64)
                boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
                if boxes.shape[0] == 0:
                    boxes = np.array([[0, 0, width, height]], dtype=np.int64)
                boxes = np.unique(boxes, axis=0)
            else:
                boxes = cand.ratio_candidates(width, height, *exact).astype(np.int64)
                if boxes.shape[0] == 0:
                    raise InputError(f"{path}: {width}x{height} px is too small for ratio {spec.label} "
                                     f"(needs at least {exact[0]}x{exact[1]} px)")
            all_boxes.append(boxes)
            groups.append(np.full(boxes.shape[0], index, dtype=np.int64))
        return np.concatenate(all_boxes, axis=0), np.concatenate(groups, axis=0)

    def final_boxes(self, boxes: np.ndarray, scores: np.ndarray, chosen: np.ndarray, width: int, height: int,
                    ratio: tuple[int, int] | None) -> np.ndarray:
        """The crops written for the ``chosen`` candidates (best first) -> int64 [K, 4] pixels of the photo.

        boxes [N, 4] / scores [N]: one ratio's candidates; ratio: its exact ``(a, b)``, None when free.
        Refined (see :func:`autocrop.candidates.refine_boxes`) unless the engine was built with
        ``refine=False``; always inside the photo and of the exact ratio. Refinement never makes the
        crops less distinct than the chosen views were: a refined crop that overlaps a better one by
        more than that keeps its unrefined view (and if that still does, no crop is refined).
        """
        chosen = np.asarray(chosen, dtype=np.int64).reshape(-1)
        grid = np.asarray([cand.snap_box(box, width, height, ratio) for box in np.asarray(boxes)[chosen]],
                          dtype=np.int64).reshape(-1, 4)
        if not self.refine or chosen.size == 0:
            return grid
        refined = [cand.snap_box(box, width, height, ratio) for box in cand.refine_boxes(boxes, scores, chosen)]
        bound = max(self.iou_threshold, _max_pairwise_iou(grid))
        final: list[np.ndarray] = []
        for mine, fallback in zip(refined, grid):
            fits = [box for box in (mine, fallback) if not final or _max_iou(box, final) <= bound]
            if not fits:
                return grid
            final.append(fits[0])
        return np.asarray(final, dtype=np.int64).reshape(-1, 4)

    def analyze(self, path: str | Path, ratios: list[RatioSpec] | list[str] | str | None = None,
                top: int = 1) -> CropResult:
        """Choose the ``top`` best crops per asked ratio of the photo at ``path``; nothing is written."""
        if self._preloader is None:
            self.scorer  # noqa: B018 - load the model first, so that "decode" times decoding only
        start = time.perf_counter()
        decoded = self.decode(path)
        t_decode = time.perf_counter() - start
        result = self.analyze_decoded(decoded, ratios, top)
        result.timings["decode"] = t_decode
        return result

    def analyze_decoded(self, decoded: imageio.ReducedImage, ratios: list[RatioSpec] | list[str] | str | None = None,
                        top: int = 1) -> CropResult:
        """Like :meth:`analyze` for an image already decoded with :meth:`decode` (batch workers)."""
        return self.analyze_image(decoded.image, decoded.scale, decoded.info, ratios, top)

    def analyze_image(self, image: Image.Image, scale: float, info: imageio.ImageInfo,
                      ratios: list[RatioSpec] | list[str] | str | None = None, top: int = 1) -> CropResult:
        """Core of the analysis.

        image: RGB, EXIF-oriented, ``scale`` original pixels per image pixel. info: the original's facts
        (size in oriented pixels, format, path).
        """
        specs = _as_specs(ratios)
        top = check_top(top)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        boxes, groups = self.candidates(info.width, info.height, specs, info.path)
        t1 = time.perf_counter()
        scores = self.score_boxes(image, boxes.astype(np.float32) / np.float32(scale))
        t2 = time.perf_counter()
        crops: list[Crop] = []
        for index, spec in enumerate(specs):
            members = np.flatnonzero(groups == index)
            chosen = cand.select_diverse(boxes[members], scores[members], top, self.iou_threshold)
            final = self.final_boxes(boxes[members], scores[members], chosen, info.width, info.height,
                                     spec.resolve(info.width, info.height))
            for rank, (j, box) in enumerate(zip(members[chosen], final), start=1):
                x1, y1, x2, y2 = (int(v) for v in box)
                crops.append(Crop(
                    rank=rank,
                    ratio=spec.label,
                    box=(x1, y1, x2, y2),
                    box_norm=(x1 / info.width, y1 / info.height, x2 / info.width, y2 / info.height),
                    width=x2 - x1,
                    height=y2 - y1,
                    score=float(scores[j]),
                ))
        t3 = time.perf_counter()
        timings.update(candidates=t1 - t0, score=t2 - t1, select=t3 - t2)
        return CropResult(source=Path(info.path), width=info.width, height=info.height, format=info.format,
                          crops=crops, candidates=int(boxes.shape[0]), timings=timings)

    # ---- outputs

    def plan(self, result: CropResult, options: OutputOptions, ratios: list[RatioSpec] | None = None) -> list[Path]:
        """Fill in each crop's output path and size (no file touched); returns the paths.

        Raises :class:`InputError` when an output would replace the input, or an existing file
        without ``overwrite``.
        """
        fmt = imageio.output_format(result.format, options.format)
        ext = imageio.output_suffix(fmt, result.source).lstrip(".")
        out_dir = options.out_dir if options.out_dir is not None else result.source.parent
        name = check_name_pattern(options.name)
        slugs = {spec.label: spec.slug for spec in _as_specs(ratios)} if ratios else {}
        paths: list[Path] = []
        for crop in result.crops:
            if options.size is not None:
                crop.width, crop.height = options.size
            slug = slugs.get(crop.ratio, crop.ratio.replace(":", "x"))
            filename = name.format(stem=result.source.stem, rank=crop.rank, ratio=slug, ext=ext,
                                   w=crop.width, h=crop.height)
            crop.path = out_dir / filename
            paths.append(crop.path)
        if len(set(paths)) != len(paths):
            raise InputError(f"{result.source}: --name {options.name} gives several crops the same file name")
        for path in paths:
            if _same_file(path, result.source):
                raise InputError(f"{path}: would overwrite the input photo; choose another --name or --out")
            if path.exists() and not options.overwrite:
                raise InputError(f"{path}: already exists (use --overwrite to replace it)")
            if path.is_dir():
                raise InputError(f"{path}: is a directory")
        return paths

    def render(self, result: CropResult, options: OutputOptions, image: Image.Image | None = None) -> list[Image.Image]:
        """The crops as PIL images (full resolution, resized to ``options.size`` when given).

        image: the full-resolution EXIF-oriented photo when already decoded; decoded from
        ``result.source`` otherwise.
        """
        if image is None:
            image, _ = imageio.load_full(result.source)
        return [_cut(image, crop.box, options.size) for crop in result.crops]

    def write(self, result: CropResult, options: OutputOptions, image: Image.Image | None = None,
              ratios: list[RatioSpec] | None = None,
              metadata: tuple[bytes | None, bytes | None] | None = None) -> list[Path]:
        """Write every crop of ``result`` (paths planned by :meth:`plan`); returns the written paths.

        image: the full-resolution EXIF-oriented photo when already decoded (else decoded here).
        metadata: (EXIF bytes, ICC bytes) of the source (else read from ``result.source``).
        All-or-nothing per photo: when one crop cannot be written, the crops of this photo already
        created in this call are removed again, and the error (one line, naming the file) is raised.
        """
        start = time.perf_counter()
        paths = self.plan(result, options, ratios)
        if options.out_dir is not None and not options.out_dir.is_dir():
            raise InputError(f"{options.out_dir}: output directory does not exist")
        if image is None:
            image, info = imageio.load_full(result.source)
            metadata = (info.exif, info.icc)
        elif metadata is None:
            metadata = _metadata(result.source)
        fmt = imageio.output_format(result.format, options.format)
        existed = {path: path.exists() for path in paths}

        def save(crop: Crop, path: Path) -> None:
            out = _cut(image, crop.box, options.size)
            imageio.save_image(out, path, fmt, options.quality, exif=metadata[0], icc=metadata[1],
                               overwrite=options.overwrite)

        errors: list[BaseException] = []
        workers = min(len(paths), _cpus())
        if workers > 1:  # Pillow releases the GIL while encoding: crops are encoded in parallel
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autocrop-encode") as pool:
                futures = [pool.submit(save, crop, path) for crop, path in zip(result.crops, paths)]
                for future in futures:
                    exc = future.exception()
                    if exc is not None:
                        errors.append(exc)
        else:
            for crop, path in zip(result.crops, paths):
                try:
                    save(crop, path)
                except BaseException as exc:  # noqa: BLE001 - re-raised below after the clean-up
                    errors.append(exc)
                    break
        if errors:
            for path in paths:  # all-or-nothing: remove what this call created
                if not existed[path] and path.exists():
                    imageio.remove_quietly(path)
            raise errors[0]
        result.timings["render"] = time.perf_counter() - start
        return paths

    def write_preview(self, result: CropResult, path: Path, image: Image.Image | None = None,
                      overwrite: bool = False) -> Path:
        """Write a PNG of the photo (long side <= 1600 px) with the ranked boxes drawn; returns ``path``."""
        from autocrop.render import draw_preview

        if _same_file(path, result.source):
            raise InputError(f"{path}: would overwrite the input photo")
        if image is None:
            long_side = max(result.width, result.height)
            short_side = min(result.width, result.height)
            want = max(1, int(short_side * min(1.0, PREVIEW_LONG_SIDE / long_side)))
            reduced = imageio.load_reduced(result.source, want)
            image = reduced.full if reduced.full is not None else reduced.image
        preview = draw_preview(image, result, PREVIEW_LONG_SIDE)
        imageio.save_image(preview, path, "PNG", overwrite=overwrite)
        result.preview = path
        return path

    def preview_path(self, result: CropResult, options: OutputOptions) -> Path:
        out_dir = options.out_dir if options.out_dir is not None else result.source.parent
        return out_dir / f"{result.source.stem}.preview.png"

    def run(self, path: str | Path, ratios: list[RatioSpec] | list[str] | str | None, top: int, options: OutputOptions,
            dry_run: bool = False, preview: bool = False) -> CropResult:
        """analyze + plan + write (+ preview) for one photo, decoding each resolution at most once.

        The full-resolution decode happens before scoring, so that it overlaps with a model still
        loading in the background (see :meth:`preload`).
        """
        ratios = _as_specs(ratios)
        top = check_top(top)
        options = check_options(options, ratios, top)
        if self._preloader is None:
            self.scorer  # noqa: B018 - load the model first, so that "decode" times decoding only
        start = time.perf_counter()
        decoded = self.decode(path)
        full = decoded.full
        if full is None and not dry_run and self._preloader is not None and not self.model_loaded:
            full, _ = imageio.load_full(path)  # overlap with the model load
        t_decode = time.perf_counter() - start
        result = self.analyze_decoded(decoded, ratios, top)
        result.timings["decode"] = t_decode
        self.plan(result, options, ratios)
        preview_target = self.preview_path(result, options) if preview else None
        if preview_target is not None and preview_target.exists() and not options.overwrite:
            raise InputError(f"{preview_target}: already exists (use --overwrite to replace it)")
        if dry_run:
            return result
        if full is None and result.crops:
            full, _ = imageio.load_full(path)
        written = self.write(result, options, full, ratios, (decoded.info.exif, decoded.info.icc))
        if preview_target is not None:
            try:
                self.write_preview(result, preview_target, full, overwrite=options.overwrite)
            except BaseException:
                for p in written:
                    imageio.remove_quietly(p)
                raise
        return result


def _max_iou(box: np.ndarray, others: list[np.ndarray]) -> float:
    return float(cand.box_iou(box, np.asarray(others)).max())


def _max_pairwise_iou(boxes: np.ndarray) -> float:
    """The largest IoU between two different rows of ``boxes`` [K, 4] (0 when K < 2)."""
    if len(boxes) < 2:
        return 0.0
    iou = cand.box_iou(boxes, boxes)
    return float(iou[~np.eye(len(boxes), dtype=bool)].max())


def _as_specs(ratios: list[RatioSpec] | list[str] | str | None) -> list[RatioSpec]:
    """Ratio specs from specs, strings ("16:9", "16:9,1:1", "original") or None (free crops)."""
    if isinstance(ratios, (list, tuple)) and ratios and all(isinstance(r, RatioSpec) for r in ratios):
        return list(ratios)  # type: ignore[arg-type]
    return parse_ratios(ratios)  # type: ignore[arg-type]


def _peek_input_short_side(model_path: Path | None) -> int | None:
    """``input_short_side`` from a safetensors header (8-byte length + JSON) without torch; None if unknown."""
    import json

    path = model_path
    if path is None:
        try:
            from autocrop.model.weights import PACKAGED_WEIGHTS
        except ImportError:
            return None
        path = PACKAGED_WEIGHTS
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length < 100_000_000:
                return None
            header = json.loads(fh.read(length))
        config = json.loads(header.get("__metadata__", {}).get("config", "{}"))
        value = config.get("input_short_side")
        if value is None:
            from autocrop.model.config import ModelConfig

            value = ModelConfig().input_short_side
        return int(value)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads for one forward pass: the CPUs this process may use minus the current load, at least 1.

    The network input is small (about 384x256), so threads that have to wait for a CPU cost far
    more than they gain: on a 2-core machine already running a 2-thread job, 1 thread scores the
    candidates of a photo in ~80 ms and 2 threads in ~280 ms (measured). On an idle machine all
    available CPUs are used. ``$AUTOCROP_THREADS`` or ``Engine(threads=...)`` override this.
    """
    cpus = _cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def _metadata(path: Path) -> tuple[bytes | None, bytes | None]:
    image = imageio.open_image(path)
    try:
        info = imageio.read_info(image, path)
    finally:
        image.close()
    return info.exif, info.icc


def _cut(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int] | None) -> Image.Image:
    """Crop ``box`` (integer pixels) out of ``image`` and resize to ``size`` (Lanczos) when given."""
    from PIL import Image as PILImage

    out = image.crop(box)
    if size is not None and out.size != tuple(size):
        if out.mode == "P" or out.mode == "1":
            out = out.convert("RGBA" if "transparency" in out.info else "RGB")
        elif out.mode.startswith("I;16"):
            out = out.convert("I")
        out = out.resize(tuple(size), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
