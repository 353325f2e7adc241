"""End-to-end tests of ``autocrop crop`` (and the ``autocrop IMAGE`` shorthand) on the packaged example photo
and photos made from it (no ../shared/data needed), with the packaged model (see conftest.model_file)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import piexif
import pytest
from conftest import error_lines, png_header_only
from PIL import Image, ImageCms

from autocrop.geometry import box_iou


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exact_ratios_distinct_crops_input_untouched(tmp_path: Path, photos: list[Path], model_file: Path,
                                                     cli) -> None:  # noqa: ANN001
    hashes = {p: sha256(p) for p in photos}
    out = tmp_path / "out"
    code, stdout, stderr = cli([*photos, "--ratio", "16:9", "--ratio", "4:5", "--top", "3", "--out", out,
                                "--json", "--model", model_file])
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
            assert np.all(iou[~np.eye(3, dtype=bool)] <= 0.8), "distinct views (0.7, relaxed to 0.8 on small photos)"
            assert crops[0]["score"] == max(c["score"] for c in crops)
            for c in crops:
                x1, y1, x2, y2 = c["box"]
                path = Path(c["path"])
                assert path.parent == out and path.name == f"{photo.stem}.{rw}x{rh}.crop{c['rank']}.jpg"
                norm = [x1 / full.width, y1 / full.height, x2 / full.width, y2 / full.height]
                assert np.allclose(c["box_norm"], norm, atol=1e-5)
                with Image.open(path) as written:
                    assert written.format == "JPEG"
                    assert written.size == (x2 - x1, y2 - y1) == (c["width"], c["height"])
                    assert written.width * rh == written.height * rw, "exact ratio to the pixel"
                    diff = np.abs(np.asarray(written.convert("RGB"), dtype=np.int16)
                                  - np.asarray(full.crop((x1, y1, x2, y2)), dtype=np.int16))
                    assert diff.mean() < 3.0, "the file holds exactly that region"
    assert {p: sha256(p) for p in photos} == hashes
    assert "16:9" in stderr  # the human table went to stderr


def test_top1_does_not_depend_on_top(photos: list[Path], model_file: Path, cli) -> None:  # noqa: ANN001
    boxes = {}
    for k in (1, 2, 3, 4):
        code, stdout, stderr = cli([photos[1], "-r", "16:9", "-r", "free", "-k", k, "--json", "--dry-run",
                                    "--model", model_file])
        assert code == 0, stderr
        boxes[k] = [(c["ratio"], c["rank"], c["box"]) for c in json.loads(stdout)["results"][0]["crops"]]
    for k in (1, 2, 3):
        for ratio in ("16:9", "free"):
            shorter = [b for b in boxes[k] if b[0] == ratio]
            longer = [b for b in boxes[k + 1] if b[0] == ratio]
            assert longer[: len(shorter)] == shorter, f"crops of --top {k} are a prefix of --top {k + 1}"


def test_shorthand_command_in_a_fresh_process(photos: list[Path], model_file: Path) -> None:
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


def test_stdin_to_stdout_pipeline(photos: list[Path], model_file: Path) -> None:
    exe = Path(sys.executable).parent / "autocrop"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "autocrop"]
    args = ["-", "--ratio", "1:1", "--out", "-", "--format", "png", "--model", str(model_file)]
    proc = subprocess.run([*command, *args], input=photos[1].read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    import io

    with Image.open(io.BytesIO(proc.stdout)) as im:
        assert im.format == "PNG" and im.width == im.height
    assert not list(photos[1].parent.glob("*crop*")) and not list(Path.cwd().glob("stdin*"))
    refused = subprocess.run([*command, str(photos[0]), "--top", "2", "--out", "-", "--model", str(model_file)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and error_lines(refused.stderr) == [refused.stderr.strip()]
    assert "writes exactly one crop" in refused.stderr


def test_exif_orientation_and_icc_kept(tmp_path: Path, example_photo: Path, model_file: Path, cli) -> None:  # noqa: ANN001
    with Image.open(example_photo) as im:
        upright = im.convert("RGB")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"RealCam"},
                        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2023:07:14 18:30:00"}})
    src = tmp_path / "rotated.jpg"
    # stored sideways; orientation 6 ("rotate 90 CW to view") makes it upright again
    upright.transpose(Image.Transpose.ROTATE_90).save(src, quality=95, exif=exif, icc_profile=icc)
    before = sha256(src)
    code, stdout, stderr = cli([src, "--ratio", "1:1", "--top", "2", "--json", "--model", model_file])
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


def test_preview_dry_run_and_overwrite(tmp_path: Path, photos: list[Path], model_file: Path, cli) -> None:  # noqa: ANN001
    photo = photos[0]
    out = tmp_path / "o"
    code, stdout, _ = cli([photo, "--top", "2", "--out", out, "--dry-run", "--model", model_file])
    assert code == 0 and "would write" in stdout and not out.exists()
    code, stdout, stderr = cli([photo, "--top", "2", "--out", out, "--preview", "--model", model_file])
    assert code == 0, stderr
    preview = out / f"{photo.stem}.preview.png"
    with Image.open(preview) as im:
        assert im.format == "PNG" and max(im.size) <= 1600
    first = out / f"{photo.stem}.crop1.jpg"
    stamp = sha256(first)
    # a dry run never fails because outputs exist: it marks them
    code, stdout, stderr = cli([photo, "--top", "2", "--out", out, "--dry-run", "--json", "--model", model_file])
    assert code == 0, stderr
    assert [c["exists"] for c in json.loads(stdout)["results"][0]["crops"]] == [True, True]
    code, _, stderr = cli([photo, "--top", "2", "--out", out, "--model", model_file])
    lines = error_lines(stderr)
    assert code == 3 and len(lines) == 1 and "already exists" in lines[0] and str(out) in lines[0]
    assert sha256(first) == stamp
    code, _, stderr = cli([photo, "--top", "2", "--out", out, "--quality", "60", "--overwrite", "--model", model_file])
    assert code == 0, stderr
    assert sha256(first) != stamp
    # the input itself is never overwritten, even with --overwrite; nor is another input of the same call
    code, _, stderr = cli([photo, "--name", "{stem}", "--out", photo.parent, "--overwrite", "--model", model_file])
    assert code == 3 and "is an input photo" in stderr
    other = photos[1]
    code, _, stderr = cli([photo, other, "--name", other.stem, "--out", photo.parent, "--overwrite",
                           "--model", model_file])
    assert code == 3 and f"{other}: is an input photo" in stderr


def test_size_long_edge_format_name_options(tmp_path: Path, photos: list[Path], model_file: Path,
                                            cli) -> None:  # noqa: ANN001
    out = tmp_path / "o"
    code, stdout, stderr = cli([photos[1], "--size", "320x180", "--top", "2", "--format", "webp", "--out", out,
                                "--name", "{stem}-{ratio}-{rank}-{w}x{h}", "--json", "--model", model_file])
    assert code == 0, stderr
    crops = json.loads(stdout)["results"][0]["crops"]
    assert [c["ratio"] for c in crops] == ["16:9", "16:9"]  # --size implies its ratio
    for c in crops:
        path = Path(c["path"])
        assert path.name == f"{photos[1].stem}-16x9-{c['rank']}-320x180.webp"
        with Image.open(path) as im:
            assert im.format == "WEBP" and im.size == (320, 180)
    # --size never enlarges unless --upscale
    code, stdout, stderr = cli([photos[0], "--size", "1600x900", "--out", out / "big", "--json", "--model", model_file])
    assert code == 0, stderr
    crop = json.loads(stdout)["results"][0]["crops"][0]
    assert (crop["width"], crop["height"]) == (crop["box"][2] - crop["box"][0], crop["box"][3] - crop["box"][1])
    assert crop["width"] < 1600 and crop["width"] * 9 == crop["height"] * 16
    code, stdout, stderr = cli([photos[0], "--size", "1600x900", "--upscale", "--out", out / "up", "--json",
                                "--model", model_file])
    with Image.open(json.loads(stdout)["results"][0]["crops"][0]["path"]) as im:
        assert im.size == (1600, 900)
    code, stdout, stderr = cli([photos[1], "--long-edge", "300", "--ratio", "4:5", "--out", out / "le", "--json",
                                "--model", model_file])
    assert code == 0, stderr
    with Image.open(json.loads(stdout)["results"][0]["crops"][0]["path"]) as im:
        assert max(im.size) == 300 and abs(im.width / im.height - 0.8) < 0.01
    code, _, stderr = cli([photos[1], "--size", "100x100", "--ratio", "16:9", "--model", model_file])
    assert code == 2 and error_lines(stderr) == [stderr.strip()] and "size 100x100" in stderr


def test_grayscale_and_alpha_inputs(tmp_path: Path, example_photo: Path, model_file: Path, cli) -> None:  # noqa: ANN001
    with Image.open(example_photo) as im:
        rgb = im.convert("RGB")
    gray = tmp_path / "gray.jpg"
    rgb.convert("L").save(gray, quality=95)
    rgba = tmp_path / "alpha.png"
    with_alpha = rgb.convert("RGBA")
    with_alpha.putalpha(200)
    with_alpha.save(rgba)
    code, stdout, stderr = cli([gray, rgba, "--ratio", "3:2", "--json", "--model", model_file])
    assert code == 0, stderr
    results = json.loads(stdout)["results"]
    with Image.open(results[0]["crops"][0]["path"]) as im:
        assert im.mode == "L" and im.format == "JPEG"
    with Image.open(results[1]["crops"][0]["path"]) as im:
        assert im.mode == "RGBA" and im.format == "PNG" and im.getpixel((0, 0))[3] == 200


def test_bad_inputs_one_line_each_others_still_processed(tmp_path: Path, photos: list[Path], model_file: Path,
                                                         cli) -> None:  # noqa: ANN001
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
    code, stdout, stderr = cli([*inputs, "--ratio", "1:5", "--out", out, "--json", "--model", model_file])
    assert code == 3
    lines = error_lines(stderr)
    assert len(lines) == 7, stderr
    for path, line in zip(inputs[:-1], lines):
        assert line.startswith(f"autocrop: error: {path}:"), line
        assert line.count(str(path)) == 1, "a path is named once per line"
    assert "too small for ratio 1:5" in lines[5] and "decompression-bomb" in lines[6]
    doc = json.loads(stdout)
    assert doc["failed"] == 7 and doc["results"][-1]["error"] is None
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}.crop1.jpg"]


@pytest.mark.parametrize("args,fragment", [
    (["--ratio", "16:0"], "ratio 16:0"),
    (["--ratio", "abc"], "ratio 'abc'"),
    (["--ratio", "-1:2"], "ratio -1:2"),
    (["--ratio=-1:2"], "ratio -1:2"),
    (["--top", "0"], "top 0"),
    (["--quality", "0"], "quality 0"),
    (["--size", "big"], "size 'big'"),
    (["--name", "{stem}.{colour}"], "unknown field"),
    (["--name", "{stem:d}"], "name '{stem:d}'"),
    (["--format", "gif"], "format 'gif'"),
    (["--device", "banana"], "device 'banana'"),
    (["--device", "cuda"], "device 'cuda'"),
    (["--size", "64x64", "--long-edge", "10"], "cannot be combined"),
])
def test_bad_options_one_line_exit_2(photos: list[Path], model_file: Path, cli, args: list[str],  # noqa: ANN001
                                     fragment: str) -> None:
    code, stdout, stderr = cli([photos[0], *args, "--model", model_file])
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("autocrop: error:") and fragment in stderr, stderr
    assert "--" not in stderr.split("error:", 1)[1] or "--model" in args, "messages name parameters, not flags"
    assert not list(photos[0].parent.glob("*.crop*"))


def test_output_dir_that_cannot_be_written(tmp_path: Path, photos: list[Path], model_file: Path, cli) -> None:  # noqa: ANN001
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = cli([photos[0], "--out", blocker / "sub", "--model", model_file])
    assert code == 2 and stderr.startswith(f"autocrop: error: {blocker / 'sub'}: cannot create the folder")
    assert stderr.count("\n") == 1
    code, _, stderr = cli([photos[0], "--out", blocker, "--model", model_file])
    assert code == 2 and "is a file, not a folder" in stderr
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, _, stderr = cli([photos[0], "--out", locked, "--model", model_file])
            assert code == 2 and "not writable" in stderr
        finally:
            locked.chmod(0o700)


def test_disk_full_removes_partial_outputs(tmp_path: Path, photos: list[Path], model_file: Path, cli,  # noqa: ANN001
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = Image.Image.save

    def save_fills_disk(self: Image.Image, fp, format=None, **params):  # noqa: A002, ANN001, ANN202
        # the temp file of the first photo's second crop runs out of space; everything else is fine
        if f".{photos[0].stem}.crop2.jpg." in str(getattr(fp, "name", "")):
            fp.write(b"\xff\xd8 half a jpeg")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", save_fills_disk)
    out = tmp_path / "out"
    code, _, stderr = cli([photos[0], photos[1], "--top", "2", "--out", out, "--model", model_file])
    lines = error_lines(stderr)
    assert code == 3 and len(lines) == 1
    target = out / (photos[0].stem + ".crop2.jpg")
    assert lines[0] == f"autocrop: error: {target}: cannot write: No space left on device"
    # nothing of the failed photo is left (no temp file, no lone first crop); the next photo is complete
    assert sorted(p.name for p in out.iterdir()) == [f"{photos[1].stem}.crop1.jpg", f"{photos[1].stem}.crop2.jpg"]


def test_console_script_ends_cleanly_into_a_closed_pipe(photos: list[Path], model_file: Path) -> None:
    """The console script ends with os._exit after flushing: a reader that closes early gets no traceback,
    and a full read gets every byte (the JSON parses)."""
    exe = Path(sys.executable).parent / "autocrop"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "autocrop"]
    args = [*command, str(photos[0]), "--top", "3", "--json", "--dry-run", "--model", str(model_file)]
    full = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout)["results"][0]["crops"] and "Traceback" not in full.stderr
    shell = f"{' '.join(map(shlex.quote, args))} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    piped = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in piped.stderr and piped.stdout.strip() in ("0", "2")


def test_console_script_crop_skips_rich_and_shortens_the_switch_interval(photos: list[Path], model_file: Path) -> None:
    """A one-photo crop prints plain text (importing rich costs 30-40 ms) and the console script hands the
    GIL between its threads every 1 ms (the model loads in a background thread)."""
    code = ("import sys, autocrop.cli as cli; "
            "cli._exit_now = lambda c: (print('END', sys.getswitchinterval(), 'rich' in sys.modules, c), "
            "sys.stdout.flush(), cli.os._exit(0)); "
            f"sys.argv = ['autocrop', {str(photos[0])!r}, '--top', '2', '--dry-run', '--model', {str(model_file)!r}]; "
            "cli.main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "END 0.001 False 0", out.stdout + out.stderr
    assert lines[1].split()[:3] == ["rank", "box", "x1,y1,x2,y2"] and "would write" in lines[1]
    assert len(lines) == 5  # the photo's line, the header, two crops, END


def test_text_table_aligns_columns_and_never_pads_the_last() -> None:
    from autocrop.commands.output import text_table

    table = text_table(["rank", "size", "file"], [["1", "848x477", "a b/x.jpg"], ["10", "7x7", "y.jpg"]], right={0, 1})
    assert table.splitlines() == ["rank     size  file",
                                  "   1  848x477  a b/x.jpg",
                                  "  10      7x7  y.jpg"]
