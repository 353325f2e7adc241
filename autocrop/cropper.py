"""``Cropper``: the one orchestration behind ``autocrop crop``, the batch workers, the bench and users' code.

    from autocrop import Cropper

    cropper = Cropper()                                     # packaged model, loaded on first use
    result = cropper.crop("photo.jpg", ratio="16:9", top=3)  # nothing written: crops carry .image
    result = cropper.crop("photo.jpg", ratio="16:9", out="crops/")   # files in crops/
    scores = cropper.score("photo.jpg", [[0, 0, 800, 450]])  # the model's score of your own boxes

A crop flows: :meth:`decode` (EXIF-oriented, reduced size) -> faces on the reduced image (:meth:`faces`,
unless ``faces=False``) and the hints -> the scored views (:func:`autocrop.views.make_views`: a grid model's
candidates scored in one forward pass, or a set model's predictions; + views around the faces where none
keeps the rule, :mod:`autocrop.faces.rules`) -> per ratio :func:`autocrop.faces.apply.choose` (the face
rule's order, :func:`autocrop.select.select_crops`) -> a
:class:`~autocrop.results.CropResult` -> optionally :func:`autocrop.output.plan_outputs`,
:func:`~autocrop.output.check_outputs` and :func:`~autocrop.output.write_outputs` (and the preview).

Boxes are ``x1 y1 x2 y2`` in pixels of the *EXIF-oriented* photo (as a viewer shows it), x2/y2
exclusive. The Cropper changes no process-wide state except, when asked with ``threads=N``, torch's
intra-op thread count; it reads no config file and no environment variable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import UsageError
from autocrop.geometry import clip_boxes
from autocrop.io import decode as dec
from autocrop.io.fs import ensure_folder
from autocrop.io.full import BackgroundDecode, pixels_to_cut
from autocrop.io.sources import MemorySource, pil_of
from autocrop.output import check_outputs, cut, mark_existing, plan_outputs, sized_outputs, write_outputs
from autocrop.results import CropResult
from autocrop.settings import (
    DEFAULT_DEVICE,
    DEFAULT_RUNTIME,
    CropSettings,
    check_device,
    check_runtime,
    check_threads,
    typed_values,
)
from autocrop.views import choose_crops, make_views, score_boxes

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.faces.detect import Face, FaceDetector
    from autocrop.faces.rules import Subject
    from autocrop.model.scorer import Scorer

PhotoInput = str | Path | bytes | bytearray | memoryview | IO[bytes] | MemorySource | Any
"""A photo: a path, encoded bytes, a binary file object, a PIL image or an [H, W(, C)] uint8 numpy array."""


class Cropper:
    """Finds the best crops of photos with a view-ranking model; the model is loaded once, lazily.

    model:   a ``.safetensors`` model file (from ``autocrop train``) or None for the packaged default.
    device:  "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA when available).
    runtime: "auto" (ONNX Runtime on the CPU when a graph fits the model, else torch), "onnx" or "torch".
    threads: the model's intra-op threads (ONNX Runtime: default 1; torch: set when the model loads,
             None leaves torch's own setting).
    scorer:  an already built scorer (tests, custom models); ``model``/``device`` are then unused.
    detector: a face detector (:class:`autocrop.faces.FaceDetector`; tests pass fixed faces); None = the
             packaged YuNet model, opened on first use.
    settings / keywords: the default :class:`CropSettings` of this cropper, e.g. ``Cropper(refine=False)``.

    Raises :class:`~autocrop.errors.ModelError` when the model cannot be loaded,
    :class:`~autocrop.errors.InputError` for unusable photos, :class:`~autocrop.errors.UsageError` for
    bad parameters and :class:`~autocrop.errors.OutputError` (with ``errno``) for files that cannot be
    written. Scoring is serialised by a lock; decoding and writing may run in parallel threads.
    """

    def __init__(self, model: str | Path | None = None, device: str = DEFAULT_DEVICE, *,
                 runtime: str = DEFAULT_RUNTIME, threads: int | None = None, scorer: Scorer | None = None,
                 detector: FaceDetector | None = None,
                 settings: CropSettings | None = None, **setting_values: Any) -> None:
        self.model = Path(model).expanduser() if model else None
        self.device = check_device(device)
        self.runtime = check_runtime(runtime)
        self.threads = check_threads(threads)
        base = settings or CropSettings()
        self.settings = base.with_(**typed_values(setting_values)) if setting_values else base
        self._scorer = scorer
        self._detector = detector
        self._load_lock = threading.Lock()
        self._detector_lock = threading.Lock()  # not the model's: detection must not wait for a model loading
        self._score_lock = threading.Lock()
        self._preloader: threading.Thread | None = None
        self._input_short_side: int | None = None

    # ------------------------------------------------------------------ model

    @property
    def scorer(self) -> Scorer:
        """The model, loaded on first use (raises :class:`~autocrop.errors.ModelError`)."""
        if self._scorer is None:
            with self._load_lock:
                if self._scorer is None:
                    self._scorer = self._load(open_session=True)
        return self._scorer

    def _load(self, open_session: bool) -> Scorer:
        from autocrop.model import load_scorer

        scorer = load_scorer(self.model, device=self.device, runtime=self.runtime, threads=self.threads,
                             open_session=open_session)
        if getattr(scorer, "runtime", "torch") == "torch" and self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)  # the caller asked for it explicitly
        return scorer

    @property
    def runtime_note(self) -> str | None:
        """Why ``runtime="auto"`` fell back to torch (None when it did not, or before the model loads)."""
        return getattr(self._scorer, "runtime_note", None)

    @property
    def model_loaded(self) -> bool:
        return self._scorer is not None

    def preload(self, faces: bool = True) -> None:
        """Load the model (and, with ``faces``, open the face detector) mostly in a background thread.

        On ONNX Runtime the part that holds the GIL (reading and checking the weights, folding BatchNorm)
        runs here and only the session's creation (C++ that releases it) in the background, beside the
        caller's decoding: measured faster than the whole load in the background, sharing the GIL. Errors
        are not raised here; the next use of the model raises them in the caller's thread.
        """
        if self._scorer is not None or self._preloader is not None:
            return
        if self.runtime != "torch" and self.device == "cpu" and self._load_lock.acquire(blocking=False):
            try:
                self._scorer = self._load(open_session=False)
            except Exception:  # noqa: BLE001 - raised again by the next use
                pass
            finally:
                self._load_lock.release()

        def load() -> None:
            try:
                getattr(self.scorer, "open", lambda: None)()  # loads and caches; creates an ONNX session
                if faces:
                    getattr(self.detector, "session", None)  # opens the packaged detector's session
            except Exception:  # noqa: BLE001 - raised again by the next use, in the caller's thread
                pass

        self._preloader = threading.Thread(target=load, name="autocrop-model-load", daemon=True)
        self._preloader.start()

    def wait(self) -> None:
        """Wait for a background load started by :meth:`preload` (call before the process exits)."""
        if self._preloader is not None:
            self._preloader.join()

    @property
    def input_short_side(self) -> int:
        """Short side (px) the model works at; read from the weights file's metadata while it loads."""
        if self._scorer is not None:
            return int(self._scorer.input_short_side)
        if self._input_short_side is None:
            from autocrop.model import peek_input_short_side

            self._input_short_side = peek_input_short_side(self.model)
        if self._input_short_side is None:
            return int(self.scorer.input_short_side)
        return self._input_short_side

    # ------------------------------------------------------------------ photos and scores

    def decode(self, source: PhotoInput) -> dec.ReducedImage:
        """Decode a photo for the model: EXIF-oriented, reduced (JPEG draft decoding), RGB.

        Paths, bytes and file objects are decoded; a PIL image is taken as already oriented and a
        numpy array [H, W] or [H, W, 3|4] uint8 as pixels. Raises :class:`InputError` naming the photo.
        """
        if isinstance(source, dec.ReducedImage):
            return source
        image = pil_of(source)
        if image is not None:
            return dec.reduce_image(image, self.input_short_side, label="<image>")
        return dec.load_reduced(dec.as_source(source), self.input_short_side)

    def score(self, photo: PhotoInput, boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Model scores of caller-given crops of one photo, in one forward pass -> float32 [N].

        boxes: [N, 4] ``x1 y1 x2 y2`` in pixels of the EXIF-oriented full-size photo (floats allowed);
        they may exceed the photo by at most 1 px (then clipped); x2 > x1, y2 > y1. Higher is better;
        scores compare crops of the same photo only.
        """
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size == 0:
            return np.zeros(0, dtype=np.float32)
        if arr.ndim == 1 and arr.size == 4:
            arr = arr.reshape(1, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise UsageError(f"boxes: expected shape [N, 4] (x1 y1 x2 y2), got {list(arr.shape)}")
        decoded = self.decode(photo)
        arr = clip_boxes(arr, decoded.info.width, decoded.info.height, f"boxes for {decoded.label}")
        return self._score(decoded.image, (arr / decoded.scale).astype(np.float32))

    @property
    def detector(self) -> FaceDetector:
        """The face detector (the packaged YuNet model unless one was given; its session opens on first use)."""
        if self._detector is None:
            with self._detector_lock:
                if self._detector is None:
                    from autocrop.faces.detect import YuNetDetector

                    self._detector = YuNetDetector()
        return self._detector

    def faces(self, photo: PhotoInput) -> tuple[Face, ...]:
        """The faces in ``photo``, best first; boxes ``x1 y1 x2 y2`` in pixels of the EXIF-oriented photo.

        Detected on the reduced image the model sees (no second decode); needs no ranking model.
        """
        decoded = self.decode(photo)
        return self.detector.detect(decoded.image, decoded.scale)

    def _subject(self, decoded: dec.ReducedImage, settings: CropSettings) -> tuple[tuple[Face, ...] | None,
                                                                                  Subject | None]:
        """(faces found or None when ``settings.faces`` is off, the photo's subject or None)."""
        from autocrop.faces.apply import photo_subject

        faces = self.detector.detect(decoded.image, decoded.scale) if settings.faces else None
        return faces, photo_subject(faces, decoded.info.width, decoded.info.height, settings, decoded.label)

    def _score(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """Score ``boxes`` [N, 4] (pixels of the reduced ``image``) in one forward pass -> float32 [N]."""
        if np.asarray(boxes).size == 0:
            return np.zeros(0, dtype=np.float32)
        return score_boxes(self.scorer, self._score_lock, image, boxes)

    # ------------------------------------------------------------------ choosing crops

    def settings_for(self, settings: CropSettings | None = None, **values: Any) -> CropSettings:
        """``settings`` (default: this cropper's) with loose ``values`` ("16:9", "1920x1080") applied."""
        base = settings or self.settings
        return base.with_(**typed_values(values)) if values else base

    def analyze(self, photo: PhotoInput, settings: CropSettings | None = None, **values: Any) -> CropResult:
        """Choose the ``top`` best crops per asked ratio of ``photo``; nothing is written or cut."""
        settings = self.settings_for(settings, **values)
        if self._preloader is None:
            self.scorer  # noqa: B018 - load the model first, so that "decode" times decoding only
        t0 = time.perf_counter()
        decoded = self.decode(photo)
        t1 = time.perf_counter()
        result = self._analyze(decoded, settings)
        result.timings["decode"] = t1 - t0
        return result

    def _analyze(self, decoded: dec.ReducedImage, settings: CropSettings) -> CropResult:
        info = decoded.info
        t0 = time.perf_counter()
        faces, subject = self._subject(decoded, settings)
        t1 = time.perf_counter()
        if self._preloader is not None and self._preloader.is_alive():
            from autocrop.output import import_writers

            import_writers()  # this thread would only wait for the model now
        views = make_views(self.scorer, self._score_lock, decoded, settings, subject)  # see autocrop.views
        t3 = time.perf_counter()
        crops, warnings = choose_crops(views, settings, decoded, subject, faces is not None)
        t4 = time.perf_counter()
        return CropResult(source=decoded.label, width=info.width, height=info.height, format=info.format,
                          crops=tuple(crops), candidates=int(views.boxes.shape[0]), faces=faces,
                          warnings=tuple(warnings), timings={"faces": t1 - t0, **views.timings, "select": t4 - t3})

    def choose(self, photo: PhotoInput, boxes: np.ndarray, scores: np.ndarray, settings: CropSettings | None = None,
               ratio: tuple[int, int] | None = None, top: int = 1) -> np.ndarray:
        """The crops ``autocrop crop`` makes from caller-given candidates of one ratio and their scores.

        boxes [N, 4] ``x1 y1 x2 y2`` pixels of the photo, scores [N] (e.g. from :meth:`score`); ratio: the
        exact ``(a, b)`` of the boxes or None (free). The face rule and hints of ``settings`` apply: extra
        views are scored here when the rule needs them. -> int64 [<= top, 4] pixels (the bench's top-1).
        """
        from autocrop.faces.apply import choose_scored

        settings = settings or self.settings
        decoded = photo if isinstance(photo, dec.ReducedImage) else self.decode(photo)
        _, subject = self._subject(decoded, settings)
        return choose_scored(boxes, scores, lambda extra: self._score(decoded.image, extra / decoded.scale),
                             settings, ratio, decoded.info.width, decoded.info.height, subject, decoded.label, top)

    def crop(self, photo: PhotoInput, settings: CropSettings | None = None, *, out: str | Path | None = None,
             write: bool | None = None, dry_run: bool = False, images: bool = True,
             protected: Sequence[str | Path] = (), stem: str | None = None, **values: Any) -> CropResult:
        """Choose the best crops of ``photo`` and return them as images, or write them as files.

        settings / values: what to crop (``ratio="16:9"``, ``top=3``, ``size="1080x1080"``, ``name=...``,
            ``format``, ``quality``, ``overwrite``, ``preview``, ...; see :class:`CropSettings`).
        out:      output folder (created if needed). Files are written when ``out`` is given or
                  ``write=True`` (then beside a photo given by path); otherwise nothing is written
                  and, with ``images``, each crop carries its pixels in ``Crop.image``.
        dry_run:  plan the files (``Crop.path``, ``Crop.exists``) without writing anything.
        protected: other files that must never be replaced (e.g. every input of the same run).
        stem:     the ``{stem}`` of output names (default: the photo's file stem).

        Raises :class:`OutputError` before writing anything when a planned file exists (without
        ``overwrite``) or is an input; writing is all-or-nothing per photo (preview included).
        """
        settings = self.settings_for(settings, **values)
        files = dry_run or write is True or (out is not None and write is not False)
        if self._preloader is None:
            self.scorer  # noqa: B018 - load the model first, so that "decode" times decoding only
        t0 = time.perf_counter()
        decoded = self.decode(photo)
        full_decode = None
        if files and not dry_run and decoded.full is None and settings.size is None and settings.long_edge is None:
            full_decode = BackgroundDecode(decoded)  # beside the model load and the analysis
        t1 = time.perf_counter()
        try:
            result = self._analyze(decoded, settings)
        finally:
            if full_decode is not None:
                full_decode.wait(raise_error=sys.exc_info()[0] is None)  # an analysis error goes first
        result.timings["decode"] = t1 - t0
        if not files:
            if not images or not result.crops:
                return result
            sized = sized_outputs(result, settings)
            pixels, scale = pixels_to_cut(decoded, sized, settings)
            return sized.with_crops([replace(c, image=cut(pixels, c.box, (c.width, c.height), scale))
                                     for c in sized.crops])
        out_dir = self._out_dir(decoded, out)
        planned = plan_outputs(result, settings, out_dir, stem or _stem(decoded), _path_of(decoded))
        if dry_run:
            return mark_existing(planned)
        if out is not None:
            ensure_folder(out_dir)
        return self.write(decoded, planned, settings, protected=protected)

    def write(self, decoded: dec.ReducedImage, planned: CropResult, settings: CropSettings,
              protected: Sequence[str | Path] = ()) -> CropResult:
        """Write the crops of ``planned`` (paths from :func:`~autocrop.output.plan_outputs`) and its preview.

        ``decoded``: the photo as returned by :meth:`decode`. Checks first (nothing is written when one
        file must not be), then writes all-or-nothing. Returns ``planned`` with the write time.
        """
        t0 = time.perf_counter()
        guard = [Path(p) for p in protected]
        source_path = _path_of(decoded)
        if source_path is not None:
            guard.append(source_path)
        check_outputs(planned, guard, settings.overwrite)
        pixels, scale = pixels_to_cut(decoded, planned, settings)
        write_outputs(planned, pixels, settings, decoded.info.exif, decoded.info.icc, scale)
        if planned.preview is not None:
            try:
                from autocrop.preview import save_preview

                save_preview(pixels, planned, planned.preview, settings.overwrite)  # scale is 1 with a preview
            except BaseException:
                from autocrop.io.fs import remove_quietly

                for path in planned.paths:
                    remove_quietly(path)
                raise
        planned.timings["write"] = time.perf_counter() - t0
        return planned

    def render(self, result: CropResult, settings: CropSettings | None = None, **values: Any) -> list[Image.Image]:
        """The crops of ``result`` (of a photo given by path) as full-resolution PIL images."""
        settings = self.settings_for(settings, **values)
        full, _ = dec.load_full(result.source)
        return [cut(full, c.box, (c.width, c.height)) for c in sized_outputs(result, settings).crops]

    # ------------------------------------------------------------------ helpers

    def _out_dir(self, decoded: dec.ReducedImage, out: str | Path | None) -> Path:
        if out is not None:
            return Path(out).expanduser()
        path = _path_of(decoded)
        if path is None:
            raise UsageError(f"out: {decoded.label} is not a file, so its crops need an output folder")
        return path.parent


def _path_of(decoded: dec.ReducedImage) -> Path | None:
    source = decoded.info.source
    return source if isinstance(source, Path) else None


def _stem(decoded: dec.ReducedImage) -> str:
    return decoded.info.source.stem
