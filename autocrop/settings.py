"""What a crop run is asked to do: :class:`CropSettings`, the one table of defaults and the one validation.

Every front-end (the ``crop`` and ``batch`` commands, :class:`autocrop.Cropper`, the config file) builds
a ``CropSettings``; nothing else holds a default. Messages name parameters (``top``, ``name``), never
command-line flags, so they read right from Python too.

    settings = CropSettings.build(ratio="16:9", top=3, quality=90)
    settings.ratios   # (RatioSpec("fixed", 16, 9),)
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from autocrop.errors import UsageError
from autocrop.faces.hints import Box, Point, check_focus, check_keep
from autocrop.geometry import reduce_ratio
from autocrop.ratios import FREE, MAX_SIZE, RatioSpec, parse_ratios, parse_size

DEFAULT_NAME = "{stem}.crop{rank}.{ext}"
DEFAULT_NAME_MULTI = "{stem}.{ratio}.crop{rank}.{ext}"
NAME_FIELDS = ("stem", "rank", "ratio", "ext", "w", "h")
DEFAULT_TOP = 1
MAX_TOP = 1000
DEFAULT_QUALITY = 95
DEFAULT_DIVERSITY = 0.7  # the largest IoU two returned crops of one ratio may have
DEFAULT_DEVICE = "cpu"
MAX_THREADS = 256  # more torch threads than this is a typo, not a machine (and can crash the OpenMP runtime)
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
#: Output formats users may ask for -> Pillow's format name.
FORMAT_ALIASES = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF",
                  "bmp": "BMP"}


def check_top(value: Any) -> int:
    """``top``: crops per photo and ratio, 1..1000."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"top {value!r}: must be a whole number")
    if not 1 <= value <= MAX_TOP:
        raise UsageError(f"top {value}: must be 1..{MAX_TOP}")
    return value


def check_quality(value: Any) -> int:
    """``quality``: JPEG/WebP quality 1..100."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"quality {value!r}: must be a whole number 1..100")
    if not 1 <= value <= 100:
        raise UsageError(f"quality {value}: must be 1..100")
    return value


def check_format(value: str | None) -> str | None:
    """``format``: jpeg|png|webp|tiff|bmp (any case, leading dot allowed) -> Pillow's name; None/"" -> None."""
    if value is None or str(value).strip() == "":
        return None
    fmt = FORMAT_ALIASES.get(str(value).strip().lower().lstrip("."))
    if fmt is None:
        raise UsageError(f"format {value!r}: unknown output format (use {', '.join(sorted(set(FORMAT_ALIASES)))})")
    return fmt


def check_threads(value: Any) -> int | None:
    """``threads``: torch intra-op threads, 1..256, or None (leave torch's own setting)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise UsageError(f"threads {value!r}: must be a whole number 1..{MAX_THREADS}")
    return value


SWITCH_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False, "1": True,
                "0": False}


def parse_switch(name: str, value: Any) -> bool:
    """An on/off setting (``faces``): True/False, or on|off, true|false, yes|no, 1|0 in any case."""
    if isinstance(value, bool):
        return value
    word = SWITCH_WORDS.get(str(value).strip().lower()) if isinstance(value, (str, int)) else None
    if word is None:
        raise UsageError(f"{name} {value!r}: use on or off")
    return word


RUNTIMES = ("auto", "onnx", "torch")
DEFAULT_RUNTIME = "auto"


def check_runtime(value: str | None) -> str:
    """``runtime``: auto (ONNX Runtime on the CPU when a graph fits the model, else torch), onnx or torch."""
    text = DEFAULT_RUNTIME if value is None else str(value).strip().lower()
    if text not in RUNTIMES:
        raise UsageError(f"runtime {value!r}: use auto, onnx or torch")
    return text


def check_device(value: str | None) -> str:
    """``device``: auto, cpu, cuda, cuda:N or mps (syntax only; availability is checked when the model loads)."""
    text = DEFAULT_DEVICE if value is None else str(value).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise UsageError(f"device {value!r}: use {DEVICE_CHOICES}")
    return text


def name_fields(pattern: str) -> set[str]:
    """The replacement fields of a name pattern (raises :class:`UsageError` for a malformed pattern)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    except ValueError as err:
        raise UsageError(f"name {pattern!r}: bad pattern ({err})") from None


def check_name_pattern(pattern: str) -> str:
    """Validate an output name pattern; returns it with ``.{ext}`` appended when it has no ``{ext}``.

    Fields: {stem} {rank} {ratio} {ext} {w} {h}. The pattern must name a file, not a path; the
    rendered name is checked again for every photo (see :func:`autocrop.output.render_name`).
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise UsageError(f"name {pattern!r}: must be a non-empty file-name pattern such as {DEFAULT_NAME}")
    found = name_fields(pattern)
    unknown = {f for f in found if f not in NAME_FIELDS}
    if unknown or "" in found:
        raise UsageError(f"name {pattern!r}: unknown field(s) {sorted(unknown or {'{}'})}; "
                         f"use {' '.join('{' + f + '}' for f in NAME_FIELDS)}")
    if "/" in pattern or "\\" in pattern or pattern in (".", "..") or "\0" in pattern:
        raise UsageError(f"name {pattern!r}: must be a file name, not a path (the folder is the output folder)")
    full = pattern if "ext" in found else pattern + ".{ext}"
    try:  # a format spec that cannot apply ("{stem:d}") fails here, before any photo
        full.format(stem="photo", rank=1, ratio="16x9", ext="jpg", w=640, h=360)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as err:
        raise UsageError(f"name {pattern!r}: cannot be filled in ({err})") from None
    return full


@dataclass(frozen=True)
class CropSettings:
    """Validated settings of a crop run (frozen and picklable: it travels to batch workers and Ray actors).

    ratios:    asked aspect ratios, in order; ``(FREE,)`` = GAIC's grid (any ratio 1:2..2:1).
    top:       crops per photo and ratio, best first.
    size:      (w, h) pixels every crop is resized to (down only, unless ``upscale``); None = the crop's size.
    long_edge: pixels of the longer side of every crop (down only, unless ``upscale``); None = the crop's size.
    upscale:   allow ``size``/``long_edge`` to enlarge a crop.
    name:      output file-name pattern (fields {stem} {rank} {ratio} {ext} {w} {h}); ``.{ext}`` appended.
    format:    Pillow format name of the outputs ("JPEG", "PNG", ...) or None = the input's.
    quality:   JPEG/WebP quality 1..100.
    diversity: the largest IoU two returned crops of one ratio may have (0..1).
    refine:    move each chosen view to the score-weighted mean of its neighbours (see :mod:`autocrop.select`).
    preview:   also write ``<stem>.preview.png`` with the chosen boxes drawn.
    overwrite: replace existing output files (never an input).
    faces:     the face rule (see :mod:`autocrop.faces.rules`): detect faces; crops never cut one and keep
               the main face (and its group) whenever a crop of the ratio can; True/False or "on"/"off".
    keep:      boxes (x1, y1, x2, y2) every crop must hold wholly: pixels of the EXIF-oriented photo, or
               0..1 fractions of its width/height when all four values are <= 1 (see :mod:`autocrop.faces.hints`).
    focus:     a point (x, y) every crop must hold, and which pulls crops to centre on it (pixels, or
               fractions when both values are <= 1); None = none.

    Construct with typed values (validated here) or with :meth:`build` from loose ones ("16:9", "1920x1080").
    """

    ratios: tuple[RatioSpec, ...] = (FREE,)
    top: int = DEFAULT_TOP
    size: tuple[int, int] | None = None
    long_edge: int | None = None
    upscale: bool = False
    name: str = DEFAULT_NAME
    format: str | None = None
    quality: int = DEFAULT_QUALITY
    diversity: float = DEFAULT_DIVERSITY
    refine: bool = True
    preview: bool = False
    overwrite: bool = False
    faces: bool = True
    keep: tuple[Box, ...] = ()
    focus: Point | None = None

    def __post_init__(self) -> None:
        ratios = parse_ratios(self.ratios)
        size = parse_size(self.size)
        if size is not None and ratios == (FREE,):
            ratios = (RatioSpec("fixed", *reduce_ratio(*size)),)  # crops take the size's ratio: nothing stretched
        object.__setattr__(self, "ratios", ratios)
        object.__setattr__(self, "size", size)
        check_top(self.top)
        check_quality(self.quality)
        object.__setattr__(self, "format", check_format(self.format))
        if isinstance(self.diversity, bool) or not isinstance(self.diversity, (int, float)) \
                or not 0.0 <= float(self.diversity) <= 1.0:
            raise UsageError(f"diversity {self.diversity!r}: must be an IoU between 0 and 1")
        object.__setattr__(self, "diversity", float(self.diversity))
        if self.long_edge is not None:
            if isinstance(self.long_edge, bool) or not isinstance(self.long_edge, int) \
                    or not 1 <= self.long_edge <= MAX_SIZE:
                raise UsageError(f"long_edge {self.long_edge!r}: must be 1..{MAX_SIZE} pixels")
            if size is not None:
                raise UsageError("size and long_edge cannot be combined (choose one)")
        if size is not None:
            for spec in ratios:
                if spec.kind == "fixed" and size[0] * spec.h != size[1] * spec.w:  # the same ratio, in integers
                    raise UsageError(f"size {size[0]}x{size[1]} does not have the asked ratio {spec.label}")
                if spec.kind != "fixed":
                    raise UsageError(f"size {size[0]}x{size[1]} cannot be combined with ratio {spec.label}")
        object.__setattr__(self, "name", self._checked_name(self.name, ratios))
        object.__setattr__(self, "faces", parse_switch("faces", self.faces))
        object.__setattr__(self, "keep", check_keep(self.keep))
        object.__setattr__(self, "focus", check_focus(self.focus))

    def _checked_name(self, pattern: str, ratios: tuple[RatioSpec, ...]) -> str:
        name = check_name_pattern(pattern)
        found = name_fields(name)
        if len(ratios) > 1 and "ratio" not in found:
            if pattern in (DEFAULT_NAME, DEFAULT_NAME.removesuffix(".{ext}")):
                name = DEFAULT_NAME_MULTI
                found = name_fields(name)
            else:
                raise UsageError(f"name {pattern!r}: needs {{ratio}} when several ratios are asked")
        if self.top > 1 and "rank" not in found:
            raise UsageError(f"name {pattern!r}: needs {{rank}} when top is more than 1")
        return name

    @classmethod
    def build(
        cls,
        ratio: str | RatioSpec | Iterable[str | RatioSpec] | None = None,
        top: int | None = None,
        size: str | tuple[int, int] | None = None,
        **values: Any,
    ) -> CropSettings:
        """Settings from loose values: ``ratio`` "16:9" / "16:9,1:1" / a list, ``size`` "WxH"; None = default.

        Other keywords are the fields of this class; unknown ones raise :class:`UsageError` naming them.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        given: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
        if ratio is not None:
            given["ratios"] = parse_ratios(ratio)
        if top is not None:
            given["top"] = top
        if size is not None:
            given["size"] = parse_size(size)
        return cls(**given)

    def with_(self, **changes: Any) -> CropSettings:
        """A copy with ``changes`` applied and validated again (the default name is re-derived)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(f.name for f in fields(self)))})")
        if "ratios" in changes or "top" in changes:
            if self.name == DEFAULT_NAME_MULTI and "name" not in changes:
                changes["name"] = DEFAULT_NAME
        return replace(self, **changes)

    def output_key(self) -> dict[str, Any]:
        """The settings that change output files, as plain JSON values (batch hashes them for resume)."""
        return {
            "ratios": [s.label for s in self.ratios],
            "top": self.top,
            "size": list(self.size) if self.size else None,
            "long_edge": self.long_edge,
            "upscale": self.upscale,
            "quality": self.quality,
            "format": self.format,
            "name": self.name,
            "diversity": self.diversity,
            "refine": self.refine,
            "preview": self.preview,
            "faces": self.faces,
            "keep": [list(box) for box in self.keep],
            "focus": list(self.focus) if self.focus is not None else None,
        }


def typed_values(values: dict[str, Any]) -> dict[str, Any]:
    """Loose keyword values (``ratio="16:9"``, ``size="WxH"``) -> :class:`CropSettings` fields; None values dropped."""
    out = {k: v for k, v in values.items() if v is not None}
    if "ratio" in out:
        out["ratios"] = parse_ratios(out.pop("ratio"))
    if "ratios" in out:
        out["ratios"] = parse_ratios(out["ratios"])
    if "size" in out:
        out["size"] = parse_size(out["size"])
    return out
