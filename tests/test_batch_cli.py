"""``autocrop batch`` end to end: options, exit codes, --json, --dry-run, resume, help, signals.

No shared data: photos are the packaged example and pictures Pillow draws in ``tmp_path``. The end-to-end
test and the signal tests use the packaged model (``model_file``); the other tests run the command in this
process with the FakeScorer of conftest.py standing in for the model, so they need no torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_batch import picture, save_photo, truncated_jpeg
from test_batch_hostile import _failing_encoder, needs_non_root

import autocrop.io.encode
import autocrop.model
from autocrop.batch.manifest import MANIFEST_NAME, load_manifest
from autocrop.examples import example_photo
from autocrop.io.fs import is_temp_name

AUTOCROP = str(Path(sys.executable).with_name("autocrop"))
GOOD = {"coffee.jpg", "2024/été/gradient.png", "2024/été/rotated.jpg", "gray.jpg"}


def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """``autocrop ARGS`` in this process -> (exit code, stdout, stderr)."""
    from autocrop.cli import run

    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _subprocess(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([AUTOCROP, *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def album(root: Path, bad: bool = True) -> Path:
    src = root / "album"
    src.mkdir(parents=True)
    shutil.copy(example_photo(), src / "coffee.jpg")
    save_photo(src / "2024" / "été" / "gradient.png", size=(480, 360), seed=1, mode="RGBA")
    save_photo(src / "2024" / "été" / "rotated.jpg", size=(480, 320), seed=2, orientation=8)
    save_photo(src / "gray.jpg", size=(400, 400), seed=3, mode="L")
    (src / "notes.txt").write_text("ignored")
    if bad:
        (src / "zero.jpg").write_bytes(b"")
        (src / "text.jpg").write_text("not an image")
        truncated_jpeg(src / "2024" / "truncated.jpg")
    return src


def records(out: Path) -> dict[str, dict[str, Any]]:
    return load_manifest(out / MANIFEST_NAME).records


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch, fake_scorer: Any) -> list[Any]:
    """The command's model is the FakeScorer; returns the list of load_scorer calls."""
    calls: list[Any] = []

    def load(model: Any = None, device: str = "cpu", **options: Any) -> Any:
        calls.append((model, device))
        return fake_scorer

    monkeypatch.setattr(autocrop.model, "load_scorer", load)
    return calls


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test."""

    def load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(autocrop.model, "load_scorer", load)


def test_cli_batch_end_to_end(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = album(tmp_path)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "crops"
    args = ["batch", src, "--out", out, "--ratio", "16:9", "--top", "2", "--model", model_file, "--jobs", "2"]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 3, stderr  # some inputs failed
    assert "3 failed" in stdout and "zero.jpg: empty file" in stdout and "truncated.jpg" in stdout
    assert "Traceback" not in stderr
    recs = records(out)
    assert {k for k, r in recs.items() if r["status"] == "ok"} == GOOD
    for rel, rec in recs.items():
        if rec["status"] != "ok":
            assert rec["error"] and rec["outputs"] == [] and rec["boxes"] == []
            continue
        assert len(rec["outputs"]) == len(rec["boxes"]) == len(rec["scores"]) == 2 and rec["ratios"] == ["16:9"] * 2
        for out_rel, box in zip(rec["outputs"], rec["boxes"]):
            assert Path(out_rel).parent == Path(rel).parent  # mirrored tree
            with Image.open(out / out_rel) as im:
                assert im.size == (box[2] - box[0], box[3] - box[1])
                assert abs(im.width / im.height - 16 / 9) < 0.02
    assert all(b[3] <= 480 and b[2] <= 320 for b in recs["2024/été/rotated.jpg"]["boxes"])  # EXIF-oriented
    assert before == {p: p.read_bytes() for p in before}  # originals untouched
    assert not list(src.rglob("*.crop*"))  # nothing written into the source

    # again: the good inputs are not redone (outputs untouched), the bad ones are retried and reported again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.crop*")}
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 3 and "4 already done" in stdout and "3 failed" in stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.crop*")}
    # once the bad inputs are gone there is nothing to do: exit 0 and no model loaded
    for name in ("zero.jpg", "text.jpg", "2024/truncated.jpg"):
        (src / name).unlink()

    def load(*a: Any, **k: Any) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(autocrop.model, "load_scorer", load)
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    assert "4 already done" in stdout and "0 failed" in stdout


def test_cli_json_summary_on_stdout(tmp_path: Path, fake_model: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    src = album(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "batch", src, "-o", out, "--json", "-j", "1")
    assert code == 3
    data = json.loads(stdout)  # stdout holds the JSON document only
    assert (data["total"], data["ok"], data["failed"], data["done_before"], data["outputs"]) == (7, 4, 3, 0, 4)
    assert data["interrupted"] is False and data["dry_run"] is False and data["ignored"] == 1
    assert data["out"] == str(out.resolve()) and data["manifest"] == str(out.resolve() / MANIFEST_NAME)
    assert {f["path"] for f in data["failures"]} == {"zero.jpg", "text.jpg", "2024/truncated.jpg"}
    assert "autocrop batch: done" in stderr and "[7/7]" in stderr  # humans: summary and progress on stderr
    assert len(fake_model) == 1  # one model for the whole batch


def test_cli_dry_run_loads_no_model_and_writes_nothing(tmp_path: Path, no_model: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = album(tmp_path)
    out = tmp_path / "out"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a model")
    code, stdout, stderr = run_cli(capsys, "batch", src, "-o", out, "--dry-run", "--model", garbage)
    assert code == 0, stderr
    assert "would crop coffee.jpg -> " in stdout and "7 to crop" in stdout
    assert not out.exists()
    code, stdout, _ = run_cli(capsys, "batch", src, "-o", out, "--dry-run", "--json")
    data = json.loads(stdout)
    assert code == 0 and data["dry_run"] is True and len(data["planned"]) == 7 and not out.exists()


def test_cli_settings_change_redoes_inputs(tmp_path: Path, fake_model: list[Any],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = album(tmp_path, bad=False)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "batch", src, "-o", out, "-r", "1:1")
    assert code == 0 and "4 cropped" in stdout and not (out / "coffee.crop2.jpg").exists()
    code, stdout, _ = run_cli(capsys, "batch", src, "-o", out, "-r", "1:1")
    assert code == 0 and "4 already done" in stdout and len(fake_model) == 1
    code, stdout, _ = run_cli(capsys, "batch", src, "-o", out, "-r", "1:1", "--top", "2")
    assert code == 0 and "4 cropped" in stdout and (out / "coffee.crop2.jpg").is_file()
    with Image.open(out / "coffee.crop2.jpg") as im:
        assert im.width == im.height


def test_cli_defaults_from_the_environment(tmp_path: Path, fake_model: list[Any], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = album(tmp_path, bad=False)
    out = tmp_path / "out"
    monkeypatch.setenv("AUTOCROP_TOP", "2")
    monkeypatch.setenv("AUTOCROP_RATIO", "4:5")
    code, _, stderr = run_cli(capsys, "batch", src, "-o", out)
    assert code == 0, stderr
    assert records(out)["coffee.jpg"]["ratios"] == ["4:5", "4:5"]


@pytest.mark.parametrize(("args", "text"), [
    (["{tmp}/missing"], "source {tmp}/missing: folder does not exist"),
    (["{src}", "--out", "{src}/x"], "is inside the source folder"),
    (["{src}", "--out", "{src}"], "is the source folder"),
    (["{src}/coffee.jpg"], "is a file, not a folder"),
    (["{src}", "-o", "{tmp}/o", "--ratio", "16:0"], "ratio 16:0"),
    (["{src}", "-o", "{tmp}/o", "--top", "0"], "top 0"),
    (["{src}", "-o", "{tmp}/o", "--name", "crop{{rank}}"], "needs {stem} in a batch"),
    (["{src}", "-o", "{tmp}/o", "--engine", "spark"], "engine 'spark'"),
    (["{src}", "-o", "{tmp}/o", "--jobs", "-1"], "jobs -1"),
    (["{src}", "-o", "{tmp}/o", "--device", "banana"], "device 'banana'"),
    (["{src}", "-o", "{tmp}/o", "--model", "{tmp}/none.safetensors"], "model file not found"),
    (["{src}", "-o", "{src}/coffee.jpg/o", "--allow-inside-source"], "cannot create the output folder"),
])
def test_cli_usage_errors_are_one_line(tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str],
                                       args: list[str], text: str) -> None:
    src = album(tmp_path, bad=False)
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    code, stdout, stderr = run_cli(capsys, "batch", *argv)
    assert code == 2, (stdout, stderr)
    assert stderr.startswith("autocrop: error: ") and len(stderr.strip().splitlines()) == 1
    assert text.replace("{tmp}", str(tmp_path)) in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_cli_unavailable_device_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    src = album(tmp_path, bad=False)
    code, _, stderr = run_cli(capsys, "batch", src, "-o", tmp_path / "o", "--device", "cuda")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "device 'cuda'" in stderr


def test_cli_disk_full_stops_with_one_line(tmp_path: Path, fake_model: list[Any], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = album(tmp_path, bad=False)
    out = tmp_path / "out"
    monkeypatch.setattr(autocrop.io.encode, "encode", _failing_encoder(28, after=1))  # errno.ENOSPC
    code, stdout, stderr = run_cli(capsys, "batch", src, "-o", out, "-j", "1", "--quiet", "--json")
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("autocrop: error: ") and "No space left on device" in stderr
    assert stdout == ""
    assert len(records(out)) == 1 and not [p for p in out.rglob("*") if is_temp_name(p.name)]
    monkeypatch.undo()
    code, stdout, _ = run_cli(capsys, "batch", src, "-o", out, "--quiet")
    assert code == 0 and "1 already done" in stdout


@needs_non_root
def test_cli_read_only_output_is_fatal(tmp_path: Path, fake_model: list[Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = album(tmp_path, bad=False)
    out = tmp_path / "out"
    (out / "2024").mkdir(parents=True)
    (out / "2024").chmod(0o555)
    try:
        code, _, stderr = run_cli(capsys, "batch", src, "-o", out, "-j", "1", "-q")
    finally:
        (out / "2024").chmod(0o755)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Permission denied" in stderr


def test_cli_help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, stdout, _ = run_cli(capsys, "batch", "--help")
    assert code == 0
    for internal in ("<bool>", "<list[str]>", "<path>", "<int>", "<text>", "[x>=", "TEXT", "INTEGER"):
        assert internal not in stdout, internal
    assert stdout.count("Example:") == 1 and "autocrop batch ./album" in stdout
    assert not re.search(r"\s\.(\s|$)", stdout), "stray ' .'"
    for code_text in ("0 all inputs done", "2 usage or fatal error", "3 some inputs failed", "130 interrupted"):
        assert code_text in " ".join(stdout.split()), code_text


# ------------------------------------------------------------------------------------------------ signals


def _photos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        picture((1600, 1200), seed=i).save(folder / f"p{i:02d}.jpg", quality=90)


def _wait_for_records(proc: subprocess.Popen[Any], manifest: Path, n: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        finished = [ln for ln in manifest.read_text().splitlines() if '"status":"started"' not in ln] \
            if manifest.exists() else []
        if len(finished) >= n:
            return
        time.sleep(0.05)


def test_cli_kill_leaves_no_partial_output_and_resumes(tmp_path: Path, model_file: Path) -> None:
    src, out = tmp_path / "album", tmp_path / "out"
    _photos(src, 10)
    args = ["batch", str(src), "--out", str(out), "--model", str(model_file), "--jobs", "2", "--top", "2"]
    proc = subprocess.Popen([AUTOCROP, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    manifest = out / MANIFEST_NAME
    _wait_for_records(proc, manifest, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = load_manifest(manifest).records if manifest.exists() else {}
    for p in out.glob("*.jpg"):  # every visible output is a complete image
        with Image.open(p) as im:
            im.load()
    for rec in done.values():
        assert all((out / o).exists() for o in rec["outputs"])
    proc2 = _subprocess(args)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    recs = load_manifest(manifest).records
    assert len(recs) == 10 and all(r["status"] == "ok" for r in recs.values())
    assert f"{len([r for r in done.values() if r['status'] == 'ok'])} already done" in proc2.stdout
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]  # temp files of the killed run removed
    assert len(list(out.glob("*.crop2.jpg"))) == 10


def test_cli_sigint_stops_cleanly(tmp_path: Path, model_file: Path) -> None:
    src, out = tmp_path / "album", tmp_path / "out"
    _photos(src, 12)
    proc = subprocess.Popen([AUTOCROP, "batch", str(src), "--out", str(out), "--model", str(model_file), "-j", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    manifest = out / MANIFEST_NAME
    _wait_for_records(proc, manifest, 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr
    recs = load_manifest(manifest).records
    assert 2 <= len(recs) < 12
    assert all(r["status"] == "ok" and all((out / o).exists() for o in r["outputs"]) for r in recs.values())
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]


def test_ray_engine_same_outputs_and_manifest(tmp_path: Path, model_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'autocrop-views[ray]')")
    src = album(tmp_path)
    out_local, out_ray = tmp_path / "local", tmp_path / "ray"
    common = ["--ratio", "16:9", "--top", "2", "--model", str(model_file), "--jobs", "2"]
    code, _, stderr = run_cli(capsys, "batch", src, "--out", out_local, *common)
    assert code == 3, stderr
    proc = _subprocess(["batch", str(src), "--out", str(out_ray), "--engine", "ray", *common])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    local, ray = records(out_local), records(out_ray)
    assert set(local) == set(ray)
    volatile = {"timings", "time", "engine", "scores", "out"}  # scores: torch threads differ (last digit)
    for rel in local:
        assert {k: v for k, v in local[rel].items() if k not in volatile} == \
            {k: v for k, v in ray[rel].items() if k not in volatile}, rel
        assert local[rel]["scores"] == pytest.approx(ray[rel]["scores"], abs=1e-4)
        assert ray[rel]["engine"] == "ray"
        for o in local[rel]["outputs"]:
            assert (out_local / o).read_bytes() == (out_ray / o).read_bytes()
