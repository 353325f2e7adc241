"""Decoding and encoding (autocrop.io.decode / .encode / .sources): orientation, draft decoding, formats, modes,
metadata, memory sources and one-line errors. Synthetic images and the packaged example photo only."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import piexif
import pytest
from conftest import png_header_only
from PIL import Image, ImageCms, ImageOps

from autocrop.errors import InputError, OutputError, UsageError
from autocrop.io import decode, encode, sources


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pattern(width: int = 300, height: int = 200) -> Image.Image:
    """An asymmetric RGB test card: red left third, green bottom band, blue elsewhere."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[...] = (20, 40, 200)
    arr[:, : width // 3] = (220, 30, 30)
    arr[height * 3 // 4 :, width // 3 :] = (30, 200, 40)
    return Image.fromarray(arr)


def _photo(example_photo: Path) -> Image.Image:
    with Image.open(example_photo) as im:
        return im.convert("RGB")


def _exif(orientation: int, with_thumbnail: bool = False) -> bytes:
    data = {
        "0th": {piexif.ImageIFD.Orientation: orientation, piexif.ImageIFD.Make: b"AutocropTestCam"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 10:00:00",
                 piexif.ExifIFD.PixelXDimension: 300, piexif.ExifIFD.PixelYDimension: 200},
        "1st": {}, "thumbnail": None,
    }
    if with_thumbnail:
        thumb = io.BytesIO()
        _pattern(60, 40).save(thumb, "JPEG")
        data["1st"] = {piexif.ImageIFD.JPEGInterchangeFormat: 0, piexif.ImageIFD.JPEGInterchangeFormatLength: 0}
        data["thumbnail"] = thumb.getvalue()
    return piexif.dump(data)


def _current_umask() -> int:
    """The process umask, read (and restored at once) by the test; the library never calls os.umask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _pattern().save(path, quality=95, exif=_exif(orientation))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.int16)
    full, info = decode.load_full(path)
    assert info.orientation == orientation
    assert (info.width, info.height) == full.size == expected.shape[1::-1]
    assert np.abs(np.asarray(full, dtype=np.int16) - expected).max() <= 2
    reduced = decode.load_reduced(path, 100)
    assert reduced.scale == 2.0  # 300x200: 1/2 keeps the short side >= 100, 1/4 would not
    assert min(reduced.image.size) == 100
    small = np.asarray(reduced.image.resize(full.size, Image.Resampling.NEAREST), dtype=np.int16)
    assert np.median(np.abs(small - expected)) <= 4


def test_draft_decoding_scale_maps_boxes_exactly(tmp_path: Path, example_photo: Path) -> None:
    path = tmp_path / "big.jpg"
    _photo(example_photo).resize((3000, 2001), Image.Resampling.BICUBIC).save(path, quality=90)
    reduced = decode.load_reduced(path, 256)
    assert reduced.scale == 4.0 and reduced.full is None
    assert reduced.image.size == (750, 501)  # ceil(2001 / 4)
    assert min(reduced.image.size) >= 256
    full, _ = decode.load_full(path)
    box = np.array([600, 400, 2200, 1600])
    a = np.asarray(full.crop(tuple(box)), dtype=np.float64).mean(axis=(0, 1))
    b = np.asarray(reduced.image.crop(tuple(box // 4)), dtype=np.float64).mean(axis=(0, 1))
    assert np.abs(a - b).max() < 1.5


def test_non_jpeg_reduced_keeps_full_image(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    _pattern(1200, 800).save(path)
    reduced = decode.load_reduced(path, 256)
    assert reduced.full is not None and reduced.full.size == (1200, 800)
    assert reduced.scale == 3.0 and reduced.image.size == (400, 267)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif"), ("BMP", ".bmp"),
                                        ("GIF", ".gif"), ("AVIF", ".avif")])
def test_formats_decode(tmp_path: Path, fmt: str, suffix: str, example_photo: Path) -> None:
    from PIL import features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    path = tmp_path / f"photo{suffix}"
    photo = _photo(example_photo)
    photo.save(path, format=fmt)
    reduced = decode.load_reduced(path, 256)
    assert reduced.image.mode == "RGB"
    assert (reduced.info.width, reduced.info.height) == photo.size
    full, info = decode.load_full(path)
    assert full.size == photo.size and info.format == fmt


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    full, info = decode.load_full(path)
    assert info.format == "GIF"
    assert decode.to_rgb(full).getpixel((5, 5))[0] > 200  # red: the first frame
    assert encode.output_format("GIF", None) == "PNG"


def test_modes_to_rgb() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    la = Image.new("LA", (4, 4), (0, 255))
    assert decode.to_rgb(la).getpixel((0, 0)) == (0, 0, 0)
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] * 256)
    p.info["transparency"] = 0
    assert decode.to_rgb(p).getpixel((1, 1)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    assert decode.to_rgb(cmyk).getpixel((0, 0)) == (255, 255, 255)
    i16 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert i16.mode.startswith("I;16")
    assert [decode.to_rgb(i16).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    i32 = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.int32), mode="I")
    assert [decode.to_rgb(i32).getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]
    gray = Image.new("L", (2, 2), 77)
    assert decode.to_rgb(gray).getpixel((0, 0)) == (77, 77, 77)


def test_cmyk_jpeg_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (320, 240), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    reduced = decode.load_reduced(path, 100)
    r, g, b = reduced.image.getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60
    full, info = decode.load_full(path)
    out = tmp_path / "crop.jpg"
    encode.save_image(full.crop((0, 0, 100, 100)), out, "JPEG")
    with Image.open(out) as im:
        assert im.mode == "CMYK"


# --------------------------------------------------------------------------------------- memory sources


def test_bytes_and_binary_file_object_decode_like_the_path(tmp_path: Path, example_photo: Path) -> None:
    png = tmp_path / "photo.png"
    _photo(example_photo).resize((900, 600)).save(png)
    for path in (example_photo, png):  # JPEG (draft decoding) and PNG (full decode + box reduction)
        want = decode.load_reduced(path, 256)
        want_full, _ = decode.load_full(path)
        data = path.read_bytes()
        with open(path, "rb") as fh:
            from_file = decode.load_reduced(fh, 256)
        for got in (decode.load_reduced(data, 256), decode.load_reduced(sources.MemorySource(data, "up"), 256),
                    from_file):
            assert got.scale == want.scale and got.image.size == want.image.size
            np.testing.assert_array_equal(np.asarray(got.image), np.asarray(want.image))
            assert (got.info.width, got.info.height, got.info.format) == (want.info.width, want.info.height,
                                                                          want.info.format)
        full, info = decode.load_full(io.BytesIO(data))
        np.testing.assert_array_equal(np.asarray(full), np.asarray(want_full))
    assert from_file.label == str(png)  # a named file object is reported by its name
    assert decode.load_reduced(example_photo.read_bytes(), 256).label == "<bytes>"


def test_as_source_kinds(tmp_path: Path, example_photo: Path) -> None:
    assert sources.as_source(str(example_photo)) == example_photo
    assert sources.as_source(example_photo) is example_photo
    memory = sources.as_source(bytearray(b"abc"))
    assert memory == sources.MemorySource(b"abc", "<bytes>", "image")
    with open(example_photo, "rb") as fh:
        named = sources.as_source(fh)
    assert isinstance(named, sources.MemorySource)
    assert (named.label, named.stem) == (str(example_photo), "coffee")
    anonymous = sources.as_source(io.BytesIO(b"xyz"))
    assert anonymous == sources.MemorySource(b"xyz", "<file object>", "image")
    with pytest.raises(InputError, match=r"^int: not a photo"):
        sources.as_source(42)  # type: ignore[arg-type]  # a wrong type on purpose


@pytest.mark.parametrize("label", [None, "upload.jpg"])
def test_empty_memory_source_is_one_line_error_naming_the_label(label: str | None) -> None:
    source = sources.MemorySource(b"") if label is None else sources.MemorySource(b"", label=label)
    for loader in (lambda s: decode.load_reduced(s, 256), decode.load_full):
        with pytest.raises(InputError) as err:
            loader(source)
        message = str(err.value)
        assert message.startswith(f"{source.label}: ") and "empty" in message and "\n" not in message, message


def test_bad_memory_sources_are_one_line_errors_naming_the_label(example_photo: Path) -> None:
    data = example_photo.read_bytes()
    cases = {
        sources.MemorySource(b"this is not a photo", "paste-1"): "not an image",
        sources.MemorySource(data[: len(data) // 2], "half.jpg"): "corrupt or truncated",
        sources.MemorySource(png_header_only(60_000, 60_000), "bomb"): "decompression-bomb",
    }
    for source, expected in cases.items():
        with pytest.raises(InputError) as err:
            decode.load_full(source)
        message = str(err.value)
        assert message.startswith(f"{source.label}: ") and expected in message and "\n" not in message, message


def test_text_file_object_is_an_input_error(tmp_path: Path, example_photo: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    with open(notes) as fh, pytest.raises(InputError, match=r"binary mode"):
        decode.load_reduced(fh, 256)
    with pytest.raises(InputError, match=r"^<file object>: .*binary mode"):
        decode.load_reduced(io.StringIO("not a photo"), 256)  # type: ignore[arg-type]  # on purpose
    # a real photo opened in text mode: one InputError too, not a UnicodeDecodeError from reading it
    with open(example_photo) as fh, pytest.raises(InputError) as err:
        decode.load_reduced(fh, 256)
    assert str(err.value).startswith(f"{example_photo}: ") and "\n" not in str(err.value)


def test_reduce_image_and_pil_of() -> None:
    image = _pattern(1200, 800)
    reduced = decode.reduce_image(image, 256, label="<api>")
    assert reduced.scale == 3.0 and reduced.image.size == (400, 267) and reduced.full is image
    assert reduced.label == "<api>" and (reduced.info.width, reduced.info.height) == (1200, 800)
    arr = np.zeros((10, 20, 3), np.uint8)
    assert sources.pil_of(arr).size == (20, 10)
    assert sources.pil_of(image) is image
    assert sources.pil_of(b"bytes") is None and sources.pil_of(Path("x.jpg")) is None
    with pytest.raises(InputError, match=r"^<array>: expected uint8"):
        sources.pil_of(np.zeros((10, 20, 3), np.float32))
    with pytest.raises(InputError, match=r"^<api>: image has no pixels"):
        decode.reduce_image(Image.new("RGB", (0, 0)), 256, label="<api>")


# ------------------------------------------------------------------------------------------- encoding


def test_16bit_png_decodes_and_png_output_keeps_16bit(tmp_path: Path) -> None:
    arr = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 20).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    full, info = decode.load_full(path)
    assert info.mode.startswith("I")
    out = tmp_path / "out.png"
    encode.save_image(full.crop((0, 0, 32, 24)), out, "PNG")
    with Image.open(out) as im:
        assert im.mode.startswith("I")
        assert int(np.asarray(im).max()) == int(arr[:24, :32].max())
    jpg = tmp_path / "out.jpg"
    encode.save_image(full, jpg, "JPEG")
    with Image.open(jpg) as im:
        assert im.mode == "L"


def test_convert_for_format_rules() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out, _ = encode.convert_for_format(rgba, "JPEG", None)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    out, _ = encode.convert_for_format(rgba, "PNG", None)
    assert out.mode == "RGBA"
    cmyk = Image.new("CMYK", (4, 4))
    assert encode.convert_for_format(cmyk, "JPEG", b"icc")[0].mode == "CMYK"
    out, icc = encode.convert_for_format(cmyk, "WEBP", None)
    assert out.mode == "RGB" and icc is None
    la = Image.new("LA", (4, 4))
    assert encode.convert_for_format(la, "WEBP", None)[0].mode == "RGBA"
    assert encode.convert_for_format(Image.new("L", (2, 2)), "JPEG", None)[0].mode == "L"


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")])
def test_save_keeps_exif_with_orientation_reset_and_icc(tmp_path: Path, fmt: str, suffix: str) -> None:
    src = tmp_path / "src.jpg"
    icc = _srgb_icc()
    _pattern().save(src, quality=95, exif=_exif(6, with_thumbnail=True), icc_profile=icc)
    full, info = decode.load_full(src)
    assert info.icc == icc and info.exif
    crop = full.crop((10, 20, 110, 170))
    out = tmp_path / f"crop{suffix}"
    encode.save_image(crop, out, fmt, exif=info.exif, icc=info.icc)
    with Image.open(out) as im:
        assert im.size == (100, 150)
        assert im.info.get("icc_profile") == icc
        exif = im.getexif()
        assert exif.get(0x0112) == 1
        assert exif.get(0x010F) == "AutocropTestCam"
        sub = exif.get_ifd(0x8769)
        assert sub.get(0xA002) == 100 and sub.get(0xA003) == 150  # pixel dimensions of the crop
    if fmt == "JPEG":
        loaded = piexif.load(str(out))
        assert loaded["thumbnail"] is None  # the thumbnail of the uncropped photo is not kept
        assert loaded["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:05:01 10:00:00"


def test_jpeg_quality_default_is_high(tmp_path: Path, example_photo: Path) -> None:
    full, _ = decode.load_full(example_photo)
    out = tmp_path / "q.jpg"
    encode.save_image(full, out, "JPEG")
    low = tmp_path / "q50.jpg"
    encode.save_image(full, low, "JPEG", quality=50)
    assert out.stat().st_size > 2 * low.stat().st_size


def test_encode_bytes_matches_the_saved_file(tmp_path: Path) -> None:
    out = tmp_path / "same.png"
    encode.save_image(_pattern(), out, "PNG")
    assert encode.encode_bytes(_pattern(), "PNG") == out.read_bytes()


def test_atomic_write_refuses_existing_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists") as err:
        encode.save_image(_pattern(), out, "PNG")
    assert err.value.errno is None and err.value.path == out and not err.value.fatal
    assert "--overwrite" not in str(err.value)  # library messages never name CLI flags
    assert out.read_bytes() == b"keep me"
    encode.save_image(_pattern(), out, "PNG", overwrite=True)
    with Image.open(out) as im:
        assert im.size == (300, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_disk_full_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def save_then_fail(self: Image.Image, fp, format=None, **params) -> None:  # noqa: A002, ANN001
        fp.write(b"\xff\xd8 partial data")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    out = tmp_path / "crop.jpg"
    with pytest.raises(OutputError) as err:
        encode.save_image(_pattern(), out, "JPEG")
    assert str(err.value) == f"{out}: cannot write: No space left on device"
    assert err.value.errno == errno.ENOSPC and err.value.fatal
    assert isinstance(err.value.__cause__, OSError)
    assert list(tmp_path.iterdir()) == []


def test_output_file_mode_follows_umask(tmp_path: Path) -> None:
    out = tmp_path / "m.png"
    encode.save_image(_pattern(), out, "PNG")
    assert (out.stat().st_mode & 0o777) == (0o666 & ~_current_umask())
    assert os.access(out, os.R_OK)


# --------------------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize("side", [10_000, 60_000])  # above the limit (warning zone) and above 2x (error zone)
def test_decompression_bomb_is_one_line_error(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(InputError) as err:
        decode.load_reduced(path, 256)
    message = str(err.value)
    assert message.startswith(str(path)) and "decompression-bomb" in message and "\n" not in message


def test_bad_inputs_are_one_line_errors(tmp_path: Path, example_photo: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    truncated = tmp_path / "truncated.jpg"
    data = example_photo.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    photo = _photo(example_photo).resize((300, 200))
    garbage = bytes((i * 37 + 11) % 256 for i in range(400))
    corrupt = {}
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        photo.save(buffer, fmt)
        raw = bytearray(buffer.getvalue())
        raw[len(raw) // 2 : len(raw) // 2 + 400] = garbage
        corrupt[fmt] = tmp_path / f"corrupt.{fmt.lower()}"
        corrupt[fmt].write_bytes(bytes(raw))
    cases = {
        tmp_path / "missing.jpg": "no such file",
        tmp_path: "is a directory",
        empty: "empty file",
        text: "not an image",
        truncated: "corrupt or truncated",
        corrupt["PNG"]: "corrupt or truncated",
        corrupt["JPEG"]: "corrupt or truncated",
    }
    for path, expected in cases.items():
        for loader in (lambda p: decode.load_reduced(p, 256), decode.load_full):
            with pytest.raises(InputError) as err:
                loader(path)
            message = str(err.value)
            assert message.startswith(f"{path}:"), message
            assert message.count(str(path)) == 1, message  # the path is named once
            assert expected in message and "\n" not in message, message


def test_heic_without_extra_names_the_extra(tmp_path: Path) -> None:
    if decode.heif_available():
        pytest.skip("pillow-heif is installed here")
    fake = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    for name in ("photo.heic", "photo_renamed.jpg"):
        path = tmp_path / name
        path.write_bytes(fake)
        with pytest.raises(InputError, match=r"pillow-heif.*autocrop-views\[heif\]"):
            decode.load_reduced(path, 256)


def test_output_format_and_suffix() -> None:
    assert encode.output_format("JPEG", None) == "JPEG"
    assert encode.output_format("PNG", "webp") == "WEBP"
    assert encode.output_format("HEIF", None) == "JPEG"
    assert encode.output_suffix("JPEG", Path("a/IMG_1.JPG")) == ".JPG"
    assert encode.output_suffix("JPEG", Path("a/x.png")) == ".jpg"
    with pytest.raises(UsageError, match=r"^format 'gif': unknown output format") as err:
        encode.output_format("JPEG", "gif")
    assert "--" not in str(err.value)  # names the parameter, not a CLI flag
