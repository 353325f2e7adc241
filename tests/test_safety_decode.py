"""Hostile and unusual photos (issue 13, items 6-8): TIFF in gives valid TIFF crops, compressed TIFFs
work, lying JPEG headers and page-count bombs are bounded, metadata bombs never crash and are never
copied into every crop, damaged EXIF prints no warning. Every input stays byte-identical.

All hostile files are generated here; the model is the FakeScorer (the subject is decoding and encoding).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import error_lines
from PIL import Image, ImageCms
from test_batch import FastSpec, opts
from test_safety_outputs import fast_cropper, no_traceback, snapshot

from autocrop.batch import run_batch
from autocrop.batch.manifest import MANIFEST_NAME, load_manifest
from autocrop.errors import InputError
from autocrop.io.decode import load_full, load_reduced
from autocrop.io.metadata import MAX_EXIF_BYTES, MAX_ICC_BYTES
from autocrop.settings import CropSettings


def _photo(example_photo: Path, size: tuple[int, int] = (300, 200)) -> Image.Image:
    with Image.open(example_photo) as im:
        return im.convert("RGB").resize(size)


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with(image: Image.Image, before_idat: bytes = b"", after_idat: bytes = b"") -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    data = buf.getvalue()
    ihdr_end = 8 + 25
    iend = data.rindex(b"IEND") - 4
    return data[:ihdr_end] + before_idat + data[ihdr_end:iend] + after_idat + data[iend:]


# a zlib stream that inflates to 64 MiB (a bomb for every metadata limit) from about 64 KiB
_BOMB = zlib.compress(b"\0" * (64 << 20), 9)


def _crop_checked(path: Path, out: Path, **settings: Any) -> list[Path]:
    """Crop ``path`` into ``out``; the input must stay byte-identical and every output must decode."""
    before = snapshot(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (Pillow's "Corrupt EXIF data", ...) fails the test
        result = fast_cropper().crop(path, out=out, **settings)
    assert snapshot(path) == before
    for file in result.paths:
        with Image.open(file) as im:
            im.load()
    return result.paths


# ------------------------------------------------------------------------------------------------ item 6


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"])
def test_tiff_inputs_give_valid_tiff_crops(tmp_path: Path, example_photo: Path, compression: str | None) -> None:
    src = tmp_path / "in.tif"
    params: dict[str, Any] = {"compression": compression} if compression else {}
    _photo(example_photo).save(src, **params)
    paths = _crop_checked(src, tmp_path / "out", top=2)
    for path in paths:
        with Image.open(path) as crop:
            assert crop.format == "TIFF" and crop.info.get("compression") == "tiff_adobe_deflate"
            tags = crop.getexif()
            assert (tags[256], tags[257]) == crop.size  # the crop's own size, not the source's 300x200
            assert crop.getexif().get_ifd(0x8769) == {}


def test_tiff_crop_keeps_real_exif_icc_and_orientation(tmp_path: Path, example_photo: Path) -> None:
    src = tmp_path / "cam.tif"
    icc = _srgb()
    exif = Image.Exif()
    exif[0x010F] = "AutocropCam"
    exif[0x0112] = 6  # shown rotated: 200x300
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    stored = _photo(example_photo)
    stored.save(src, exif=exif.tobytes(), icc_profile=icc)
    full, info = load_full(src)
    assert (info.width, info.height) == (200, 300) == full.size
    expected = np.asarray(stored.transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(np.asarray(full.convert("RGB")), expected)
    for fmt in (None, "jpeg", "png"):
        (path,) = _crop_checked(src, tmp_path / f"out_{fmt}", format=fmt)
        with Image.open(path) as crop:
            tags = crop.getexif()
            assert tags.get(0x010F) == "AutocropCam" and tags.get(0x0112) in (None, 1)
            assert tags.get_ifd(0x8769).get(0x9003) == "2024:05:01 10:00:00"
            assert crop.info.get("icc_profile") == icc
            if crop.format == "TIFF":  # its own layout tags, of its own size
                assert (tags[256], tags[257]) == crop.size
            else:  # EXIF of a JPEG/PNG: no layout tags of the source TIFF
                assert 0x0111 not in tags and 0x0117 not in tags and 256 not in tags


def test_tiff_structure_is_never_written_as_exif(tmp_path: Path, example_photo: Path) -> None:
    src = tmp_path / "plain.tif"
    _photo(example_photo).save(src, compression="tiff_lzw")
    (path,) = _crop_checked(src, tmp_path / "out", format="jpeg")
    with Image.open(path) as crop:
        assert not crop.info.get("exif")  # a plain TIFF has no EXIF to give


# ------------------------------------------------------------------------------------------------ item 7


def _lying_jpeg(example_photo: Path, width: int, height: int) -> bytes:
    data = bytearray(example_photo.read_bytes())
    i = 2
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length


@pytest.mark.parametrize("size", [(9400, 9400), (4000, 4000), (60000, 1000)])
def test_a_jpeg_header_claiming_more_pixels_than_its_data_is_an_input_error(
        tmp_path: Path, example_photo: Path, size: tuple[int, int]) -> None:
    src = tmp_path / "liar.jpg"
    src.write_bytes(_lying_jpeg(example_photo, *size))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="corrupt or truncated") as err:
        fast_cropper().crop(src, out=tmp_path / "out")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(src))
    assert snapshot(tmp_path) == before


def test_honest_jpegs_pass_the_data_bound(tmp_path: Path) -> None:
    """The bound is a proof, not a guess: the most compressible JPEGs (flat, progressive, 4:2:0) pass."""
    flat = Image.new("RGB", (2000, 1500), (90, 120, 200))
    for kwargs in ({}, {"progressive": True, "optimize": True}, {"subsampling": 0, "quality": 10}):
        path = tmp_path / f"flat{len(kwargs)}.jpg"
        flat.save(path, **kwargs)
        assert load_reduced(path, 256).info.width == 2000
    gray = tmp_path / "gray.jpg"
    Image.new("L", (3000, 3000), 128).save(gray, progressive=True, optimize=True)
    assert load_reduced(gray, 256).info.height == 3000


def _many_pages(n: int) -> bytes:
    """A little-endian TIFF of ``n`` 1x1 gray pages sharing one strip (each IFD links to the next)."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
               (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    body = b"".join(struct.pack("<HHI", t, k, c) + (struct.pack("<HH", v, 0) if k == 3 else struct.pack("<I", v))
                    for t, k, c, v in entries)
    size = 2 + len(body) + 4
    ifds = b"".join(struct.pack("<H", len(entries)) + body + struct.pack("<I", 12 + (i + 1) * size if i < n - 1 else 0)
                    for i in range(n))
    return b"II*\x00" + struct.pack("<I", 12) + b"\x80\0\0\0" + ifds


def test_a_tiff_with_100000_pages_opens_at_once(tmp_path: Path) -> None:
    src = tmp_path / "pages.tif"
    src.write_bytes(_many_pages(100_000))
    started = time.perf_counter()
    decoded = load_reduced(src, 256)
    full, _ = load_full(src)
    assert time.perf_counter() - started < 5.0  # the pages are never counted (was: 108 s)
    assert decoded.info.width == 1 and full.size == (1, 1)


# ------------------------------------------------------------------------------------------------ item 8


@pytest.mark.parametrize("case", ["iccp", "ztxt", "itxt", "ztxt_after_idat", "iccp_damaged", "many_texts"])
def test_png_metadata_bombs_are_dropped_with_a_note(tmp_path: Path, example_photo: Path, case: str) -> None:
    image = _photo(example_photo)
    chunks = {
        "iccp": (_chunk(b"iCCP", b"icc\0\0" + _BOMB), b""),
        "ztxt": (_chunk(b"zTXt", b"Comment\0\0" + _BOMB), b""),
        "itxt": (_chunk(b"iTXt", b"Comment\0\1\0\0\0" + _BOMB), b""),
        "ztxt_after_idat": (b"", _chunk(b"zTXt", b"Comment\0\0" + _BOMB)),
        "iccp_damaged": (_chunk(b"iCCP", b"icc\0\0" + b"\x78\x9cnot zlib"), b""),
        "many_texts": (b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + zlib.compress(b"x" * 1000_000)) for i in range(70)),
                       b""),
    }
    src = tmp_path / "bomb.png"
    src.write_bytes(_png_with(image, *chunks[case]))
    (path,) = _crop_checked(src, tmp_path / "out")
    _, info = load_full(src)
    assert info.notes and all("\n" not in note for note in info.notes) and info.icc is None


def test_png_metadata_bomb_on_the_command_line(cli: Any, tmp_path: Path, example_photo: Path) -> None:
    src = tmp_path / "bomb.png"
    src.write_bytes(_png_with(_photo(example_photo), _chunk(b"iCCP", b"icc\0\0" + _BOMB)))
    code, out, err = cli([src, "--out", tmp_path / "out"])
    no_traceback(err)
    assert code == 0 and not error_lines(err) and len(list((tmp_path / "out").iterdir())) == 1


def test_oversized_icc_and_exif_are_not_copied_into_every_crop(tmp_path: Path, example_photo: Path) -> None:
    image = _photo(example_photo)
    big_icc = os.urandom(3 << 20)
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + b"x" * (20 << 20)  # a 20 MB user comment
    cases = {"icc.jpg": {"icc_profile": big_icc}, "icc.webp": {"icc_profile": big_icc},
             "exif.png": {"exif": exif.tobytes()}, "exif.webp": {"exif": exif.tobytes()},
             "exif.tif": {"exif": exif.tobytes()}}
    for name, params in cases.items():
        src = tmp_path / name
        image.save(src, **params)
        paths = _crop_checked(src, tmp_path / f"out_{name}", top=3)
        assert all(p.stat().st_size < 2 << 20 for p in paths)  # neither 3 MiB nor 20 MB per crop
        _, info = load_full(src)
        assert len(info.notes) == 1 and "not copied to the crops" in info.notes[0]
        assert info.exif is None or len(info.exif) <= MAX_EXIF_BYTES
        assert info.icc is None or len(info.icc) <= MAX_ICC_BYTES


def test_notes_reach_the_batch_manifest(tmp_path: Path, example_photo: Path, fake_scorer: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _photo(example_photo).save(src / "big.jpg", icc_profile=os.urandom(2 << 20))
    spec = FastSpec(settings=CropSettings(), scorer=fake_scorer)
    tally = run_batch(opts(src, out), spec, out_stream=io.StringIO())
    assert tally.complete
    record = load_manifest(out / MANIFEST_NAME).records["big.jpg"]
    assert record["notes"] == ["ICC profile of 2.0 MiB not copied to the crops (more than 1.0 MiB)"]


def _damaged_exif() -> bytes:
    """EXIF whose Make tag points far past the end of the block, and whose next-IFD link is cut."""
    return b"Exif\0\0II*\0\x08\0\0\0\x02\0\x0f\x01\x02\0\xff\xff\xff\x00\x00\x10\0\0" \
           b"\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\x08\0\0"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_damaged_exif_prints_no_warning(tmp_path: Path, example_photo: Path, suffix: str,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / f"bad{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's TIFF writer parses (and complains about) it too
        _photo(example_photo).save(src, exif=_damaged_exif())
    filters = list(warnings.filters)
    paths = _crop_checked(src, tmp_path / "out")  # warnings are errors inside
    assert paths and warnings.filters == filters  # no process-wide filter left behind
    assert capfd.readouterr().err == ""


def test_damaged_exif_on_the_command_line_is_silent(cli: Any, tmp_path: Path, example_photo: Path) -> None:
    src = tmp_path / "bad.jpg"
    _photo(example_photo).save(src, exif=_damaged_exif())
    code, out, err = cli([src, "--out", tmp_path / "out", "--json"])
    assert code == 0 and "Warning" not in err and "Corrupt" not in err, err


def test_metadata_threads_leave_warning_filters_alone(tmp_path: Path, example_photo: Path) -> None:
    """Many threads opening photos with damaged EXIF at once: the process-wide filters end as they began."""
    from concurrent.futures import ThreadPoolExecutor

    srcs = []
    for i in range(8):
        srcs.append(tmp_path / f"p{i}.jpg")
        _photo(example_photo).save(srcs[-1], exif=_damaged_exif())
    filters = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: load_reduced(p, 128), srcs * 4))
    assert warnings.filters == filters


def test_inputs_stay_identical_in_a_batch_of_hostile_files(tmp_path: Path, example_photo: Path,
                                                           fake_scorer: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    image = _photo(example_photo)
    image.save(src / "lzw.tif", compression="tiff_lzw")
    (src / "liar.jpg").write_bytes(_lying_jpeg(example_photo, 9400, 9400))
    (src / "bomb.png").write_bytes(_png_with(image, _chunk(b"zTXt", b"c\0\0" + _BOMB)))
    (src / "pages.tif").write_bytes(_many_pages(20_000))
    image.save(src / "bad_exif.jpg", exif=_damaged_exif())
    shutil.copy(example_photo, src / "plain.jpg")
    before = snapshot(src)
    spec = FastSpec(settings=CropSettings(), scorer=fake_scorer)
    tally = run_batch(opts(src, out), spec, out_stream=io.StringIO())
    assert snapshot(src) == before
    assert dict(tally.failures).keys() == {"liar.jpg"} and tally.ok == 5
