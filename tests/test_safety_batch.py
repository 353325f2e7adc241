"""Safety of `batch` (issue 13, items 1-5 and 11): outputs only inside the output folder and never in or over
the source tree, user files never replaced, names collision-free by construction, one batch per output
folder, clean-up of only our own dead temp files, and bookkeeping that survives hostile names and files.

Every case asserts the documented outcome (exception class / exit code), every input byte-identical and no
file changed outside the output folder. Real Cropper with the FakeScorer; photos drawn by Pillow.
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
from typing import Any

import pytest
from conftest import FakeScorer, error_lines
from test_batch import FastSpec, opts, save_photo
from test_safety_outputs import changed, no_traceback, snapshot

from autocrop.batch import FatalOutputError, run_batch
from autocrop.batch.lock import LOCK_NAME, OutputLock
from autocrop.batch.manifest import MANIFEST_NAME, ManifestWriter, load_manifest
from autocrop.batch.summary import format_summary
from autocrop.batch.walk import SourceFile, output_stems
from autocrop.commands.batch import exit_code
from autocrop.errors import OutputError, UsageError
from autocrop.settings import CropSettings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def spec() -> Any:
    return lambda **values: FastSpec(settings=CropSettings.build(**values), scorer=FakeScorer())


def run(src: Path, out: Path, spec_: Any, **kw: Any) -> Any:
    stream = io.StringIO()
    tally = run_batch(opts(src, out, **kw), spec_, out_stream=stream)
    stream.getvalue().encode("utf-8")  # the summary is printable whatever the file names
    return tally


def outputs_of(out: Path) -> dict[str, str]:
    """Output files (relative) -> sha256, without the manifest."""
    return {os.path.relpath(k, out): v for k, v in snapshot(out).items() if v != "dir"
            and not k.endswith(MANIFEST_NAME)}


# ------------------------------------------------------------------------------------------------ items 1, 2


def test_crops_never_land_in_the_source_tree_when_out_holds_it(tmp_path: Path, spec: Any) -> None:
    out = tmp_path / "out"
    src = out / "album"
    save_photo(src / "a.jpg", seed=1)
    save_photo(src / "album" / "b.jpg", seed=2)  # mirrors to out/album: the source folder itself
    live = src / ".autocrop-0123456789ab.c.crop1.jpg.part"  # a `crop` run writing beside its photos
    live.write_bytes(b"in progress")
    before = snapshot(src)
    tally = run(src, out, spec())
    assert exit_code(tally) == 3 and tally.ok == 1
    assert "inside the source folder" in dict(tally.failures)["album/b.jpg"]
    assert snapshot(src) == before  # nothing written into (or removed from) the source tree
    tally = run(src, out, spec())
    assert tally.done_before == 1 and tally.total == 2  # no crop became an input


def test_a_mirrored_folder_linked_into_the_source_tree_is_refused(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "sub" / "a.jpg")
    out.mkdir()
    os.symlink(src / "sub", out / "sub")
    before = snapshot(src)
    tally = run(src, out, spec(), overwrite=True)
    assert exit_code(tally) == 3 and "outside the output root" in tally.failures[0][1]
    assert snapshot(src) == before


def test_no_output_is_a_file_of_the_source_tree(tmp_path: Path, spec: Any) -> None:
    """An input symlinked from the source into OUT, under another input's output name: never replaced."""
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "b.jpg", seed=1)
    save_photo(out / "b.crop1.jpg", seed=2)  # a photo of the user's in OUT ...
    os.symlink(out / "b.crop1.jpg", src / "z.jpg")  # ... that is also an input
    before = snapshot(src, out)
    tally = run(src, out, spec(), overwrite=True)
    assert "is an input photo" in dict(tally.failures)["b.jpg"]
    after = snapshot(src, out)
    assert after[str(out / "b.crop1.jpg")] == before[str(out / "b.crop1.jpg")]
    assert changed(before, after, allowed=out) == []


# ------------------------------------------------------------------------------------------------ item 3


def test_a_shared_manifest_never_switches_overwrite_on_in_another_folder(tmp_path: Path, spec: Any) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    manifest = tmp_path / "m.jsonl"
    assert run(src, tmp_path / "out1", spec(), manifest=manifest).complete
    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / "a.crop1.jpg").write_bytes(b"the user's own file")
    for _ in range(2):
        tally = run(src, out2, spec(), manifest=manifest, resume=False)
        assert exit_code(tally) == 3 and "already exists" in tally.failures[0][1]
        assert (out2 / "a.crop1.jpg").read_bytes() == b"the user's own file"


def test_a_users_file_is_not_replaced_by_the_second_run_either(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    save_photo(src / "b.jpg", seed=3)
    out.mkdir()
    (out / "a.crop1.jpg").write_bytes(b"mine")
    for _ in range(2):  # the manifest in OUT exists from the second run on: still not the batch's file
        tally = run(src, out, spec())
        assert exit_code(tally) == 3 and list(dict(tally.failures)) == ["a.jpg"]
    assert (out / "a.crop1.jpg").read_bytes() == b"mine"
    tally = run(src, out, spec(), overwrite=True)  # the user says so
    assert tally.complete and (out / "a.crop1.jpg").read_bytes() != b"mine"


def test_outputs_of_an_input_cut_short_by_a_kill_are_replaced_on_resume(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    save_photo(src / "b.jpg", seed=2)
    assert run(src, out, spec()).complete
    reference = outputs_of(out)
    (out / MANIFEST_NAME).unlink()  # as if killed after b's crop was linked in, before its record:
    with ManifestWriter(out / MANIFEST_NAME) as writer:
        writer.write({"path": "b.jpg", "status": "started", "out": str(out.resolve()), "settings": "x"})
    (out / "b.crop1.jpg").write_bytes(b"half of a run")
    tally = run(src, out, spec())
    assert exit_code(tally) == 3 and list(dict(tally.failures)) == ["a.jpg"]  # a's file is not known as ours
    assert outputs_of(out)["b.crop1.jpg"] == reference["b.crop1.jpg"]  # b's own output, replaced


def test_colliding_stems_map_to_distinct_outputs_in_every_run(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    names = ["a.jpg", "a.png", "a_jpg.jpg", "a.jpg.png", "A.gif", "b.png"]
    for i, name in enumerate(names):
        save_photo(src / name, seed=i)
    tally = run(src, out, spec(format="png", preview=True))
    assert tally.complete and tally.ok == len(names)
    first = outputs_of(out)
    assert len(first) == 2 * len(names)  # one crop and one preview each, none shared
    recs = load_manifest(out / MANIFEST_NAME).records
    assert len({o for r in recs.values() for o in r["outputs"]}) == 2 * len(names)
    for i, name in enumerate(["a.gif", "a.jpg.jpg", "b.jpg", "a_jpg.png", "A.jpg.png"], start=10):
        save_photo(src / name, seed=i)  # files added later may change no earlier output
    tally = run(src, out, spec(format="png", preview=True))
    assert tally.complete and tally.ok == 5 and tally.done_before == len(names)
    second = outputs_of(out)
    assert {k: second[k] for k in first} == first and len(second) == 2 * (len(names) + 5)


def test_output_stems_are_injective_and_independent_of_other_files() -> None:
    def stems(*names: str) -> dict[str, str]:
        sources = [SourceFile(Path(n), n, 0, 0) for n in names]
        found = output_stems(sources)
        return {n: found.get(n, Path(n).stem) for n in names}

    one = stems("a.jpg", "a.png", "a_jpg.jpg", "a.jpg.png", "x/a.jpg", "A.JPG")
    assert len({(k.rpartition("/")[0], v.casefold()) for k, v in one.items()}) == len(one)
    assert one["a.jpg.png"] == "a.jpg.png" and one["a_jpg.jpg"] == "a_jpg" and one["x/a.jpg"] == "a"
    assert one["a.jpg"] != one["A.JPG"] and one["a.jpg"].casefold() != one["A.JPG"].casefold()
    assert stems("a.jpg.png")["a.jpg.png"] == "a.jpg.png"  # the same whatever else is there


# ------------------------------------------------------------------------------------------------ items 4, 5


def test_clean_up_removes_only_our_dead_temp_files(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    (out / "docs").mkdir(parents=True)
    theirs = [out / "docs" / ".thesis.part", out / ".autocrop-notours.part", out / "docs" / "x.part"]
    for path in theirs:
        path.write_text("the user's")
    dead = out / "docs" / ".autocrop-0123456789ab.old.crop1.jpg.part"
    dead.write_bytes(b"left by a killed run")
    assert run(src, out, spec()).complete
    assert all(p.read_text() == "the user's" for p in theirs) and not dead.exists()


def test_a_second_batch_on_the_same_output_folder_is_refused(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    out.mkdir()
    live = out / ".autocrop-abcdefabcdef.a.crop1.jpg.part"  # the other run's file in progress
    live.write_bytes(b"being written")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from autocrop.batch.lock import OutputLock\n"
         "with OutputLock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = snapshot(src, out)
        with pytest.raises(UsageError) as err:
            run(src, out, spec())
        assert str(err.value).startswith(f"another autocrop batch is writing into {out.resolve()} (pid {holder.pid})")
        assert snapshot(src, out) == before and live.exists()  # nothing done, the live temp file kept
    finally:
        holder.kill()
        holder.wait()
    assert run(src, out, spec()).complete  # the kernel dropped the dead holder's lock
    assert not (out / LOCK_NAME).exists()


def test_the_lock_message_on_the_command_line(cli: Any, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    out.mkdir()
    with OutputLock(out):
        code, stdout, err = cli(["batch", src, "--out", out])
    assert code == 2 and error_lines(err) == [
        f"autocrop: error: another autocrop batch is writing into {out.resolve()} (pid {os.getpid()}); "
        "wait for it to finish, or choose another output folder"]
    no_traceback(err)
    assert list(out.iterdir()) == []  # nothing done, and the lock file went with its holder


def test_a_planted_lock_link_is_refused(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, out / LOCK_NAME)
    with pytest.raises(OutputError, match="symbolic link"):
        run(src, out, spec())
    assert victim.read_text() == "keep me"


# ------------------------------------------------------------------------------------------------ item 11


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses file names that are not UTF-8")
def test_non_utf8_file_names_are_cropped_recorded_and_resumed(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "plain.jpg")
    odd = os.fsdecode(b"\xff\xfe.jpg")
    save_photo(src / odd, seed=4)
    save_photo(src / os.fsdecode(b"sub\xe9") / "x.jpg", seed=5)
    before = snapshot(src)
    tally = run(src, out, spec())
    assert tally.complete and tally.ok == 3
    assert (out / os.fsdecode(b"\xff\xfe.crop1.jpg")).is_file()
    lines = (out / MANIFEST_NAME).read_bytes().decode("utf-8").splitlines()  # valid UTF-8 throughout
    assert any("\\udcff\\udcfe" in line for line in lines)
    assert odd in load_manifest(out / MANIFEST_NAME).records
    tally = run(src, out, spec())
    assert tally.done_before == 3 and tally.ok == 0
    json.dumps(tally.as_dict(), ensure_ascii=False).encode("utf-8")
    assert snapshot(src) == before


def test_manifest_lines_of_the_wrong_shape_are_skipped_and_counted(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        save_photo(src / name)
    out.mkdir()
    bad = ['{"path": "a.jpg", "status": "ok", "outputs": 5}', "[null]", '{"path": 5}', "null", '"text"',
           '{"path": "b.jpg", "status": "ok", "outputs": [null]}', '{"path": "c.jpg", "status": "done"}',
           '{"path": "c.jpg", "status": "ok", "size": "big"}', "[" * 100000, "{not json"]
    (out / MANIFEST_NAME).write_text("\n".join(bad) + "\n")
    stream = io.StringIO()
    tally = run_batch(opts(src, out), spec(), out_stream=stream)
    assert tally.complete and tally.ok == 3 and tally.manifest_bad_lines == len(bad)
    assert f"{len(bad)} unreadable line(s) skipped" in stream.getvalue()
    assert tally.as_dict()["manifest_bad_lines"] == len(bad)


@pytest.mark.parametrize("where,message", [
    ("folder", "is a folder"), ("/proc/self/status", "pseudo file system"), ("/proc/new.jsonl", "pseudo file system"),
    ("link", "symbolic link"), ("fifo", "not a regular file")])
def test_bad_manifest_paths_are_one_line_before_any_work(tmp_path: Path, spec: Any, where: str, message: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    manifest = Path(where) if where.startswith("/") else tmp_path / where
    if where == "folder":
        manifest.mkdir()
    elif where == "link":
        (tmp_path / "real.jsonl").write_text("")
        os.symlink(tmp_path / "real.jsonl", manifest)
    elif where == "fifo":
        os.mkfifo(manifest)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=message) as err:
        run(src, out, spec(), manifest=manifest)
    assert "\n" not in str(err.value)
    assert snapshot(tmp_path) == before  # refused before the output folder is even made


def test_manifest_folder_on_the_command_line_is_exit_2(cli: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    save_photo(src / "a.jpg")
    (tmp_path / "m").mkdir()
    code, out, err = cli(["batch", src, "--out", tmp_path / "out", "--manifest", tmp_path / "m"])
    assert code == 2 and len(error_lines(err)) == 1 and "is a folder" in err
    no_traceback(err)


def test_unwritable_manifest_is_one_line(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the manifest's folder would go")
    with pytest.raises(OutputError, match="cannot write the manifest") as err:
        run(src, out, spec(), manifest=blocker / "m.jsonl")
    assert "\n" not in str(err.value) and blocker.read_text().startswith("a file")


def test_disk_full_while_appending_to_the_manifest_stops_and_resumes(tmp_path: Path, spec: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(5):
        save_photo(src / f"p{i}.jpg", seed=i)
    clean = tmp_path / "clean"
    assert run(src, clean, spec(), jobs=1).complete
    real_write_all = ManifestWriter._write_all
    calls = {"n": 0}

    def full_disk(self: ManifestWriter, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 5:  # some lines, then half a line, then the disk is full
            real_write_all(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(self, data)

    monkeypatch.setattr(ManifestWriter, "_write_all", full_disk)
    with pytest.raises(FatalOutputError) as err:
        run(src, out, spec(), jobs=1)
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)
    monkeypatch.setattr(ManifestWriter, "_write_all", real_write_all)
    tally = run(src, out, spec(), jobs=1)
    assert tally.complete and tally.manifest_bad_lines == 1  # the cut line
    assert outputs_of(out) == outputs_of(clean)  # every output there, byte-identical to an undisturbed run
    assert len(load_manifest(out / MANIFEST_NAME).records) == 5


def test_summary_of_failures_with_non_utf8_names_is_printable(tmp_path: Path, spec: Any) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src).mkdir()
    (src / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"not a photo")
    tally = run(src, out, spec())
    assert exit_code(tally) == 3
    text = format_summary(tally)
    text.encode("utf-8")
    assert "bad\\xff.jpg" in text
    time.sleep(0)


def test_a_mirrored_folder_linked_to_another_folder_of_out_is_refused(tmp_path: Path, spec: Any) -> None:
    """OUT/2023 -> OUT: crops of 2023/a.jpg would land on those of a.jpg; refused even with overwrite."""
    src, out = tmp_path / "src", tmp_path / "out"
    save_photo(src / "a.jpg", seed=1)
    save_photo(src / "2023" / "a.jpg", seed=2)
    out.mkdir()
    os.symlink(out, out / "2023")
    tally = run(src, out, spec(), overwrite=True)
    assert list(dict(tally.failures)) == ["2023/a.jpg"] and "symbolic link" in tally.failures[0][1]
    assert load_manifest(out / MANIFEST_NAME).records["a.jpg"]["outputs"] == ["a.crop1.jpg"]
    tally = run(src, out, spec(), overwrite=True)
    assert tally.done_before == 1 and tally.failed == 1
