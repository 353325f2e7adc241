"""End-to-end tests of ``autocrop batch`` with the real engine on real photos (GAICD images from ../shared/data).

The model is an untrained model of the packaged architecture written to a temp file (crops are meaningless, the
pipeline is the real one). Skipped when the shared data is absent; the Ray test is skipped when ray is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
AUTOCROP = str(Path(sys.executable).with_name("autocrop"))


def _data_root() -> Path:
    env = os.environ.get("AUTOCROP_DATA_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


GAICD = _data_root() / "GAICD" / "images" / "test"
PHOTOS = sorted(GAICD.glob("*.jpg"))
needs_data = pytest.mark.skipif(not PHOTOS, reason=f"real photos not found under {GAICD} (set AUTOCROP_DATA_DIR)")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())  # a training-layout network, as `autocrop train` saves it
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_weights(path, net.state_dict(), net.config, {"name": "untrained (tests)", "training_images": []})
    return path


def _album(root: Path, n: int = 4) -> Path:
    src = root / "album"
    (src / "2024" / "été").mkdir(parents=True)
    for i, photo in enumerate(PHOTOS[:n]):
        target = src / ("2024/été" if i % 2 else "") / f"photo_{i}.jpg"
        shutil.copy(photo, target)
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("not an image")
    data = PHOTOS[0].read_bytes()
    (src / "2024" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("ignored")
    return src


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOCROP_THREADS": "1"}
    return subprocess.run([AUTOCROP, *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def _records(manifest: Path) -> dict[str, dict]:
    out = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out[rec["path"]] = rec
    return out


@needs_data
def test_cli_batch_real_photos(tmp_path: Path, model_file: Path) -> None:
    src = _album(tmp_path)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "crops"
    proc = _run(["batch", str(src), "--out", str(out), "--ratio", "16:9", "--top", "2", "--model", str(model_file)])
    assert proc.returncode == 3, proc.stderr  # some inputs failed
    assert "3 failed" in proc.stdout and "zero.jpg" in proc.stdout and "truncated.jpg" in proc.stdout
    assert "Traceback" not in proc.stderr
    recs = _records(out / "autocrop-manifest.jsonl")
    assert {k for k, r in recs.items() if r["status"] == "ok"} == {"photo_0.jpg", "2024/été/photo_1.jpg", "photo_2.jpg", "2024/été/photo_3.jpg"}
    for rel, rec in recs.items():
        if rec["status"] != "ok":
            assert rec["error"] and rec["outputs"] == []
            continue
        assert len(rec["outputs"]) == 2 and len(rec["boxes"]) == 2 and len(rec["scores"]) == 2
        for out_rel, box in zip(rec["outputs"], rec["boxes"]):
            assert Path(out_rel).parent == Path(rel).parent  # mirrored tree
            with Image.open(out / out_rel) as im:
                im.load()
                assert im.size == (box[2] - box[0], box[3] - box[1])
                assert abs(im.width / im.height - 16 / 9) < 0.02
    assert before == {p: p.read_bytes() for p in before}  # originals untouched
    assert not list(src.rglob("*.crop*"))  # nothing written into the source
    # re-run: nothing redone for the good ones, the bad ones retried and reported again
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    proc = _run(["batch", str(src), "--out", str(out), "--ratio", "16:9", "--top", "2", "--model", str(model_file)])
    assert proc.returncode == 3 and "4 already done" in proc.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}


@needs_data
def test_cli_usage_errors_are_one_line(tmp_path: Path, model_file: Path) -> None:
    src = _album(tmp_path, 1)
    for args, text in [
        (["batch", str(tmp_path / "missing")], "does not exist"),
        (["batch", str(src), "--out", str(src / "x")], "inside the source folder"),
        (["batch", str(src), "--out", str(tmp_path / "o"), "--ratio", "16:0"], "--ratio"),
        (["batch", str(src), "--out", str(tmp_path / "o"), "--name", "crop{rank}"], "{stem}"),
        (["batch", str(src), "--out", str(tmp_path / "notes"), "--engine", "spark"], "--engine"),
    ]:
        proc = _run(args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@needs_data
def test_cli_kill_leaves_no_partial_output_and_resumes(tmp_path: Path, model_file: Path) -> None:
    src = tmp_path / "album"
    src.mkdir()
    for i, photo in enumerate(PHOTOS[:16]):
        shutil.copy(photo, src / f"p{i:02d}.jpg")
    out = tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--model", str(model_file), "--jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOCROP_THREADS": "1"}
    proc = subprocess.Popen([AUTOCROP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    manifest = out / "autocrop-manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = _records(manifest) if manifest.exists() else {}
    # every visible output is a complete image; each recorded input's outputs exist
    for p in out.glob("*.jpg"):
        with Image.open(p) as im:
            im.load()
    for rec in done.values():
        assert all((out / o).exists() for o in rec["outputs"])
    proc = _run(args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = _records(manifest)
    assert len(recs) == 16 and all(r["status"] == "ok" for r in recs.values())
    assert f"{len([r for r in done.values() if r['status'] == 'ok'])} already done" in proc.stdout
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # temp files of the killed run removed
    assert len(list(out.glob("*.crop1.jpg"))) == 16


@needs_data
def test_cli_sigint_stops_cleanly(tmp_path: Path, model_file: Path) -> None:
    src = tmp_path / "album"
    src.mkdir()
    for i, photo in enumerate(PHOTOS[:30]):
        shutil.copy(photo, src / f"p{i:02d}.jpg")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOCROP_THREADS": "1"}
    proc = subprocess.Popen([AUTOCROP, "batch", str(src), "--out", str(out), "--model", str(model_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    manifest = out / "autocrop-manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr
    recs = _records(manifest)
    assert all(r["status"] == "ok" and all((out / o).exists() for o in r["outputs"]) for r in recs.values())
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


@needs_data
def test_ray_engine_same_outputs_and_manifest(tmp_path: Path, model_file: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'autocrop-views[ray]')")
    src = _album(tmp_path, 3)
    out_local, out_ray = tmp_path / "local", tmp_path / "ray"
    common = ["--ratio", "16:9", "--top", "2", "--model", str(model_file), "--jobs", "2"]
    proc = _run(["batch", str(src), "--out", str(out_local), *common])
    assert proc.returncode == 3, proc.stderr
    env_extra = {"RAY_ADDRESS": ""}
    proc = subprocess.run([AUTOCROP, "batch", str(src), "--out", str(out_ray), "--engine", "ray", *common],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "AUTOCROP_THREADS": "1", **env_extra})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    local, ray = _records(out_local / "autocrop-manifest.jsonl"), _records(out_ray / "autocrop-manifest.jsonl")
    assert set(local) == set(ray)
    volatile = {"timings", "time", "engine"}
    for rel in local:
        a = {k: v for k, v in local[rel].items() if k not in volatile}
        b = {k: v for k, v in ray[rel].items() if k not in volatile}
        assert a == b, rel
        assert ray[rel]["engine"] == "ray"
        for o in local[rel]["outputs"]:
            assert (out_local / o).read_bytes() == (out_ray / o).read_bytes()
