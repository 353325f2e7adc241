"""Output files: planning their names (pure), checking them, and writing a photo's crops all-or-nothing.

    planned = plan_outputs(result, settings, out_dir, stem)    # paths + output sizes, no file touched
    check_outputs(planned, protected=[input_path], overwrite=False)   # OutputError if one must not be written
    write_outputs(planned, full_image, settings, exif, icc)    # atomic files; on failure none of this call's remain

Names come from the pattern of :class:`autocrop.settings.CropSettings` (fields {stem} {rank} {ratio}
{ext} {w} {h}). Every *rendered* name is checked: one path component, not empty, not hidden, at most
255 bytes, so no pattern (``{w:c}`` renders characters) can place a file outside the output folder.
:func:`check_outputs` then resolves every planned file (symbolic links followed): it must be that very
name inside its output folder (a link planted under an output name, to anywhere, is refused even with
``overwrite``), never an input, never a folder. Output sizes are bounded like inputs: at most
``PIL.Image.MAX_IMAGE_PIXELS`` pixels.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from autocrop.errors import OutputError, UsageError
from autocrop.io.encode import output_format, output_suffix, save_image
from autocrop.io.fs import remove_quietly, same_file
from autocrop.ratios import max_output_pixels, parse_ratio
from autocrop.system import available_cpus

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.results import Crop, CropResult
    from autocrop.settings import CropSettings

MAX_NAME_BYTES = 255
PREVIEW_SUFFIX = ".preview.png"


def render_name(pattern: str, stem: str, rank: int, ratio: str, ext: str, width: int, height: int) -> str:
    """One output file name from ``pattern``; raises :class:`UsageError` unless it is a safe plain name."""
    try:
        name = pattern.format(stem=stem, rank=rank, ratio=ratio, ext=ext, w=width, h=height)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as err:
        raise UsageError(f"name {pattern!r}: cannot be filled in ({err})") from None
    problem = name_problem(name)
    if problem:
        raise UsageError(f"name {pattern!r} gives {name!r}: {problem}")
    return name


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe output file name, or None when it is."""
    if not name.strip():
        return "an empty file name"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return "not a plain file name (it would leave the output folder)"
    if name.startswith("."):
        return "a hidden file name"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None


def output_size(width: int, height: int, settings: CropSettings) -> tuple[int, int]:
    """Pixel size of the output of a ``width`` x ``height`` crop under ``size``/``long_edge``/``upscale``.

    ``size`` and ``long_edge`` shrink a crop that is larger; a smaller crop keeps its own size unless
    ``upscale`` is set (then it is enlarged).
    """
    if settings.size is not None:
        sw, sh = settings.size
        return (sw, sh) if settings.upscale or (sw <= width and sh <= height) else (width, height)
    if settings.long_edge is not None:
        long_side = max(width, height)
        if long_side == settings.long_edge or (long_side < settings.long_edge and not settings.upscale):
            return width, height
        scale = settings.long_edge / long_side
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def plan_outputs(result: CropResult, settings: CropSettings, out_dir: Path, stem: str,
                 source_path: Path | None = None) -> CropResult:
    """``result`` with every crop's output ``path`` and output size filled in. Pure: no file is touched.

    out_dir: the folder of the outputs. stem: the ``{stem}`` of the names (the input's stem; batch adds
    a tag for inputs of one folder that share a stem). source_path: the input file, whose own suffix
    is kept when the output has its format (".JPG" stays). Raises :class:`UsageError` for a name
    pattern that renders an unsafe name or the same name twice.
    """
    fmt = output_format(result.format, settings.format)
    ext = output_suffix(fmt, source_path).lstrip(".")
    slugs = {spec.label: spec.slug for spec in settings.ratios}
    crops: list[Crop] = []
    limit = max_output_pixels()
    for crop in result.crops:
        width, height = output_size(crop.box[2] - crop.box[0], crop.box[3] - crop.box[1], settings)
        if limit is not None and width * height > limit:
            raise UsageError(f"an output of {width}x{height} = {width * height} pixels exceeds the limit of {limit} "
                             f"pixels (PIL.Image.MAX_IMAGE_PIXELS); ask for a smaller size or long_edge")
        slug = slugs.get(crop.ratio) or parse_ratio(crop.ratio).slug
        name = render_name(settings.name, stem, crop.rank, slug, ext, width, height)
        crops.append(replace(crop, path=Path(out_dir) / name, width=width, height=height))
    names = [c.path for c in crops]
    if len(set(names)) != len(names):
        raise UsageError(f"name {settings.name!r} gives several crops of {result.source} the same file name")
    preview = Path(out_dir) / f"{stem}{PREVIEW_SUFFIX}" if settings.preview else None
    return result.with_crops(crops, preview=preview)


def check_outputs(result: CropResult, protected: list[Path], overwrite: bool) -> None:
    """Raise :class:`OutputError` when a planned file of ``result`` must not be written.

    Never an input (``protected``: every input of the call, compared as files, so links count), never
    a folder, never a symbolic link or anything else that does not resolve to that same name in its
    output folder, and never an existing file unless ``overwrite``.
    """
    targets = [c.path for c in result.crops if c.path is not None]
    if result.preview is not None:
        targets.append(result.preview)
    for path in targets:
        if any(path == p or same_file(path, p) for p in protected):
            raise OutputError(path, "is an input photo of this run; it is never overwritten")
        if path.is_dir():
            raise OutputError(path, "is a folder")
        resolved = os.path.realpath(path)
        if path.is_symlink() or resolved != os.path.join(os.path.realpath(path.parent), path.name):
            raise OutputError(path, f"is a link to {resolved}; autocrop never writes through or over a link")
        if path.exists() and not overwrite:
            raise OutputError(path, "already exists (not replaced without overwrite)")


def mark_existing(result: CropResult) -> CropResult:
    """Dry runs: ``result`` with each crop's ``exists`` telling whether its planned file is already there."""
    return result.with_crops([replace(c, exists=c.path is not None and c.path.exists()) for c in result.crops])


def cut(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int] | None = None,
        scale: float = 1.0) -> Image.Image:
    """Crop ``box`` (integer pixels of the full-size photo) out of ``image``; resize to ``size`` (Lanczos).

    scale: full-size pixels per pixel of ``image`` (> 1 when ``image`` was decoded at a reduced JPEG
    scale, :func:`draft_factor`); the box is then mapped into ``image`` with sub-pixel precision and
    resampled straight to ``size`` in one step.
    """
    from PIL import Image as PILImage

    if scale == 1.0:
        out = image.crop(box)
        if size is None or out.size == (size[0], size[1]):
            return out
    else:
        if size is None:
            size = (box[2] - box[0], box[3] - box[1])
        out = image
    if out.mode in ("P", "1"):
        out = out.convert("RGBA" if "transparency" in out.info else "RGB")
    elif out.mode.startswith("I;16"):
        out = out.convert("I")
    target = (int(size[0]), int(size[1]))
    if scale == 1.0:
        return out.resize(target, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    region = (box[0] / scale, box[1] / scale, min(box[2] / scale, out.width), min(box[3] / scale, out.height))
    return out.resize(target, PILImage.Resampling.LANCZOS, box=region, reducing_gap=3.0)


#: JPEG DCT scale denominators libjpeg decodes directly (Pillow's ``Image.draft``), largest first.
DRAFT_FACTORS = (8, 4, 2)


def draft_factor(result: CropResult, settings: CropSettings) -> int:
    """The largest JPEG decode scale denominator (8, 4, 2, else 1) at which every crop of ``result``
    still has at least its output size in pixels (``Crop.width``/``height``, as set by
    :func:`sized_outputs`/:func:`plan_outputs`), so ``--size``/``--long-edge`` outputs need not decode
    the whole photo at full resolution. 1 when no crop is reduced by at least 2x or a preview is drawn.
    """
    if settings.preview or not result.crops:
        return 1
    for factor in DRAFT_FACTORS:
        if all((c.box[2] - c.box[0]) >= factor * c.width and (c.box[3] - c.box[1]) >= factor * c.height
               for c in result.crops):
            return factor
    return 1


def import_writers() -> None:
    """Import what writing crops needs ahead of the first save: Pillow's core format plugins
    (``PIL.Image.preinit``, which ``Image.save(..., format=...)`` runs on first use) and the encoding threads'
    pool (with ``logging``): ~15 ms. Called while the model loads in the background (a load mostly outside
    the GIL), the imports cost the first photo nothing.
    """
    import concurrent.futures  # noqa: F401 - for write_outputs

    from PIL import Image

    Image.preinit()


def write_outputs(result: CropResult, image: Image.Image, settings: CropSettings,
                  exif: bytes | None = None, icc: bytes | None = None, scale: float = 1.0) -> None:
    """Write every planned crop of ``result`` from the EXIF-oriented ``image`` (full resolution, or
    ``scale`` times smaller when decoded at a JPEG draft scale: see :func:`cut`).

    All-or-nothing: when one crop cannot be written, the files this call created are removed again
    and the first error is raised (:class:`OutputError` with the path and, from the OS, the errno).
    Crops are encoded in parallel threads (Pillow releases the GIL while encoding).
    """
    fmt = output_format(result.format, settings.format)
    jobs = [(crop, crop.path) for crop in result.crops if crop.path is not None]
    written: list[Path] = []  # list.append is atomic: safe from the encoding threads

    def save(crop: Crop, path: Path) -> None:
        save_image(cut(image, crop.box, (crop.width, crop.height), scale), path, fmt, settings.quality, exif=exif,
                   icc=icc, overwrite=settings.overwrite)
        written.append(path)

    errors: list[BaseException] = []
    # one thread per crop up to twice the cores: with 3 crops on 2 cores, 2 threads would leave a core idle
    # while the third crop encodes alone
    workers = min(len(jobs), 2 * available_cpus())
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor  # with logging: ~6 ms, only when writing

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autocrop-encode") as pool:
            futures = [pool.submit(save, crop, path) for crop, path in jobs]
            errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
    else:
        for crop, path in jobs:
            try:
                save(crop, path)
            except BaseException as exc:  # re-raised below, after the clean-up
                errors.append(exc)
                break
    if errors:
        for path in written:  # with overwrite a replaced file cannot come back; a new one is removed
            remove_quietly(path)
        raise errors[0]


def sized_outputs(result: CropResult, settings: CropSettings) -> CropResult:
    """``result`` with each crop's output ``width``/``height`` under ``size``/``long_edge`` (no paths)."""
    return result.with_crops([replace(c, width=w, height=h) for c in result.crops
                              for w, h in [output_size(c.box[2] - c.box[0], c.box[3] - c.box[1], settings)]])
