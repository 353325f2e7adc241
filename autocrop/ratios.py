"""Aspect ratios and output sizes as users write them: ``16:9``, ``original``, ``free``, ``1920x1080``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from autocrop.errors import UsageError
from autocrop.geometry import reduce_ratio

MAX_RATIO = 20  # the most extreme ratio accepted, as long side : short side
MAX_SIZE = 65535  # the largest output side in pixels (JPEG's own limit)


@dataclass(frozen=True)
class RatioSpec:
    """An asked aspect ratio: ``w:h`` (reduced integers), ``original`` (the photo's own) or ``free``."""

    kind: str  # "fixed" | "original" | "free"
    w: int = 0
    h: int = 0

    @property
    def label(self) -> str:
        """What the user typed, normalised: ``16:9``, ``original``, ``free``."""
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
            return simple_ratio(width, height)
        return None


FREE = RatioSpec("free")
_RATIO_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*[:x/]\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)


def parse_ratio(text: str) -> RatioSpec:
    """``16:9`` / ``16x9`` / ``16/9`` / ``1.91:1`` / ``original`` / ``free`` -> :class:`RatioSpec`.

    Raises :class:`UsageError` ("ratio 16:0: ...") for anything else, zero or negative terms included.
    """
    raw = str(text).strip()
    low = raw.lower()
    if low in ("original", "orig", "source"):
        return RatioSpec("original")
    if low in ("free", "any", "none"):
        return FREE
    if raw.startswith("-") or re.search(r"[:x/]\s*-", raw):
        raise UsageError(f"ratio {raw}: ratio terms must be positive (e.g. 16:9)")
    match = _RATIO_RE.match(raw)
    if not match:
        raise UsageError(f"ratio {raw!r}: not a ratio (use W:H such as 16:9, 'original' or 'free')")
    if match.group(1).isdigit() and match.group(2).isdigit():  # W:H in whole numbers (no fractions import)
        if int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
            raise UsageError(f"ratio {raw}: ratio terms must be positive (e.g. 16:9)")
        return _fixed(raw, *reduce_ratio(int(match.group(1)), int(match.group(2))))
    from fractions import Fraction

    try:
        fw = Fraction(match.group(1)).limit_denominator(1000)
        fh = Fraction(match.group(2)).limit_denominator(1000)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"ratio {raw}: not a ratio (use W:H such as 16:9)") from None
    if fw <= 0 or fh <= 0:
        raise UsageError(f"ratio {raw}: ratio terms must be positive (e.g. 16:9)")
    frac = fw / fh
    return _fixed(raw, *reduce_ratio(frac.numerator, frac.denominator))


def _fixed(raw: str, w: int, h: int) -> RatioSpec:
    """The exact ratio ``w:h`` (lowest terms) asked as ``raw``; :class:`UsageError` when it is too extreme."""
    if max(w, h) / min(w, h) > MAX_RATIO:
        raise UsageError(f"ratio {raw}: too extreme (at most {MAX_RATIO}:1)")
    return RatioSpec("fixed", w, h)


def parse_ratios(values: Iterable[str | RatioSpec] | str | RatioSpec | None) -> tuple[RatioSpec, ...]:
    """Ratios (strings, each may be comma-separated, or specs) -> distinct specs in order; none -> ``(FREE,)``."""
    if values is None:
        return (FREE,)
    if isinstance(values, (str, RatioSpec)):
        values = [values]
    specs: list[RatioSpec] = []
    for value in values:
        parts = [value] if isinstance(value, RatioSpec) else [p for p in str(value).split(",") if p.strip()]
        for part in parts:
            spec = part if isinstance(part, RatioSpec) else parse_ratio(part)
            if spec not in specs:
                specs.append(spec)
    return tuple(specs) or (FREE,)


def parse_size(value: str | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """``"1920x1080"`` or ``(1920, 1080)`` -> (1920, 1080) pixels; None or "" stays None.

    Each side 1..65535 pixels and at most ``PIL.Image.MAX_IMAGE_PIXELS`` pixels in all (the limit
    inputs have, 89,478,485 by default), so an output can never exhaust memory. Raises
    :class:`UsageError` (one line).
    """
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UsageError(f"size {value!r}: use (width, height) in whole pixels, e.g. (1920, 1080)")
        w, h = int(value[0]), int(value[1])
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(value))
        if not match:
            raise UsageError(f"size {value!r}: use WIDTHxHEIGHT in pixels, e.g. 1920x1080")
        w, h = int(match.group(1)), int(match.group(2))
    if not (1 <= w <= MAX_SIZE and 1 <= h <= MAX_SIZE):
        raise UsageError(f"size {w}x{h}: width and height must be 1..{MAX_SIZE} pixels")
    limit = max_output_pixels()
    if limit is not None and w * h > limit:
        raise UsageError(f"size {w}x{h}: {w * h} pixels exceeds the limit of {limit} pixels "
                         f"(PIL.Image.MAX_IMAGE_PIXELS, the decompression-bomb limit)")
    return w, h


def max_output_pixels() -> int | None:
    """The most pixels one output may have: ``PIL.Image.MAX_IMAGE_PIXELS`` (None when it is switched off)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit is not None else None


def simple_ratio(width: int, height: int, tolerance: float = 0.005, max_term: int = 64) -> tuple[int, int]:
    """The simplest ``a:b`` (terms <= ``max_term``) within ``tolerance`` (relative) of ``width:height``.

    Used for ``original``: a 1024x683 photo is 3:2 to 0.05 %, and 3:2 leaves many exact crop sizes,
    whereas 1024:683 exactly admits only the whole photo. Falls back to the exact ratio.
    """
    target = width / height
    for den in range(1, max_term + 1):
        num = round(target * den)
        if 1 <= num <= max_term and abs(num / den - target) / target <= tolerance:
            return reduce_ratio(num, den)
    return reduce_ratio(width, height)
