"""``autocrop bench`` end to end: real GAICD / FCDB photos, the JSON report, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autocrop.cli import main

DATA = Path(os.environ.get("AUTOCROP_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
GAICD = DATA / "GAICD"
FCDB = DATA / "FCDB"
needs_gaicd = pytest.mark.skipif(not (GAICD / "annotations" / "test").is_dir(), reason=f"GAICD not found under {DATA}")
needs_fcdb = pytest.mark.skipif(not (FCDB / "cropping_testing_set.json").is_file(), reason=f"FCDB not found under {DATA}")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A real model file (random head) whose card lists one GAICD image as a training image."""
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())  # a training-layout network, as `autocrop train` saves it
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    card = {"name": "untrained-test", "training_images": [{"dataset": "gaicd", "name": "212000.jpg"}]}
    save_weights(path, net.state_dict(), net.config, card)
    return path


def _with_card(model_file: Path, folder: Path, training_images: list[dict]) -> Path:
    """A copy of ``model_file`` whose card lists ``training_images`` (same weights, same sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / model_file.name
    shutil.copyfile(model_file, copy)
    card = json.loads(model_file.with_suffix(".json").read_text())
    card["training_images"] = training_images
    copy.with_suffix(".json").write_text(json.dumps(card))
    return copy


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    out = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), out.out, out.err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("autocrop: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------------


@needs_gaicd
def test_gaicd_bench_writes_report_and_excludes_training_images(model_file, tmp_path, capsys):
    report_path = tmp_path / "gaicd.json"
    code, out, err = run_cli(
        ["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(model_file), "--limit", "3",
         "--threads", "1", "--json", str(report_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "gaicd" and report["candidates"] == "annotated"
    assert report["images"]["measured"] == 3
    assert report["images"]["excluded_names"] == ["212000"]
    assert "212000" not in {p["name"] for p in report["per_image"]}
    assert set(report["results"]) == {"model", "random", "largest", "centre"}
    assert set(report["results"]["model"]) >= {"acc1_5", "acc4_10", "acc5_mean", "acc10_mean", "srcc", "pcc"}
    assert report["machine"]["torch_threads"] == 1 and report["speed"]["model_load_s"] > 0
    assert report["model"]["sha256"] and report["model"]["path"] == str(model_file)
    for text in ("Acc1/5", "SRCC", "vs random", "vs centre 0.8", "ms/img median", "excluded 1 image"):
        assert text in err
    assert out == ""  # tables and progress go to stderr; stdout stays clean


@needs_gaicd
def test_include_train_flags_training_images(model_file, capsys):
    code, out, err = run_cli(
        ["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(model_file), "--limit", "1",
         "--include-train", "--threads", "1", "--json", "-"], capsys)
    assert code == 0, err
    report = json.loads(out)  # --json - : the report on stdout
    assert report["images"]["included_training"] == 1 and report["per_image"][0]["training_image"] is True
    assert "not a held-out measurement" in err


@needs_fcdb
@pytest.mark.parametrize("candidates", ["grid", "anchors"])
def test_fcdb_bench_with_both_candidate_sets(model_file, tmp_path, candidates, capsys):
    report_path = tmp_path / "fcdb.json"
    code, _, err = run_cli(
        ["--dataset", "fcdb", "--data-dir", str(FCDB), "--model", str(model_file), "--limit", "2",
         "--candidates", candidates, "--threads", "1", "--json", str(report_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["candidates"] == candidates and report["images"]["measured"] == 2
    assert report["images"]["missing"] > 0 and "whose file is missing" in err
    assert {"iou", "disp"} <= set(report["results"]["model"])
    assert set(report["margins"]["centre"]) == {"iou", "disp"}


@needs_gaicd
def test_console_script_runs_as_a_separate_process(model_file, tmp_path):
    exe = Path(sys.executable).with_name("autocrop")
    if not exe.is_file():
        pytest.skip(f"console script not installed beside {sys.executable}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(exe), "bench", "--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(model_file), "--limit", "1",
         "--json", str(tmp_path / "r.json")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["images"]["measured"] == 1


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_unknown_dataset(capsys):
    code, _, err = run_cli(["--dataset", "imagenet"], capsys)
    assert code != 0
    assert "unknown dataset 'imagenet' (choose gaicd, fcdb, flms)" in _one_line_error(err)


def test_wrong_layout_says_what_was_expected(tmp_path, capsys):
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(tmp_path)], capsys)
    assert code != 0
    assert "not a GAICD directory (expected annotations/test/*.txt and images/test/*.jpg)" in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "fcdb", "--data-dir", str(tmp_path)], capsys)
    assert code != 0 and "not an FCDB directory (expected cropping_testing_set.json)" in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "flms", "--data-dir", str(tmp_path)], capsys)
    assert code != 0 and "expected 500_image_dataset.mat and image/*.jpg" in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(tmp_path / "nope")], capsys)
    assert code != 0 and "does not exist" in _one_line_error(err)


@needs_gaicd
def test_annotations_pointing_at_missing_images_are_skipped_with_a_count(model_file, tmp_path, capsys):
    root = tmp_path / "GAICD"
    (root / "annotations" / "test").mkdir(parents=True)
    (root / "images" / "test").mkdir(parents=True)
    names = sorted(p.stem for p in (GAICD / "annotations" / "test").glob("*.txt"))[1:4]
    for name in names:
        shutil.copyfile(GAICD / "annotations" / "test" / f"{name}.txt", root / "annotations" / "test" / f"{name}.txt")
    for name in names[:2]:
        os.symlink(GAICD / "images" / "test" / f"{name}.jpg", root / "images" / "test" / f"{name}.jpg")
    code, out, err = run_cli(["--dataset", "gaicd", "--data-dir", str(root), "--model", str(model_file),
                              "--threads", "1", "--json", "-"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["images"]["missing"] == 1 and report["images"]["measured"] == 2
    assert "skipped 1 annotated image(s) whose file is missing" in err


@needs_gaicd
def test_model_file_that_does_not_load(tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model" * 10)
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(bad)], capsys)
    assert code != 0
    assert str(bad) in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(tmp_path / "none.safetensors")], capsys)
    assert code != 0 and "not found" in _one_line_error(err)


@needs_gaicd
def test_every_image_excluded_is_said_clearly(model_file, tmp_path, capsys):
    everything = [{"dataset": "gaicd", "name": p.name} for p in (GAICD / "images" / "test").glob("*.jpg")]
    model = _with_card(model_file, tmp_path / "all", everything)
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(model)], capsys)
    assert code != 0
    line = _one_line_error(err)
    assert "all 100 GAICD images are listed as training images" in line and "--include-train" in line


def test_bad_options(tmp_path, capsys):
    code, _, err = run_cli(["--dataset", "gaicd", "--candidates", "anchors"], capsys)
    assert code != 0 and "--candidates applies to fcdb and flms" in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "fcdb", "--candidates", "everything"], capsys)
    assert code != 0 and "unknown candidate set 'everything'" in _one_line_error(err)
    code, _, err = run_cli(["--dataset", "fcdb", "--limit", "0"], capsys)
    assert code != 0 and "--limit must be >= 1" in _one_line_error(err)


@needs_gaicd
def test_json_into_a_missing_folder_fails_before_the_run(model_file, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "report.json"
    code, _, err = run_cli(["--dataset", "gaicd", "--data-dir", str(GAICD), "--model", str(model_file), "--limit", "1",
                            "--json", str(target)], capsys)
    assert code != 0 and "does not exist" in _one_line_error(err)
    assert not target.exists()


@needs_fcdb
def test_flms_layout_built_from_fcdb_photos(model_file, tmp_path, capsys):
    """FLMS in its public layout (.mat + image/), several ground truths per photo: best match counts."""
    pytest.importorskip("scipy")
    import numpy as np
    from scipy.io import savemat

    from autocrop.bench.datasets import load_fcdb_boxes

    items = sorted(load_fcdb_boxes(FCDB, "test")[0], key=lambda i: i.name)[:3]
    root = tmp_path / "FLMS"
    (root / "image").mkdir(parents=True)
    table = np.empty((len(items) + 1, 1), dtype=[("name", "O"), ("crops", "O")])
    for i, item in enumerate(items):
        os.symlink(item.path, root / "image" / item.name)
        x1, y1, x2, y2 = item.gts[0]
        crops = [[y1, x1, y2, x2], [0, 0, 5, 5], [-1, -1, -1, -1]]  # a far-off second truth, an invalid row
        table[i, 0] = (np.array([item.name]), np.array(crops, dtype=np.float64))
    table[len(items), 0] = (np.array(["gone.jpg"]), np.array([[0, 0, 10, 10]], dtype=np.float64))
    savemat(str(root / "500_image_dataset.mat"), {"img_gt": table})

    code, out, err = run_cli(["--dataset", "flms", "--data-dir", str(root), "--model", str(model_file),
                              "--threads", "1", "--json", "-"], capsys)
    assert code == 0, err
    flms = json.loads(out)
    assert flms["images"]["measured"] == 3 and flms["images"]["missing"] == 1
    code, out, err = run_cli(["--dataset", "fcdb", "--data-dir", str(FCDB), "--model", str(model_file), "--limit", "3",
                              "--threads", "1", "--json", "-"], capsys)
    fcdb = json.loads(out)
    assert [p["name"] for p in fcdb["per_image"]] == [i.name for i in items]
    # the extra 5x5 truth never matches better, so FLMS figures equal the FCDB ones on the same photos
    for method in ("model", "centre", "largest"):
        assert flms["results"][method]["iou"] == pytest.approx(fcdb["results"][method]["iou"], abs=1e-6)


@needs_gaicd
def test_corrupt_photo_is_skipped_and_counted(model_file, tmp_path, capsys):
    root = tmp_path / "GAICD"
    (root / "annotations" / "test").mkdir(parents=True)
    (root / "images" / "test").mkdir(parents=True)
    names = sorted(p.stem for p in (GAICD / "annotations" / "test").glob("*.txt"))[1:3]
    for name in names:
        shutil.copyfile(GAICD / "annotations" / "test" / f"{name}.txt", root / "annotations" / "test" / f"{name}.txt")
    os.symlink(GAICD / "images" / "test" / f"{names[0]}.jpg", root / "images" / "test" / f"{names[0]}.jpg")
    (root / "images" / "test" / f"{names[1]}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = run_cli(["--dataset", "gaicd", "--data-dir", str(root), "--model", str(model_file),
                              "--threads", "1", "--json", "-"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["images"]["unreadable"] == 1 and report["images"]["unreadable_names"] == [names[1]]
    assert report["images"]["measured"] == 1 and "could not be decoded" in err
