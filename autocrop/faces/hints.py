"""User hints: ``keep`` boxes that every crop must hold and a ``focus`` point that crops hold and centre on.

As users write them: ``keep`` ``"X1,Y1,X2,Y2"`` and ``focus`` ``"X,Y"``, in pixels of the EXIF-oriented
photo, or in fractions of its width and height when every value of that hint is at most 1 (``0.4,0.1,0.6,0.5``
is the middle fifth across, the upper half down). Syntax is checked once (:class:`~autocrop.errors.UsageError`
naming the parameter); each photo then resolves the hints to pixels (:func:`resolve_keep`,
:func:`resolve_focus`), where a hint outside the photo is an :class:`~autocrop.errors.InputError` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autocrop.errors import InputError, UsageError

Box = tuple[float, float, float, float]
Point = tuple[float, float]
EDGE_TOLERANCE = 1.0  # px a pixel hint may exceed the photo (then clipped), as for caller-given boxes


def _numbers(name: str, value: Any, count: int, form: str) -> tuple[float, ...]:
    """``"1,2,3,4"`` / ``"1 2 3 4"`` / a sequence of ``count`` numbers -> floats (finite, >= 0)."""
    if isinstance(value, str):
        parts = [p for p in value.replace(",", " ").split() if p]
        try:
            numbers = tuple(float(p) for p in parts)
        except ValueError:
            raise UsageError(f"{name} {value!r}: use {form} (numbers)") from None
    elif isinstance(value, Sequence) or isinstance(value, np.ndarray):
        try:
            numbers = tuple(float(v) for v in value if not isinstance(v, bool))
        except (TypeError, ValueError):
            raise UsageError(f"{name} {value!r}: use {form} (numbers)") from None
        if len(numbers) != len(value):
            raise UsageError(f"{name} {value!r}: use {form} (numbers)")
    else:
        raise UsageError(f"{name} {value!r}: use {form}")
    if len(numbers) != count:
        raise UsageError(f"{name} {value!r}: use {form} ({count} numbers, got {len(numbers)})")
    if not all(math.isfinite(v) and v >= 0 for v in numbers):
        raise UsageError(f"{name} {value!r}: values must be finite and not negative")
    return numbers


def check_keep_box(value: Any) -> Box:
    """One ``keep`` box -> (x1, y1, x2, y2) floats; x2 > x1 and y2 > y1 (pixels, or fractions when all <= 1)."""
    x1, y1, x2, y2 = _numbers("keep", value, 4, "X1,Y1,X2,Y2 in pixels or 0..1 fractions")
    if x2 <= x1 or y2 <= y1:
        raise UsageError(f"keep {_text(value)}: needs X2 > X1 and Y2 > Y1 (a box x1,y1,x2,y2)")
    return x1, y1, x2, y2


def check_keep(value: Any) -> tuple[Box, ...]:
    """``keep``: None / () -> (); one box (a string or 4 numbers) or several -> a tuple of boxes."""
    if value is None:
        return ()
    if isinstance(value, str) or (isinstance(value, (Sequence, np.ndarray)) and len(value) == 4
                                  and all(isinstance(v, (int, float, np.number)) for v in value)):
        return (check_keep_box(value),)
    if isinstance(value, (Sequence, np.ndarray)):
        return tuple(check_keep_box(v) for v in value)
    raise UsageError(f"keep {value!r}: use one box X1,Y1,X2,Y2 or a list of them")


def check_focus(value: Any) -> Point | None:
    """``focus``: None -> None; ``"X,Y"`` or (x, y) -> floats (pixels, or fractions when both <= 1)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    x, y = _numbers("focus", value, 2, "X,Y in pixels or 0..1 fractions")
    return x, y


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(f"{float(v):g}" for v in value)


def _fractions(values: Sequence[float]) -> bool:
    return max(values) <= 1.0


def resolve_keep(keep: Sequence[Box], width: int, height: int, label: str) -> np.ndarray:
    """``keep`` boxes -> float64 [K, 4] ``x1 y1 x2 y2`` pixels of a ``width`` x ``height`` photo.

    Fractions are scaled by the photo's size; pixel boxes may exceed it by 1 px (clipped). Raises
    :class:`InputError` starting with ``label`` for a box outside the photo.
    """
    out = np.zeros((len(keep), 4), dtype=np.float64)
    for i, box in enumerate(keep):
        x1, y1, x2, y2 = box
        if _fractions(box):
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        elif x2 > width + EDGE_TOLERANCE or y2 > height + EDGE_TOLERANCE:
            raise InputError(f"{label}: keep {_text(box)} lies outside the {width}x{height} photo "
                             "(pixels of the EXIF-oriented photo, or 0..1 fractions)")
        out[i] = (min(x1, width), min(y1, height), min(x2, width), min(y2, height))
        if out[i, 2] <= out[i, 0] or out[i, 3] <= out[i, 1]:
            raise InputError(f"{label}: keep {_text(box)} lies outside the {width}x{height} photo")
    return out


def resolve_focus(focus: Point | None, width: int, height: int, label: str) -> Point | None:
    """``focus`` -> (x, y) pixels of a ``width`` x ``height`` photo (fractions scaled); InputError when outside."""
    if focus is None:
        return None
    x, y = focus
    if _fractions(focus):
        return x * width, y * height
    if x > width + EDGE_TOLERANCE or y > height + EDGE_TOLERANCE:
        raise InputError(f"{label}: focus {_text(focus)} lies outside the {width}x{height} photo "
                         "(pixels of the EXIF-oriented photo, or 0..1 fractions)")
    return min(x, float(width)), min(y, float(height))
