"""The batch library: walk, location checks, manifest, resume, engines, progress and summary.

Every run goes through the real :class:`~autocrop.cropper.Cropper` (decode, candidates, selection,
planning, atomic writes) with the torch-free ``FakeScorer`` of conftest.py standing in for the model, on
photos that Pillow draws in ``tmp_path`` (JPEG, PNG with alpha, grayscale, EXIF-rotated): no shared data,
no torch, fast. tests/test_batch_cli.py runs the command with the packaged model; tests/test_batch_hostile.py
feeds hostile inputs and failing disks.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autocrop.batch import BatchOptions, CropperSpec, Tally, run_batch
from autocrop.batch.local import run_local
from autocrop.batch.manifest import ManifestWriter, is_done, load_manifest, settings_key
from autocrop.batch.run import plan_batch, remove_stale_partials
from autocrop.batch.summary import Progress, format_summary
from autocrop.batch.walk import SourceFile, WalkStats, check_locations, mirror_dir, walk_sources
from autocrop.batch.worker import Destination, FatalOutputError, WorkItem, output_key, process_one
from autocrop.commands.batch import exit_code
from autocrop.cropper import Cropper
from autocrop.errors import OutputError, UsageError
from autocrop.io.fs import is_temp_name
from autocrop.settings import CropSettings

# ------------------------------------------------------------------------------------------------ helpers
# (imported by test_batch_cli.py and test_batch_hostile.py)


def picture(size: tuple[int, int] = (320, 240), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A photo-like test picture: a colour gradient with a bright disc placed by ``seed``."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, min(w, h) / 5
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) * 120.0
    rgb = np.stack([xx / w * 200 + disc, yy / h * 200 + disc / 2, 80 + disc / 3 + 0 * xx], axis=-1)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        image.putalpha(Image.fromarray((xx / w * 255).astype(np.uint8), "L"))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def save_photo(path: Path, size: tuple[int, int] = (320, 240), seed: int = 0, mode: str = "RGB",
               orientation: int | None = None) -> Path:
    """Write ``picture(...)`` to ``path`` (format from the suffix; ``orientation`` sets the EXIF tag)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = picture(size, seed, mode)
    kwargs: dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, **kwargs)
    return path


def truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    picture((256, 256), seed=3).save(buf, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    return path


@dataclass(frozen=True)
class FastSpec(CropperSpec):
    """A :class:`CropperSpec` whose Cropper scores with the FakeScorer (no torch); counts the Croppers built."""

    scorer: Any = field(default=None, compare=False)
    built: list[int] = field(default_factory=list, compare=False)

    def __call__(self) -> Cropper:
        self.built.append(1)
        return Cropper(scorer=self.scorer, settings=self.settings)


@pytest.fixture
def spec(fake_scorer: Any):
    """``spec(ratio="16:9", top=2, ...)`` -> a FastSpec with those settings."""

    def make(**values: Any) -> FastSpec:
        return FastSpec(settings=CropSettings.build(**values), scorer=fake_scorer)

    return make


@pytest.fixture
def album(tmp_path: Path) -> Path:
    src = tmp_path / "album"
    save_photo(src / "a.jpg", seed=1)
    save_photo(src / "b.JPG", size=(400, 300), seed=2, mode="L")  # grayscale JPEG
    save_photo(src / "2023" / "rome" / "c.png", seed=3, mode="RGBA")  # PNG with alpha
    save_photo(src / "2023" / "ünïcødé" / "фото 1.jpg", seed=4, orientation=6)  # stored 320x240, shown 240x320
    save_photo(src / ".hidden" / "d.jpg")
    (src / "notes.txt").write_text("not a photo")
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a jpeg")
    truncated_jpeg(src / "2023" / "trunc.jpg")
    os.symlink("..", src / "2023" / "loop")  # a symlink loop: never followed
    return src


GOOD = ["a.jpg", "b.JPG", "2023/rome/c.png", "2023/ünïcødé/фото 1.jpg"]
BAD = ["empty.jpg", "text.jpg", "2023/trunc.jpg"]


def opts(src: Path, out: Path, **kw: Any) -> BatchOptions:
    kw.setdefault("jobs", 2)
    return BatchOptions(source=src, out=out, quiet=True, **kw)


def records(manifest: Path) -> dict[str, dict[str, Any]]:
    return load_manifest(manifest).records


# ------------------------------------------------------------------------------------------------ walk


def test_walk_sorted_recursive_unicode_no_loops(album: Path) -> None:
    stats = WalkStats()
    rels = [s.rel for s in walk_sources(album.resolve(), stats=stats)]
    # files of a folder first (sorted by name), then its sub-folders (sorted)
    assert rels == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg", "2023/trunc.jpg", "2023/rome/c.png",
                    "2023/ünïcødé/фото 1.jpg"]
    assert stats.ignored == 1 and stats.hidden == 1 and stats.symlinked_dirs == 1
    top_only = [s.rel for s in walk_sources(album.resolve(), recursive=False)]
    assert top_only == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg"]


def test_walk_include_exclude(album: Path) -> None:
    src = album.resolve()
    assert [s.rel for s in walk_sources(src, include=["*.JPG"])] == ["b.JPG"]
    assert [s.rel for s in walk_sources(src, exclude=["2023"])] == ["a.jpg", "b.JPG", "empty.jpg", "text.jpg"]
    assert [s.rel for s in walk_sources(src, include=["2023/rome/*"])] == ["2023/rome/c.png"]


def test_mirror_dir(tmp_path: Path) -> None:
    assert mirror_dir(tmp_path, "a.jpg") == tmp_path
    assert mirror_dir(tmp_path, "x/y/a.jpg") == tmp_path / "x" / "y"


def test_check_locations(album: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="^out .*is the source folder"):
        check_locations(album, album)
    with pytest.raises(UsageError, match="is the source folder"):
        check_locations(album, album, allow_inside_source=True)
    with pytest.raises(UsageError, match="inside the source folder.*allow_inside_source"):
        check_locations(album, album / "crops")
    src, out = check_locations(album, album / "crops", allow_inside_source=True)
    assert out == (album / "crops").resolve()
    with pytest.raises(UsageError, match="^source .*does not exist"):
        check_locations(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(UsageError, match="not a folder"):
        check_locations(album / "a.jpg", tmp_path / "out")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as info:
        check_locations(album, blocker / "out")
    assert info.value.errno is not None and "--" not in str(info.value)
    check_locations(album, tmp_path / "dry", create=False)
    assert not (tmp_path / "dry").exists()
    check_locations(album, tmp_path / "made" / "out")
    assert list((tmp_path / "made" / "out").iterdir()) == []  # created, and the write probe is gone


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


def test_settings_key_is_that_of_earlier_versions() -> None:
    """A batch finished by an earlier autocrop is not redone: the key of default-valued new settings is unchanged."""
    assert settings_key(output_key(CropSettings(), None)) == "955483f90cbe8faa"
    assert settings_key(output_key(CropSettings.build(ratio="16:9", top=2), None)) == "3db7c4a2ebbe3e67"
    key = output_key(CropSettings.build(ratio="16:9,1:1", top=3, quality=90, format="png"), None)
    assert settings_key(key) == "098433efb748e870"
    assert settings_key(output_key(CropSettings(refine=False), None)) != "955483f90cbe8faa"
    assert settings_key(output_key(CropSettings(long_edge=800), None)) != "955483f90cbe8faa"


def test_cropper_spec_is_picklable_and_checks_the_name() -> None:
    spec = CropperSpec(CropSettings.build(ratio="16:9", top=2), model=None, device="cpu")
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(UsageError, match="needs {stem}"):
        CropperSpec(CropSettings(name="crop{rank}"))
    err = pickle.loads(pickle.dumps(FatalOutputError("/x/a.jpg", "cannot write: disk full", 28)))
    assert isinstance(err, FatalOutputError) and err.errno == 28 and err.fatal and str(err.path) == "/x/a.jpg"


# ------------------------------------------------------------------------------------------------ runs


def test_batch_run_mirror_manifest_and_resume(album: Path, tmp_path: Path, spec: Any) -> None:
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in album.rglob("*") if p.is_file() and not p.is_symlink()}
    first = spec(ratio="16:9", top=2)
    summary = io.StringIO()
    tally = run_batch(opts(album, out), first, out_stream=summary)
    assert (tally.ok, tally.failed, tally.outputs, tally.complete) == (4, 3, 8, False)
    assert exit_code(tally) == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.crop*")) == [
        "2023/rome/c.crop1.png", "2023/rome/c.crop2.png", "2023/ünïcødé/фото 1.crop1.jpg",
        "2023/ünïcødé/фото 1.crop2.jpg", "a.crop1.jpg", "a.crop2.jpg", "b.crop1.JPG", "b.crop2.JPG"]
    recs = records(out / "autocrop-manifest.jsonl")
    assert set(recs) == set(GOOD + BAD)
    for rel in GOOD:
        rec = recs[rel]
        assert rec["status"] == "ok" and rec["error"] is None and rec["engine"] == "local"
        assert len(rec["outputs"]) == len(rec["boxes"]) == len(rec["scores"]) == 2 and rec["ratios"] == ["16:9"] * 2
        assert rec["scores"][0] >= rec["scores"][1]
        for out_rel, box in zip(rec["outputs"], rec["boxes"]):
            assert Path(out_rel).parent == Path(rel).parent  # mirrored tree
            with Image.open(out / out_rel) as im:
                assert im.size == (box[2] - box[0], box[3] - box[1])
                assert abs(im.width / im.height - 16 / 9) < 0.02
    assert max(b[3] for b in recs["2023/ünïcødé/фото 1.jpg"]["boxes"]) > 240  # boxes of the EXIF-oriented photo
    with Image.open(out / "2023/rome/c.crop1.png") as im:
        assert im.mode == "RGBA"
    for rel in BAD:
        assert recs[rel]["status"] == "failed" and recs[rel]["outputs"] == [] and recs[rel]["error"]
        assert str(album) not in recs[rel]["error"]  # the record names the input once, in "path"
    text = summary.getvalue()
    assert "3 failed" in text and "empty.jpg: empty file" in text and "trunc.jpg" in text
    assert before == {p: p.read_bytes() for p in before}  # originals untouched

    # resume: nothing redone for the good inputs (no output rewritten), the bad ones retried
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.crop*")}
    again = spec(ratio="16:9", top=2)
    tally = run_batch(opts(album, out), again, out_stream=io.StringIO())
    assert (tally.done_before, tally.ok, tally.failed) == (4, 0, 3)
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.crop*")}
    # without the bad inputs there is nothing left to do: no Cropper (no model) is built
    for rel in BAD:
        (album / rel).unlink()
    last = spec(ratio="16:9", top=2)
    tally = run_batch(opts(album, out), last, out_stream=io.StringIO())
    assert tally.complete and exit_code(tally) == 0 and tally.done_before == 4 and last.built == []
    tally = run_batch(opts(album, out, dry_run=True), last, out_stream=io.StringIO())
    assert tally.complete and tally.planned == [] and last.built == []


def test_dry_run_builds_nothing_and_lists_the_plan(album: Path, tmp_path: Path, spec: Any) -> None:
    out = tmp_path / "out"
    dry = spec()
    text = io.StringIO()
    tally = run_batch(opts(album, out, dry_run=True), dry, out_stream=text)
    assert dry.built == [] and not out.exists()
    assert len(tally.planned) == 7 and ("2023/rome/c.png", str((out / "2023" / "rome").resolve())) in tally.planned
    assert tally.as_dict()["dry_run"] is True and len(tally.as_dict()["planned"]) == 7
    assert "would crop a.jpg" in text.getvalue() and "nothing written" in text.getvalue()


def test_changed_settings_or_source_redo(album: Path, tmp_path: Path, spec: Any) -> None:
    out = tmp_path / "out"
    run_batch(opts(album, out), spec(), out_stream=io.StringIO())
    save_photo(album / "a.jpg", size=(300, 300), seed=9)  # an edited photo
    os.utime(album / "a.jpg", ns=(1, 1))
    tally = run_batch(opts(album, out), spec(), out_stream=io.StringIO())
    assert tally.ok == 1 and tally.done_before == 3
    # other settings: every input again, each now with two crops (the earlier outputs are ours: replaced)
    tally = run_batch(opts(album, out), spec(top=2), out_stream=io.StringIO())
    assert tally.ok == 4 and tally.done_before == 0
    assert (out / "a.crop2.jpg").is_file() and (out / "2023" / "rome" / "c.crop2.png").is_file()
    tally = run_batch(opts(album, out), spec(top=2), out_stream=io.StringIO())
    assert tally.ok == 0 and tally.done_before == 4
    tally = run_batch(opts(album, out, resume=False), spec(top=2), out_stream=io.StringIO())
    assert tally.ok == 4 and tally.done_before == 0


def test_existing_foreign_file_not_replaced_without_overwrite(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.crop1.jpg").write_bytes(b"my own file")
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert exit_code(tally) == 3 and "already exists" in tally.failures[0][1]
    assert (out / "a.crop1.jpg").read_bytes() == b"my own file"
    tally = run_batch(opts(src, out, overwrite=True), spec(), out_stream=io.StringIO())
    assert exit_code(tally) == 0 and (out / "a.crop1.jpg").read_bytes() != b"my own file"


def test_same_stem_inputs_do_not_collide(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg", seed=1)
    save_photo(src / "a.png", seed=2)
    save_photo(src / "b.jpg", seed=3)
    out = tmp_path / "out"
    tally = run_batch(opts(src, out), spec(preview=True), out_stream=io.StringIO())
    assert tally.complete
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".jsonl")) == [
        "a.jpg.crop1.jpg", "a.jpg.preview.png", "a.png.crop1.png", "a.png.preview.png",
        "b.crop1.jpg", "b.preview.png"]
    recs = records(out / "autocrop-manifest.jsonl")
    assert recs["a.png"]["outputs"] == ["a.png.crop1.png", "a.png.preview.png"]


def test_out_inside_source_allowed_is_not_walked(album: Path, spec: Any) -> None:
    out = album / "crops"
    tally = run_batch(opts(album, out, allow_inside_source=True), spec(), out_stream=io.StringIO())
    assert tally.ok == 4
    tally = run_batch(opts(album, out, allow_inside_source=True), spec(), out_stream=io.StringIO())
    assert tally.ok == 0 and tally.done_before == 4  # the crops were not picked up as inputs


def test_bad_parameters_are_usage_errors(album: Path, tmp_path: Path, spec: Any) -> None:
    for kw, text in [({"engine": "spark"}, "engine 'spark'"), ({"jobs": -1}, "jobs -1")]:
        with pytest.raises(UsageError, match=text) as info:
            run_batch(opts(album, tmp_path / "out", **kw), spec(), out_stream=io.StringIO())
        assert "--" not in str(info.value)
    with pytest.raises(UsageError, match="manifest .*inside the source folder"):
        run_batch(opts(album, tmp_path / "out", manifest=album / "m.jsonl"), spec(), out_stream=io.StringIO())


def test_remove_stale_partials_only_touches_autocrop_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "docs").mkdir(parents=True)
    ours = [out / ".autocrop-0123456789ab.a.crop1.jpg.part", out / "docs" / ".autocrop-abcdefabcdef.x.png.part"]
    theirs = [out / "docs" / ".thesis.part", out / ".autocrop-notours.part", out / "a.part",
              out / ".autocrop-0123456789AB.a.jpg.part", out / ".autocrop-0123456789ab.a.jpg"]
    for path in ours + theirs:
        path.write_bytes(b"x")
    assert all(is_temp_name(p.name) for p in ours) and not any(is_temp_name(p.name) for p in theirs)
    assert remove_stale_partials(out) == 2
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


def test_a_run_removes_the_temp_files_of_a_killed_run(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    out = tmp_path / "out"
    (out / "docs").mkdir(parents=True)
    (out / "docs" / ".thesis.part").write_text("a user's file")
    (out / ".autocrop-0123456789ab.a.crop1.jpg.part").write_bytes(b"half a crop")
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.complete
    assert (out / "docs" / ".thesis.part").read_text() == "a user's file"
    assert not (out / ".autocrop-0123456789ab.a.crop1.jpg.part").exists()


# ------------------------------------------------------------------------------------------------ interrupts


def _items(src: Path, out: Path) -> list[WorkItem]:
    return [WorkItem(str(p), p.name, 0, 0, str(out.resolve())) for p in sorted(src.glob("*.jpg"))]


def test_interrupt_records_inflight_and_starts_nothing_new(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    for i in range(10):
        save_photo(src / f"p{i}.jpg", seed=i)
    out = tmp_path / "out"
    out.mkdir()
    seen: list[dict[str, Any]] = []

    def on_record(record: dict[str, Any]) -> None:
        seen.append(record)
        if len(seen) == 3:
            raise KeyboardInterrupt

    dest = Destination(str(src.resolve()), str(out.resolve()))
    with pytest.raises(KeyboardInterrupt):
        run_local(_items(src, out), dest, spec(), 2, on_record)
    assert 3 <= len(seen) < 10  # in-flight inputs finished and were recorded, no new ones started
    assert all(r["status"] == "ok" for r in seen)
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]


def test_run_batch_interrupted_outcome_and_consistent_manifest(tmp_path: Path, spec: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for i in range(8):
        save_photo(src / f"p{i}.jpg", seed=i)
    out = tmp_path / "out"
    calls = {"n": 0}
    original = Cropper.write

    def write(self: Cropper, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(Cropper, "write", write)
    text = io.StringIO()
    tally = run_batch(opts(src, out, jobs=1), spec(), out_stream=text)
    assert tally.interrupted and not tally.complete and exit_code(tally) == 130
    assert "interrupted" in text.getvalue() and tally.as_dict()["interrupted"] is True
    loaded = load_manifest(out / "autocrop-manifest.jsonl")
    assert loaded.bad_lines == 0 and 3 <= len(loaded.records) < 8 and "p3.jpg" not in loaded.records
    assert all(r["status"] == "ok" and all((out / o).exists() for o in r["outputs"]) for r in loaded.records.values())
    monkeypatch.setattr(Cropper, "write", original)
    tally = run_batch(opts(src, out), spec(), out_stream=io.StringIO())
    assert tally.complete and tally.ok == 8 - len(loaded.records) and tally.done_before == len(loaded.records)


def test_process_one_refuses_out_dir_in_source(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    dest = Destination(str(src.resolve()), str(tmp_path.resolve()))  # out root above the source
    item = WorkItem(str(src / "a.jpg"), "src/a.jpg", 0, 0, str(src.resolve()))
    record = process_one(spec()(), item, dest)
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


def test_summary_and_outcome() -> None:
    tally = Tally(total=3, out="out", manifest="m.jsonl")
    tally.add({"path": "a.jpg", "status": "ok", "outputs": ["a.crop1.jpg"]})
    assert tally.complete and exit_code(tally) == 0
    tally.add({"path": "b.jpg", "status": "failed", "error": "not an image"})
    text = format_summary(tally)
    assert "1 cropped" in text and "1 failed" in text and "b.jpg: not an image" in text and "m.jsonl" in text
    assert not tally.complete and exit_code(tally) == 3
    data = json.loads(json.dumps(tally.as_dict()))
    assert data["failures"] == [{"path": "b.jpg", "error": "not an image"}] and data["outputs"] == 1
    tally.interrupted = True
    assert exit_code(tally) == 130


# ------------------------------------------------------------------------------------------------ resume speed


def test_resume_of_1000_finished_inputs_is_fast_and_builds_no_cropper(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    settings = spec(ratio="16:9")
    key = settings_key(settings.output_key())
    data = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(data, "JPEG")
    lines = []
    for i in range(1000):
        rel = f"d{i // 100}/img_{i:04d}.jpg"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data.getvalue())
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).with_name(f"img_{i:04d}.crop1.jpg").write_bytes(b"x")
        st = (src / rel).stat()
        lines.append(json.dumps({"path": rel, "status": "ok", "outputs": [rel.replace(".jpg", ".crop1.jpg")],
                                 "size": st.st_size, "mtime_ns": st.st_mtime_ns, "settings": key}))
    (out / "autocrop-manifest.jsonl").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    tally = run_batch(opts(src, out), settings, out_stream=io.StringIO())
    elapsed = time.perf_counter() - t0
    assert tally.complete and tally.done_before == 1000 and settings.built == []
    assert elapsed < 3.0, f"resume took {elapsed:.1f} s"


def test_plan_counts(album: Path, tmp_path: Path) -> None:
    plan = plan_batch(opts(album, tmp_path / "out"))
    assert len(plan.todo) == 7 and plan.done == 0 and plan.stats.ignored == 1
