"""End-to-end tests of ``autocrop crop`` (and the ``autocrop IMAGE`` shorthand) on real photos.

Uses the packaged default model when it exists (else an untrained model file, see conftest.model_file).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image, ImageCms

from autocrop.candidates import box_iou
from autocrop.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression-bomb candidate)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("autocrop: error:")]


@pytest.fixture()
def photos(tmp_path: Path, gaicd_images: list[Path]) -> list[Path]:
    """Three real GAICD photos copied into a temp folder (the shared data is never written)."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [Path(shutil.copy(src, folder / src.name)) for src in gaicd_images[:3]]


def test_real_photos_exact_ratios_distinct_crops_input_untouched(tmp_path: Path, photos: list[Path], model_file: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    hashes = {p: sha256(p) for p in photos}
    out = tmp_path / "out"
    code, stdout, stderr = run_cli([*photos, "--ratio", "16:9", "--ratio", "4:5", "--top", "3", "--out", out,
                                    "--json", "--model", model_file], capsys)
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["failed"] == 0 and len(doc["results"]) == 3
    for result, photo in zip(doc["results"], photos):
        assert result["input"] == str(photo) and result["error"] is None
        with Image.open(photo) as im:
            full = im.convert("RGB")
        assert (result["width"], result["height"]) == full.size
        for ratio, (rw, rh) in (("16:9", (16, 9)), ("4:5", (4, 5))):
            crops = [c for c in result["crops"] if c["ratio"] == ratio]
            assert [c["rank"] for c in crops] == [1, 2, 3]
            boxes = np.array([c["box"] for c in crops], dtype=float)
            iou = box_iou(boxes, boxes)
            assert np.all(iou[~np.eye(3, dtype=bool)] <= 0.7), "the three crops are distinct views"
            assert [c["score"] for c in crops] == sorted((c["score"] for c in crops), reverse=True)
            for c in crops:
                x1, y1, x2, y2 = c["box"]
                path = Path(c["path"])
                assert path.parent == out and path.name == f"{photo.stem}.{rw}x{rh}.crop{c['rank']}.jpg"
                assert np.allclose(c["box_norm"], [x1 / full.width, y1 / full.height, x2 / full.width, y2 / full.height],
                                   atol=1e-5)
                with Image.open(path) as written:
                    assert written.format == "JPEG"
                    assert written.size == (x2 - x1, y2 - y1) == (c["width"], c["height"])
                    assert written.width * rh == written.height * rw, "exact ratio to the pixel"
                    diff = np.abs(np.asarray(written.convert("RGB"), dtype=np.int16)
                                  - np.asarray(full.crop((x1, y1, x2, y2)), dtype=np.int16))
                    assert diff.mean() < 3.0, "the file holds exactly that region"
    assert {p: sha256(p) for p in photos} == hashes
    assert "16:9" in stderr  # the human table went to stderr


def test_shorthand_command_in_a_fresh_process(tmp_path: Path, photos: list[Path], model_file: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOCROP_MODEL": str(model_file)}
    exe = Path(sys.executable).parent / "autocrop"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "autocrop"]
    proc = subprocess.run([*command, str(photos[0]), "--ratio", "16:9", "--top", "2"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for rank in (1, 2):
        out = photos[0].with_name(f"{photos[0].stem}.crop{rank}.jpg")
        with Image.open(out) as im:
            assert im.width * 9 == im.height * 16
    assert "rank" in proc.stdout and str(photos[0].with_name(f"{photos[0].stem}.crop1.jpg")) in proc.stdout


def test_exif_orientation_and_icc_kept(tmp_path: Path, fcdb_images: list[Path], model_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with Image.open(fcdb_images[0]) as im:
        upright = im.convert("RGB")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"RealCam"},
                        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2023:07:14 18:30:00"}})
    src = tmp_path / "rotated.jpg"
    # stored sideways; orientation 6 ("rotate 90 CW to view") makes it upright again
    upright.transpose(Image.Transpose.ROTATE_90).save(src, quality=95, exif=exif, icc_profile=icc)
    before = sha256(src)
    code, stdout, stderr = run_cli([src, "--ratio", "1:1", "--top", "2", "--json", "--model", model_file], capsys)
    assert code == 0, stderr
    result = json.loads(stdout)["results"][0]
    assert (result["width"], result["height"]) == upright.size  # boxes are in oriented pixels
    for crop in result["crops"]:
        with Image.open(crop["path"]) as out:
            assert out.getexif().get(0x0112) == 1
            assert out.getexif().get(0x010F) == "RealCam"
            assert out.info.get("icc_profile") == icc
            assert out.width == out.height
            diff = np.abs(np.asarray(out.convert("RGB"), dtype=np.int16)
                          - np.asarray(upright.crop(tuple(crop["box"])), dtype=np.int16))
            assert diff.mean() < 4.0, "crop taken from the upright photo"
    assert sha256(src) == before


def test_preview_dry_run_and_overwrite(tmp_path: Path, photos: list[Path], model_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    photo = photos[0]
    out = tmp_path / "o"
    code, stdout, _ = run_cli([photo, "--top", "2", "--out", out, "--dry-run", "--model", model_file], capsys)
    assert code == 0 and "would write" in stdout and not out.exists()
    code, stdout, stderr = run_cli([photo, "--top", "2", "--out", out, "--preview", "--model", model_file], capsys)
    assert code == 0, stderr
    preview = out / f"{photo.stem}.preview.png"
    with Image.open(preview) as im:
        assert im.format == "PNG" and max(im.size) <= 1600
    first = out / f"{photo.stem}.crop1.jpg"
    stamp = sha256(first)
    code, _, stderr = run_cli([photo, "--top", "2", "--out", out, "--model", model_file], capsys)
    lines = error_lines(stderr)
    assert code == 1 and len(lines) == 1 and "already exists" in lines[0] and str(out) in lines[0]
    assert sha256(first) == stamp
    code, _, stderr = run_cli([photo, "--top", "2", "--out", out, "--quality", "60", "--overwrite", "--model", model_file],
                              capsys)
    assert code == 0, stderr
    assert sha256(first) != stamp
    # the input itself is never overwritten, even with --overwrite
    code, _, stderr = run_cli([photo, "--name", "{stem}", "--out", photo.parent, "--overwrite", "--model", model_file],
                              capsys)
    assert code == 1 and "would overwrite the input" in stderr


def test_size_format_name_options(tmp_path: Path, photos: list[Path], model_file: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code, stdout, stderr = run_cli([photos[1], "--size", "320x180", "--top", "2", "--format", "webp", "--out", out,
                                    "--name", "{stem}-{ratio}-{rank}-{w}x{h}", "--json", "--model", model_file], capsys)
    assert code == 0, stderr
    crops = json.loads(stdout)["results"][0]["crops"]
    assert [c["ratio"] for c in crops] == ["16:9", "16:9"]  # --size implies its ratio
    for c in crops:
        path = Path(c["path"])
        assert path.name == f"{photos[1].stem}-16x9-{c['rank']}-320x180.webp"
        with Image.open(path) as im:
            assert im.format == "WEBP" and im.size == (320, 180)
    code, _, stderr = run_cli([photos[1], "--size", "100x100", "--ratio", "16:9", "--model", model_file], capsys)
    assert code == 2 and error_lines(stderr) == [stderr.strip()] and "--size 100x100" in stderr


def test_grayscale_and_alpha_inputs(tmp_path: Path, gaicd_images: list[Path], model_file: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with Image.open(gaicd_images[2]) as im:
        rgb = im.convert("RGB")
    gray = tmp_path / "gray.jpg"
    rgb.convert("L").save(gray, quality=95)
    rgba = tmp_path / "alpha.png"
    with_alpha = rgb.convert("RGBA")
    with_alpha.putalpha(200)
    with_alpha.save(rgba)
    code, stdout, stderr = run_cli([gray, rgba, "--ratio", "3:2", "--json", "--model", model_file], capsys)
    assert code == 0, stderr
    results = json.loads(stdout)["results"]
    with Image.open(results[0]["crops"][0]["path"]) as im:
        assert im.mode == "L" and im.format == "JPEG"
    with Image.open(results[1]["crops"][0]["path"]) as im:
        assert im.mode == "RGBA" and im.format == "PNG" and im.getpixel((0, 0))[3] == 200


def test_bad_inputs_one_line_each_others_still_processed(tmp_path: Path, photos: list[Path], model_file: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    empty = bad / "empty.jpg"
    empty.write_bytes(b"")
    text = bad / "readme.jpg"
    text.write_text("not a photo")
    truncated = bad / "truncated.jpg"
    data = photos[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    tiny = bad / "tiny.png"
    Image.new("RGB", (10, 3), (200, 10, 10)).save(tiny)
    bomb = bad / "bomb.png"
    bomb.write_bytes(png_header_only(20_000, 20_000))
    missing = bad / "missing.jpg"
    good = photos[1]
    inputs = [missing, bad, empty, text, truncated, tiny, bomb, good]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli([*inputs, "--ratio", "1:5", "--out", out, "--json", "--model", model_file], capsys)
    assert code == 1
    lines = error_lines(stderr)
    assert len(lines) == 7, stderr
    for path, line in zip(inputs[:-1], lines):
        assert line.startswith(f"autocrop: error: {path}:"), line
    assert "too small for ratio 1:5" in lines[5] and "decompression-bomb" in lines[6]
    doc = json.loads(stdout)
    assert doc["failed"] == 7 and doc["results"][-1]["error"] is None
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}.crop1.jpg"]


@pytest.mark.parametrize("args,fragment", [
    (["--ratio", "16:0"], "--ratio 16:0"),
    (["--ratio", "abc"], "--ratio abc"),
    (["--ratio", "-1:2"], "--ratio -1:2"),
    (["--ratio=-1:2"], "--ratio -1:2"),
    (["--top", "0"], "--top 0"),
    (["--quality", "0"], "--quality 0"),
    (["--size", "big"], "--size big"),
    (["--name", "{stem}.{colour}"], "unknown field"),
    (["--format", "gif"], "--format gif"),
])
def test_bad_options_one_line_exit_2(photos: list[Path], model_file: Path, capsys: pytest.CaptureFixture[str],
                                     args: list[str], fragment: str) -> None:
    code, stdout, stderr = run_cli([photos[0], *args, "--model", model_file], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("autocrop: error:") and fragment in stderr, stderr
    assert not list(photos[0].parent.glob("*.crop*"))


def test_output_dir_that_cannot_be_written(tmp_path: Path, photos: list[Path], model_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = run_cli([photos[0], "--out", blocker / "sub", "--model", model_file], capsys)
    assert code == 2 and stderr.startswith(f"autocrop: error: {blocker / 'sub'}: cannot create output directory")
    assert stderr.count("\n") == 1
    code, _, stderr = run_cli([photos[0], "--out", blocker, "--model", model_file], capsys)
    assert code == 2 and "is a file, not a directory" in stderr
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, _, stderr = run_cli([photos[0], "--out", locked, "--model", model_file], capsys)
            assert code == 2 and "not writable" in stderr
        finally:
            locked.chmod(0o700)


def test_disk_full_removes_partial_outputs(tmp_path: Path, photos: list[Path], model_file: Path,
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = Image.Image.save

    def save_fills_disk(self: Image.Image, fp, format=None, **params):  # noqa: A002, ANN001, ANN202
        # the temp file of the first photo's second crop runs out of space; everything else is fine
        if f".{photos[0].stem}.crop2.jpg." in str(getattr(fp, "name", "")):
            fp.write(b"\xff\xd8 half a jpeg")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", save_fills_disk)
    out = tmp_path / "out"
    code, _, stderr = run_cli([photos[0], photos[1], "--top", "2", "--out", out, "--model", model_file], capsys)
    lines = error_lines(stderr)
    assert code == 1 and len(lines) == 1
    assert lines[0] == f"autocrop: error: {out / (photos[0].stem + '.crop2.jpg')}: cannot write: No space left on device"
    # nothing of the failed photo is left (no temp file, no lone first crop); the next photo is complete
    assert sorted(p.name for p in out.iterdir()) == [f"{photos[1].stem}.crop1.jpg", f"{photos[1].stem}.crop2.jpg"]
