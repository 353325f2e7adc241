"""Unit tests of the batch plumbing: walk, safety checks, manifest, resume, engines, progress (no shared data needed).

A small fake engine (real PIL decode + centre-crop encode, no model) stands in for the crop engine here;
tests/test_batch_cli.py runs the real engine and CLI on real photos.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from autocrop.batch.local import run_local
from autocrop.batch.manifest import ManifestWriter, is_done, load_manifest, settings_key
from autocrop.batch.run import BatchOptions, plan_batch, run_batch
from autocrop.batch.summary import Progress, Tally, format_summary
from autocrop.batch.walk import SourceFile, WalkStats, check_locations, mirror_dir, walk_sources
from autocrop.batch.worker import Destination, FatalOutputError, WorkItem, process_one
from autocrop.errors import InputError

REPO = Path(__file__).resolve().parent.parent
AUTOCROP = str(Path(sys.executable).with_name("autocrop"))


class FakeEngine:
    """BatchEngine without a model: decodes with PIL (fails on bad input), writes the centre half as JPEG."""

    def __init__(self, fail_write: OSError | None = None, delay: float = 0.0) -> None:
        self.fail_write = fail_write
        self.delay = delay
        self.analyzed: list[str] = []

    def analyze(self, path: Path):
        with Image.open(path) as im:
            im.load()
            w, h = im.size
        self.analyzed.append(path.name)
        time.sleep(self.delay)
        return path, (w // 4, h // 4, w - w // 4, h - h // 4)

    def describe(self, result):
        return {"boxes": [list(result[1])], "scores": [1.0], "ratios": ["free"]}

    def write(self, result, out_dir: Path, overwrite: bool, stem_tag=None):
        if self.fail_write is not None:
            raise self.fail_write
        path, box = result
        stem = path.stem + (f"_{stem_tag}" if stem_tag else "")
        target = out_dir / f"{stem}.crop1.jpg"
        if target.exists() and not overwrite:
            raise InputError(f"{target}: already exists (use --overwrite to replace it)")
        tmp = out_dir / f".{target.name}.tmp.part"
        with Image.open(path) as im:
            im.convert("RGB").crop(box).save(tmp, "JPEG")
        os.replace(tmp, target)
        return [target]


def _jpeg(path: Path, size=(64, 48), color=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")
    return path


@pytest.fixture
def album(tmp_path: Path) -> Path:
    src = tmp_path / "album"
    _jpeg(src / "a.jpg")
    _jpeg(src / "b.JPG")
    _jpeg(src / "2023" / "rome" / "c.jpg")
    _jpeg(src / "2023" / "ünïcødé" / "фото 1.jpg")
    _jpeg(src / ".hidden" / "d.jpg")
    (src / "notes.txt").write_text("not a photo")
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a jpeg")
    good = io.BytesIO()
    Image.new("RGB", (256, 256), (1, 2, 3)).save(good, "JPEG")
    (src / "2023" / "trunc.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    os.symlink("..", src / "2023" / "loop")  # a symlink loop: never followed
    return src


def _opts(src: Path, out: Path, **kw) -> BatchOptions:
    kw.setdefault("jobs", 2)
    return BatchOptions(source=src, out=out, quiet=True, settings={"ratios": ["free"], "top": 1}, **kw)


# ------------------------------------------------------------------------------------------------ walk


def test_walk_sorted_recursive_unicode_no_loops(album: Path) -> None:
    stats = WalkStats()
    rels = [s.rel for s in walk_sources(album.resolve(), stats=stats)]
    # files of a folder first (sorted by name), then its sub-folders (sorted)
    assert rels == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg", "2023/trunc.jpg", "2023/rome/c.jpg", "2023/ünïcødé/фото 1.jpg"]
    assert stats.ignored == 1 and stats.hidden == 1 and stats.symlinked_dirs == 1
    top_only = [s.rel for s in walk_sources(album.resolve(), recursive=False)]
    assert top_only == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg"]


def test_walk_include_exclude(album: Path) -> None:
    src = album.resolve()
    assert [s.rel for s in walk_sources(src, include=["*.JPG"])] == ["b.JPG"]
    assert [s.rel for s in walk_sources(src, exclude=["2023"])] == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg"]
    assert [s.rel for s in walk_sources(src, include=["2023/rome/*"])] == ["2023/rome/c.jpg"]


def test_mirror_dir(tmp_path: Path) -> None:
    assert mirror_dir(tmp_path, "a.jpg") == tmp_path
    assert mirror_dir(tmp_path, "x/y/a.jpg") == tmp_path / "x" / "y"


def test_check_locations_refuses_out_in_source(album: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is the source folder"):
        check_locations(album, album)
    with pytest.raises(InputError, match="inside the source folder"):
        check_locations(album, album / "crops")
    src, out = check_locations(album, album / "crops", allow_inside_source=True)
    assert out == (album / "crops").resolve()
    with pytest.raises(InputError, match="does not exist"):
        check_locations(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(InputError, match="not a folder"):
        check_locations(album / "a.jpg", tmp_path / "out")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not writable|not a folder"):
        check_locations(album, blocker / "out")


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_survives_cut_line_and_last_record_wins(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with ManifestWriter(path) as w:
        w.write({"path": "a.jpg", "status": "failed"})
        w.write({"path": "b.jpg", "status": "ok"})
    with open(path, "a") as f:
        f.write('{"path": "c.jpg", "sta')  # a kill in the middle of a line
    with ManifestWriter(path) as w:
        w.write({"path": "a.jpg", "status": "ok", "outputs": ["a.crop1.jpg"]})
    loaded = load_manifest(path)
    assert loaded.bad_lines == 1
    assert loaded.records["a.jpg"]["status"] == "ok" and set(loaded.records) == {"a.jpg", "b.jpg"}
    assert all(json.loads(line) for line in path.read_text().splitlines()[-1:])


def test_is_done_conditions(tmp_path: Path) -> None:
    (tmp_path / "a.crop1.jpg").write_bytes(b"x")
    src = SourceFile(tmp_path / "a.jpg", "a.jpg", 10, 123)
    key = settings_key({"top": 1})
    rec = {"path": "a.jpg", "status": "ok", "settings": key, "size": 10, "mtime_ns": 123, "outputs": ["a.crop1.jpg"]}
    assert is_done(rec, src, key, tmp_path)
    assert not is_done(rec, src, settings_key({"top": 2}), tmp_path)  # other settings
    assert not is_done(rec, SourceFile(src.path, "a.jpg", 11, 123), key, tmp_path)  # source changed
    assert not is_done({**rec, "status": "failed"}, src, key, tmp_path)
    (tmp_path / "a.crop1.jpg").unlink()
    assert not is_done(rec, src, key, tmp_path)  # output deleted


# ------------------------------------------------------------------------------------------------ runs


def test_batch_run_bad_inputs_mirror_manifest_and_resume(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in album.rglob("*") if p.is_file() and not p.is_symlink()}
    engine = FakeEngine()
    summary = io.StringIO()
    code, tally = run_batch(_opts(album, out), lambda: engine, out_stream=summary)
    assert code == 3 and tally.ok == 4 and tally.failed == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "2023/rome/c.crop1.jpg", "2023/ünïcødé/фото 1.crop1.jpg", "a.crop1.jpg", "b.crop1.jpg"]
    records = [json.loads(line) for line in (out / "autocrop-manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 7
    failed = {r["path"]: r["error"] for r in records if r["status"] == "failed"}
    assert set(failed) == {"empty.jpg", "text.jpg", "2023/trunc.jpg"}
    for r in records:
        assert set(r) >= {"path", "outputs", "boxes", "scores", "status", "error", "timings"}
    text = summary.getvalue()
    assert "3 failed" in text and "empty.jpg" in text and "trunc.jpg" in text
    # originals untouched
    assert before == {p: p.read_bytes() for p in before}
    # resume: only the failed inputs are tried again; no output rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    engine2 = FakeEngine()
    code, tally = run_batch(_opts(album, out), lambda: engine2, out_stream=io.StringIO())
    assert code == 3 and tally.done_before == 4 and sorted(engine2.analyzed) == []
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    # fix the bad files: the next run does only those and exits 0
    for name in ("empty.jpg", "text.jpg", "2023/trunc.jpg"):
        (album / name).unlink()
    engine3 = FakeEngine()
    code, tally = run_batch(_opts(album, out), lambda: engine3, out_stream=io.StringIO())
    assert code == 0 and tally.done_before == 4 and tally.ok == 0


def test_nothing_to_do_builds_no_engine(album: Path, tmp_path: Path) -> None:
    for name in ("empty.jpg", "text.jpg", "2023/trunc.jpg"):
        (album / name).unlink()
    out = tmp_path / "out"
    run_batch(_opts(album, out), FakeEngine, out_stream=io.StringIO())

    def boom():
        raise AssertionError("engine built although nothing is left to do")

    code, tally = run_batch(_opts(album, out), boom, out_stream=io.StringIO())
    assert code == 0 and tally.done_before == 4
    code, _ = run_batch(_opts(album, out, dry_run=True), boom, out_stream=io.StringIO())
    assert code == 0


def test_changed_settings_or_source_redo(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(_opts(album, out), FakeEngine, out_stream=io.StringIO())
    _jpeg(album / "a.jpg", size=(80, 60))  # edited photo
    os.utime(album / "a.jpg", ns=(1, 1))
    engine = FakeEngine()
    run_batch(_opts(album, out), lambda: engine, out_stream=io.StringIO())
    assert "a.jpg" in engine.analyzed and "c.jpg" not in engine.analyzed
    engine = FakeEngine()
    opts = _opts(album, out)
    opts.settings = {"ratios": ["16:9"], "top": 1}
    buf = io.StringIO()
    run_batch(opts, lambda: engine, out_stream=buf)
    assert {"a.jpg", "b.JPG", "c.jpg", "фото 1.jpg"} <= set(engine.analyzed), buf.getvalue()


def test_existing_foreign_file_not_replaced_without_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _jpeg(src / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.crop1.jpg").write_bytes(b"my own file")
    code, tally = run_batch(_opts(src, out), FakeEngine, out_stream=io.StringIO())
    assert code == 3 and "already exists" in tally.failures[0][1]
    assert (out / "a.crop1.jpg").read_bytes() == b"my own file"
    code, tally = run_batch(_opts(src, out, overwrite=True), FakeEngine, out_stream=io.StringIO())
    assert code == 0 and (out / "a.crop1.jpg").read_bytes() != b"my own file"


def test_same_stem_inputs_do_not_collide(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _jpeg(src / "x.jpg")
    Image.new("RGB", (40, 30), (0, 255, 0)).save(src / "x.png")
    out = tmp_path / "out"
    code, _ = run_batch(_opts(src, out), FakeEngine, out_stream=io.StringIO())
    assert code == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["x_jpg.crop1.jpg", "x_png.crop1.jpg"]


def test_out_inside_source_allowed_is_not_walked(album: Path) -> None:
    out = album / "crops"
    code, tally = run_batch(_opts(album, out, allow_inside_source=True), FakeEngine, out_stream=io.StringIO())
    assert tally.ok == 4
    code, tally = run_batch(_opts(album, out, allow_inside_source=True), FakeEngine, out_stream=io.StringIO())
    assert tally.ok == 0 and tally.done_before == 4  # the crops were not picked up as inputs


def test_disk_full_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(6):
        _jpeg(src / f"p{i}.jpg")
    out = tmp_path / "out"
    full = FakeEngine(fail_write=OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(FatalOutputError, match="No space left"):
        run_batch(_opts(src, out), lambda: full, out_stream=io.StringIO())
    assert load_manifest(out / "autocrop-manifest.jsonl").records == {}  # nothing recorded as done or failed
    # also when the engine wraps the OSError into a one-line InputError (as imageio.atomic_write does)
    wrapped = FakeEngine(fail_write=InputError(f"{out}/p0.crop1.jpg: cannot write: {os.strerror(errno.ENOSPC)}"))
    with pytest.raises(FatalOutputError):
        run_batch(_opts(src, out), lambda: wrapped, out_stream=io.StringIO())
    code, tally = run_batch(_opts(src, out), FakeEngine, out_stream=io.StringIO())
    assert code == 0 and tally.ok == 6


def test_interrupt_records_inflight_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(10):
        _jpeg(src / f"p{i}.jpg")
    out = tmp_path / "out"
    engine = FakeEngine(delay=0.05)
    seen: list[dict] = []

    def on_record(record: dict) -> None:
        seen.append(record)
        if len(seen) == 3:
            raise KeyboardInterrupt

    dest = Destination(str(src.resolve()), str(out.resolve()))
    out.mkdir()
    items = [WorkItem(str(p), p.name, 0, 0, str(out.resolve())) for p in sorted(src.glob("*.jpg"))]
    with pytest.raises(KeyboardInterrupt):
        run_local(items, dest, lambda: engine, 2, on_record)
    assert len(seen) >= 3 and len(seen) < 10  # in-flight inputs finished and were recorded, no new ones started
    assert not list(out.glob(".*.part"))


def test_run_batch_interrupted_exit_code_and_consistent_manifest(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    for i in range(8):
        _jpeg(src / f"p{i}.jpg")
    out = tmp_path / "out"
    engine = FakeEngine(delay=0.02)
    calls = {"n": 0}
    original = engine.write

    def write(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kw)

    engine.write = write
    code, tally = run_batch(_opts(src, out, jobs=1), lambda: engine, out_stream=io.StringIO())
    assert code == 130
    loaded = load_manifest(out / "autocrop-manifest.jsonl")
    assert loaded.bad_lines == 0 and all(r["status"] == "ok" for r in loaded.records.values())
    for r in loaded.records.values():
        assert all((out / o).exists() for o in r["outputs"])
    code, tally = run_batch(_opts(src, out), FakeEngine, out_stream=io.StringIO())
    assert code == 0 and tally.ok + tally.done_before == 8 and tally.done_before == len(loaded.records)


def test_process_one_refuses_out_dir_in_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _jpeg(src / "a.jpg")
    dest = Destination(str(src.resolve()), str(tmp_path.resolve()))  # out root above the source
    item = WorkItem(str(src / "a.jpg"), "src/a.jpg", 0, 0, str(src.resolve()))
    record = process_one(FakeEngine(), item, dest)
    assert record["status"] == "failed" and "inside the source folder" in record["error"]
    assert sorted(p.name for p in src.iterdir()) == ["a.jpg"]


# ------------------------------------------------------------------------------------------------ progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_and_rich_bar() -> None:
    plain = io.StringIO()
    with Progress(2, stream=plain) as p:
        p.advance({"path": "a.jpg", "status": "ok"})
        p.advance({"path": "b.jpg", "status": "failed", "error": "boom"})
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("[1/2] ok") and "img/s" in lines[0] and "ETA" in lines[0]
    assert "failed" in lines[1] and "boom" in lines[1]
    tty = _Tty()
    with Progress(2, stream=tty) as p:
        p.advance({"path": "a.jpg", "status": "ok"})
        p.advance({"path": "b.jpg", "status": "ok"})
    assert "img/s" in tty.getvalue() and "2/2" in tty.getvalue()


def test_summary_lists_failures() -> None:
    tally = Tally(total=3)
    tally.add({"path": "a.jpg", "status": "ok", "outputs": ["a.crop1.jpg"]})
    tally.add({"path": "b.jpg", "status": "failed", "error": "b.jpg: not an image"})
    text = format_summary(tally, "m.jsonl", "out")
    assert "1 cropped" in text and "1 failed" in text and "b.jpg: not an image" in text and "m.jsonl" in text


# ------------------------------------------------------------------------------------------------ resume speed


def test_resume_of_1000_finished_inputs_is_fast_and_loads_no_model(tmp_path: Path) -> None:
    """A finished batch of 1000 inputs re-run through the CLI: < 5 s, no model (the model file is garbage)."""
    from autocrop.batch.adapter import EngineSpec

    src = tmp_path / "src"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "JPEG")
    for i in range(1000):
        folder = src / f"d{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{i:04d}.jpg").write_bytes(buf.getvalue())
    model = tmp_path / "garbage.safetensors"
    model.write_bytes(b"not a model")
    out = tmp_path / "out"
    spec = EngineSpec(ratios=("16:9",), model=str(model.resolve()))
    opts = BatchOptions(source=src, out=out, quiet=True, settings=spec.settings(), jobs=2)
    code, tally = run_batch(opts, FakeEngine, out_stream=io.StringIO())
    assert code == 0 and tally.ok == 1000
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([AUTOCROP, "batch", str(src), "--out", str(out), "--ratio", "16:9", "--model", str(model)],
                          capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert "1000 already done" in proc.stdout
    assert elapsed < 5.0, f"resume took {elapsed:.1f} s"


def test_plan_counts(album: Path, tmp_path: Path) -> None:
    plan = plan_batch(_opts(album, tmp_path / "out"))
    assert len(plan.todo) == 7 and plan.done == 0 and plan.stats.ignored == 1
