"""The batch against hostile inputs and failing disks: bad photos fail alone, and only an errno that no other
output would survive (disk full, read-only, no permission) stops the whole batch.

Real Cropper, torch-free FakeScorer, photos drawn by Pillow (see tests/test_batch.py); no shared data.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_batch import FastSpec, opts, picture, save_photo, truncated_jpeg

import autocrop.io.encode
from autocrop.batch import FatalOutputError, run_batch
from autocrop.batch.manifest import ManifestWriter, load_manifest
from autocrop.commands.batch import exit_code
from autocrop.errors import OutputError
from autocrop.io.fs import is_temp_name
from autocrop.settings import CropSettings


@pytest.fixture
def spec(fake_scorer: Any) -> Any:
    """``spec(ratio="16:9", ...)`` -> a FastSpec (real Cropper, FakeScorer) with those settings."""
    return lambda **values: FastSpec(settings=CropSettings.build(**values), scorer=fake_scorer)


def _permissions_enforced() -> bool:
    """False where this process may write into a read-only folder anyway (root, CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.mkdir(mode=0o555)
        try:
            (locked / "probe").write_bytes(b"")
        except PermissionError:
            return True
        finally:
            locked.chmod(0o755)
        return False


needs_non_root = pytest.mark.skipif(not _permissions_enforced(), reason="this user may write into read-only folders")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds none (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IEND", b"")


def test_hostile_inputs_fail_alone(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "good.jpg", seed=1)
    picture(seed=2).save(src / "png_named.jpg", "PNG")  # the suffix lies: decoded by content
    picture(seed=3).convert("P").save(src / "palette.gif")
    picture(seed=4).convert("CMYK").save(src / "cmyk.jpg")
    Image.fromarray(np.asarray(picture(seed=5).convert("L"), dtype=np.uint16) * 257).save(src / "deep.png")  # 16 bit
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a photo\n")
    truncated_jpeg(src / "truncated.jpg")
    (src / "bomb.png").write_bytes(_png_header(60000, 60000))
    Image.new("RGB", (1, 1)).save(src / "tiny.png")
    (src / "folder.jpg").mkdir()  # a folder with a photo suffix: walked as a folder
    save_photo(src / "folder.jpg" / "inner.jpg", seed=6)
    os.symlink(src / "missing.jpg", src / "dangling.jpg")
    if hasattr(os, "mkfifo"):
        os.mkfifo(src / "fifo.jpg")  # never opened (it would block)
    out = tmp_path / "out"
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    recs = load_manifest(out / "autocrop-manifest.jsonl").records
    ok = {rel for rel, r in recs.items() if r["status"] == "ok"}
    assert {"good.jpg", "png_named.jpg", "palette.gif", "cmyk.jpg", "deep.png", "folder.jpg/inner.jpg"} <= ok
    failed = {rel: r["error"] for rel, r in recs.items() if r["status"] == "failed"}
    assert {"zero.jpg", "text.jpg", "truncated.jpg", "bomb.png"} <= set(failed)
    assert "empty" in failed["zero.jpg"] and "bomb" in failed["bomb.png"]
    for error in failed.values():
        assert "\n" not in error and "Traceback" not in error and str(src) not in error
    assert "fifo.jpg" not in recs and "dangling.jpg" not in recs
    assert tally.failed == len(failed) and exit_code(tally) == 3
    with Image.open(out / "png_named.crop1.png") as im:
        assert im.format == "PNG"  # the input's format (and suffix), whatever its own suffix says
    assert not [p for p in out.rglob("*") if is_temp_name(p.name)]


def test_blocked_outputs_fail_that_input_only(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    for name in ("a.jpg", "sub/b.jpg", "link/c.jpg", "d.jpg"):
        save_photo(src / name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.crop1.jpg").mkdir()  # an output name taken by a folder
    (out / "sub").write_text("a file where the mirrored folder goes")  # mkdir fails with EEXIST: not fatal
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "link")  # a mirrored folder that leads out of the output root
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    failures = dict(tally.failures)
    assert set(failures) == {"a.jpg", "sub/b.jpg", "link/c.jpg"} and tally.ok == 1
    assert "is a folder" in failures["a.jpg"] and "outside the output root" in failures["link/c.jpg"]
    assert list(elsewhere.iterdir()) == []
    assert exit_code(tally) == 3


def _failing_encoder(code: int, after: int = 0) -> Any:
    """An ``encode`` whose writer raises ``OSError(code)`` once ``after`` crops were written."""
    original = autocrop.io.encode.encode
    count = {"n": 0}

    def encode(*args: Any, **kwargs: Any) -> Any:
        write = original(*args, **kwargs)

        def failing(fh: Any) -> None:
            count["n"] += 1
            if count["n"] > after:
                raise OSError(code, os.strerror(code))
            write(fh)

        return failing

    return encode


def test_disk_full_stops_the_batch_and_resumes(tmp_path: Path, spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for i in range(6):
        save_photo(src / f"p{i}.jpg", seed=i)
    out = tmp_path / "out"
    monkeypatch.setattr(autocrop.io.encode, "encode", _failing_encoder(errno.ENOSPC, after=2))
    with pytest.raises(FatalOutputError) as info:
        run_batch(opts(src, out, jobs=1), spec(), out_stream=io.StringIO())
    err = info.value
    assert err.errno == errno.ENOSPC and err.fatal and isinstance(err, OutputError)
    assert "No space left on device" in str(err) and "\n" not in str(err) and str(err).count(str(out)) == 1
    recs = load_manifest(out / "autocrop-manifest.jsonl").records
    assert set(recs) == {"p0.jpg", "p1.jpg"}  # the input being written is not recorded, as failed or otherwise
    assert all(r["status"] == "ok" for r in recs.values())
    assert sorted(p.name for p in out.iterdir()) == ["autocrop-manifest.jsonl", "p0.crop1.jpg", "p1.crop1.jpg"]
    monkeypatch.undo()
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.complete and tally.ok == 4 and tally.done_before == 2


def test_other_write_errors_fail_each_input(tmp_path: Path, spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for i in range(3):
        save_photo(src / f"p{i}.jpg", seed=i)
    out = tmp_path / "out"
    monkeypatch.setattr(autocrop.io.encode, "encode", _failing_encoder(errno.EIO))
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.failed == 3 and exit_code(tally) == 3
    assert all("Input/output error" in error for _, error in tally.failures)


def test_fatal_is_decided_by_errno_not_by_the_message(tmp_path: Path, spec: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    out = tmp_path / "out"

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OutputError(out / "a.crop1.jpg", "No space left on device (but no errno)")

    monkeypatch.setattr("autocrop.cropper.check_outputs", refuse)
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.failed == 1 and exit_code(tally) == 3


def test_manifest_that_cannot_be_written_is_fatal(tmp_path: Path, spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    out = tmp_path / "out"

    def write(self: ManifestWriter, record: dict[str, Any]) -> None:
        raise OutputError.from_os_error(self.path, OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))

    monkeypatch.setattr(ManifestWriter, "write", write)
    with pytest.raises(FatalOutputError) as info:
        run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert info.value.errno == errno.EDQUOT and "autocrop-manifest.jsonl" in str(info.value)


@needs_non_root
def test_read_only_output_folders(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    save_photo(src / "sub" / "b.jpg")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub").chmod(0o555)  # the mirrored folder of sub/b.jpg is read-only
    try:
        with pytest.raises(FatalOutputError) as info:
            run_batch(opts(src, out, jobs=1), spec(), out_stream=io.StringIO())
        assert info.value.errno == errno.EACCES and "sub" in str(info.value)
        assert set(load_manifest(out / "autocrop-manifest.jsonl").records) == {"a.jpg"}
        out.chmod(0o555)  # now the output folder itself: refused before anything is walked
        with pytest.raises(OutputError) as info2:
            run_batch(opts(src, out), spec(), out_stream=io.StringIO())
        assert info2.value.errno == errno.EACCES and info2.value.fatal
    finally:
        out.chmod(0o755)
        (out / "sub").chmod(0o755)
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.complete and tally.ok == 1 and tally.done_before == 1


@needs_non_root
def test_unreadable_photo_and_folder(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    save_photo(src / "secret.jpg").chmod(0)
    save_photo(src / "locked" / "c.jpg")
    (src / "locked").chmod(0)
    try:
        tally = run_batch(opts(src, tmp_path / "out"), spec(), out_stream=io.StringIO())
    finally:
        (src / "locked").chmod(0o755)
    failures = dict(tally.failures)
    assert tally.ok == 1 and "secret.jpg" in failures and "locked/" in failures
    assert exit_code(tally) == 3
