"""``autocrop bench`` end to end: ``--json`` on stdout, ``--report FILE``, data folders from options, the
environment and the config file, one-line errors (exit 2). Runs on the synthetic ``mini_gaicd`` /
``mini_fcdb`` folders of test_bench_runner.py; the real-data runs are marked ``data``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import error_lines, make_mini_fcdb

from autocrop.commands.exit_codes import EXIT_OK, EXIT_USAGE

TRAINING_IMAGE = "900000.jpg"  # the first mini_gaicd photo, listed as a training image by card_model


@pytest.fixture(scope="module")
def card_model(tmp_path_factory) -> Path:
    """A real model file (untrained) whose card lists one mini_gaicd photo as a training image."""
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())  # a training-layout network, as `autocrop train` saves it
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    card = {"name": "untrained-test", "training_images": [{"dataset": "gaicd", "name": TRAINING_IMAGE}]}
    save_weights(path, net.state_dict(), net.config, card)
    return path


def _with_card(model: Path, folder: Path, training_images: list[dict]) -> Path:
    """A copy of ``model`` whose card lists ``training_images`` (same weights, same sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / model.name
    shutil.copyfile(model, copy)
    card = json.loads(model.with_suffix(".json").read_text())
    card["training_images"] = training_images
    copy.with_suffix(".json").write_text(json.dumps(card))
    return copy


def bench(cli, *args: object) -> tuple[int, str, str]:
    return cli(["bench", *args])


def one_error(code: int, err: str) -> str:
    """The single ``autocrop: error:`` line of a failed call (exit 2, no traceback)."""
    assert code == EXIT_USAGE, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and error_lines(err) == lines, err
    return lines[0]


def fails(cli, *args: object) -> str:
    """Run ``autocrop bench ARGS`` expecting exit 2 with one error line -> that line."""
    code, _, err = bench(cli, *args)
    return one_error(code, err)


# ---------------------------------------------------------------------------------------------
# --json, --report
# ---------------------------------------------------------------------------------------------


def test_json_prints_the_report_on_stdout_and_the_tables_on_stderr(cli, mini_gaicd, card_model):
    code, out, err = bench(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd, "--model", card_model,
                           "--threads", "1", "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)  # stdout holds the JSON document and nothing else
    assert report["dataset"] == "gaicd" and report["candidates"] == "annotated"
    assert report["images"]["measured"] == 3 and report["images"]["excluded_names"] == ["900000"]
    assert "900000" not in {p["name"] for p in report["per_image"]}
    assert set(report["results"]) == {"model", "random", "largest", "centre"}
    assert set(report["results"]["model"]) >= {"acc1_5", "acc4_10", "acc5_mean", "acc10_mean", "srcc", "pcc"}
    assert report["machine"]["torch_threads"] == 1 and report["speed"]["model_load_s"] > 0
    assert report["model"]["sha256"] and report["model"]["path"] == str(card_model)
    assert report["model"]["device"] == "cpu"
    for text in ("Acc1/5", "SRCC", "vs random", "vs centre 0.8", "ms/img median", "excluded 1 image"):
        assert text in err


def test_report_file_is_written_and_stdout_stays_empty(cli, mini_gaicd, card_model, tmp_path):
    target = tmp_path / "out" / "gaicd.json"
    target.parent.mkdir()
    target.write_text("old")  # replaced
    code, out, err = bench(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd, "--model", card_model,
                           "--limit", "1", "--include-train", "--threads", "1", "--report", target)
    assert code == EXIT_OK, err
    assert out == ""  # without --json nothing goes to stdout
    report = json.loads(target.read_text())
    assert report["images"]["included_training"] == 1 and report["per_image"][0]["training_image"] is True
    assert "not a held-out measurement" in err and f"report written to {target}" in err
    assert sorted(p.name for p in target.parent.iterdir()) == ["gaicd.json"]  # no temporary file left


def test_report_destination_is_checked_before_the_run(cli, tmp_path):
    data = tmp_path / "no-data-needed"  # the report is checked before the dataset is even looked at
    line = fails(cli, "--dataset", "gaicd", "--data-dir", data, "--report", tmp_path)
    assert f"{tmp_path}: report must be a file, not a folder" in line
    missing = tmp_path / "no" / "such" / "report.json"
    line = fails(cli, "--dataset", "gaicd", "--data-dir", data, "--report", missing)
    assert f"{missing}: folder {missing.parent} does not exist" in line and not missing.parent.exists()
    line = fails(cli, "--dataset", "gaicd", "--data-dir", data, "--report", "-")
    assert "--json" in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_report_into_a_read_only_folder(cli, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = fails(cli, "--dataset", "gaicd", "--report", folder / "r.json")
    finally:
        folder.chmod(0o700)
    assert "is not writable" in line


# ---------------------------------------------------------------------------------------------
# where data, model and device come from
# ---------------------------------------------------------------------------------------------


def _empty(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    return folder


def test_dataset_folder_precedence(cli, tmp_path, monkeypatch, isolated_config):
    """--data-dir > --gaicd-dir > AUTOCROP_GAICD_DIR > config gaicd_dir > $AUTOCROP_DATA_DIR/GAICD.

    Each folder is empty, so the layout error names the folder that was chosen (no model is loaded).
    """
    def chosen(*args: object) -> str:
        line = fails(cli, "--dataset", "gaicd", *args)
        assert "not a GAICD directory" in line
        return line.split("autocrop: error: ", 1)[1].split(": not a GAICD", 1)[0]

    root = tmp_path / "root"
    _empty(root, "GAICD")
    monkeypatch.setenv("AUTOCROP_DATA_DIR", str(root))
    assert chosen() == str(root / "GAICD")
    from_file = _empty(tmp_path, "from_file")
    (isolated_config / "config.toml").write_text(f'gaicd_dir = "{from_file}"\nfcdb_dir = "{tmp_path}/x"\n')
    assert chosen() == str(from_file)
    from_env = _empty(tmp_path, "from_env")
    monkeypatch.setenv("AUTOCROP_GAICD_DIR", str(from_env))
    assert chosen() == str(from_env)
    option = _empty(tmp_path, "option")
    assert chosen("--gaicd-dir", option) == str(option)
    given = _empty(tmp_path, "given")
    assert chosen("--gaicd-dir", option, "--data-dir", given) == str(given)


def test_model_and_device_come_from_the_config_file(cli, mini_gaicd, isolated_config, tmp_path):
    config = isolated_config / "config.toml"
    config.write_text(f'model = "{tmp_path / "nowhere.safetensors"}"\n')
    line = fails(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd)
    assert "nowhere.safetensors" in line and "not found" in line
    config.write_text('device = "cuda:7"\n')
    code, _, err = bench(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd, "--limit", "1")
    if code == EXIT_OK:
        pytest.skip("this machine has a CUDA device 7")
    assert "device 'cuda:7'" in one_error(code, err)


def test_unknown_device_is_one_line_before_any_work(cli, tmp_path):
    line = fails(cli, "--dataset", "gaicd", "--data-dir", tmp_path / "nope", "--device", "banana")
    assert "device 'banana'" in line


def test_runtime_is_chosen_and_recorded(cli, mini_gaicd, tmp_path):
    line = fails(cli, "--dataset", "gaicd", "--data-dir", tmp_path / "nope", "--runtime", "banana")
    assert "runtime 'banana'" in line
    scores = {}
    for runtime in ("torch", "onnx"):
        code, out, err = bench(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd,  # the packaged model + graph
                               "--runtime", runtime, "--threads", "1", "--json")
        assert code == EXIT_OK, err
        report = json.loads(out)
        assert report["model"]["runtime"] == runtime
        scores[runtime] = {k: report["results"]["model"][k] for k in ("acc1_5", "acc1_10", "srcc", "pcc")}
    assert scores["torch"] == pytest.approx(scores["onnx"], abs=1e-3)  # same model, either runtime


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "dataset 'imagenet': unknown (choose gaicd, fcdb, flms)"),
    (["--dataset", "gaicd", "--candidates", "anchors"], "candidates applies to fcdb and flms"),
    (["--dataset", "fcdb", "--candidates", "everything"], "candidates 'everything': unknown candidate set"),
    (["--dataset", "fcdb", "--limit", "0"], "limit must be >= 1"),
    (["--dataset", "fcdb", "--threads", "0"], "threads must be >= 1"),
    (["--dataset", "flms", "--split", "train"], "split 'train': FLMS has a single test set"),
])
def test_bad_options(cli, tmp_path, args, message):
    flms = tmp_path / "FLMS"
    flms.mkdir()
    assert message in fails(cli, *args, "--flms-dir", flms)


def test_wrong_layout_says_what_was_expected(cli, tmp_path):
    line = fails(cli, "--dataset", "gaicd", "--data-dir", tmp_path)
    assert "not a GAICD directory (expected annotations/test/*.txt and images/test/*.jpg)" in line
    line = fails(cli, "--dataset", "fcdb", "--data-dir", tmp_path)
    assert "not an FCDB directory (expected cropping_testing_set.json)" in line
    line = fails(cli, "--dataset", "flms", "--data-dir", tmp_path)
    assert "expected 500_image_dataset.mat and image/*.jpg" in line
    line = fails(cli, "--dataset", "gaicd", "--data-dir", tmp_path / "nope")
    assert "does not exist" in line


def test_model_file_that_does_not_load(cli, mini_gaicd, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model" * 10)
    assert str(bad) in fails(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd, "--model", bad)
    line = fails(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd,
                            "--model", tmp_path / "none.safetensors")
    assert "not found" in line


def test_every_image_excluded_is_said_clearly(cli, mini_gaicd, card_model, tmp_path):
    everything = [{"dataset": "gaicd", "name": p.name} for p in (mini_gaicd / "images" / "test").glob("*.jpg")]
    model = _with_card(card_model, tmp_path / "all", everything)
    line = fails(cli, "--dataset", "gaicd", "--data-dir", mini_gaicd, "--model", model)
    assert "all 4 GAICD images are listed as training images" in line and "include_train" in line


def test_flms_layout_built_from_fcdb_photos(cli, mini_fcdb, card_model, tmp_path):
    """FLMS in its public layout (.mat + image/), several ground truths per photo: the best match counts."""
    pytest.importorskip("scipy")
    import numpy as np
    from scipy.io import savemat

    from autocrop.bench.datasets import load_fcdb_boxes

    items = sorted(load_fcdb_boxes(mini_fcdb, "test")[0], key=lambda i: i.name)
    root = tmp_path / "FLMS"
    (root / "image").mkdir(parents=True)
    table = np.empty((len(items) + 1, 1), dtype=[("name", "O"), ("crops", "O")])
    for i, item in enumerate(items):
        shutil.copyfile(item.path, root / "image" / item.name)
        x1, y1, x2, y2 = item.gts[0]
        crops = [[y1, x1, y2, x2], [0, 0, 5, 5], [-1, -1, -1, -1]]  # a far-off second truth, an invalid row
        table[i, 0] = (np.array([item.name]), np.array(crops, dtype=np.float64))
    table[len(items), 0] = (np.array(["gone.jpg"]), np.array([[0, 0, 10, 10]], dtype=np.float64))
    savemat(str(root / "500_image_dataset.mat"), {"img_gt": table})

    code, out, err = bench(cli, "--dataset", "flms", "--flms-dir", root, "--model", card_model, "--threads", "1",
                           "--json")
    assert code == EXIT_OK, err
    flms = json.loads(out)
    assert flms["images"]["measured"] == 3 and flms["images"]["missing"] == 1
    code, out, err = bench(cli, "--dataset", "fcdb", "--fcdb-dir", mini_fcdb, "--model", card_model, "--threads", "1",
                           "--json")
    assert code == EXIT_OK, err
    fcdb = json.loads(out)
    assert [p["name"] for p in fcdb["per_image"]] == [i.name for i in items]
    # the extra 5x5 truth never matches better, so the FLMS figures equal the FCDB ones on the same photos
    for method in ("model", "model_unrefined", "centre", "largest"):
        assert flms["results"][method]["iou"] == pytest.approx(fcdb["results"][method]["iou"], abs=1e-6)


# ---------------------------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------------------------


def test_help_has_an_example_and_no_typer_internals(cli):
    code, out, _ = bench(cli, "--help")
    assert code == EXIT_OK
    assert "Example: autocrop bench --dataset" in out and "--report" in out and "--gaicd-dir" in out
    for internal in ("<bool>", "<path>", "<str>", "<int>", "BOOLEAN", "PATH ", " .", "INTEGER", "TEXT"):
        assert internal not in out, internal


# ---------------------------------------------------------------------------------------------
# real data and the installed console script
# ---------------------------------------------------------------------------------------------


@pytest.mark.data
def test_gaicd_bench_on_real_photos(cli, gaicd_images, card_model, tmp_path):
    report_path = tmp_path / "gaicd.json"
    code, out, err = bench(cli, "--dataset", "gaicd", "--data-dir", gaicd_images[0].parents[2], "--model", card_model,
                           "--limit", "3", "--threads", "1", "--report", report_path, "--json")
    assert code == EXIT_OK, err
    assert json.loads(out) == json.loads(report_path.read_text())
    assert json.loads(out)["images"]["measured"] == 3


@pytest.mark.data
@pytest.mark.parametrize("candidates", ["grid", "anchors"])
def test_fcdb_bench_with_both_candidate_sets(cli, fcdb_images, card_model, candidates):
    fcdb = fcdb_images[0].parents[1]
    code, out, err = bench(cli, "--dataset", "fcdb", "--fcdb-dir", fcdb, "--model", card_model, "--limit", "2",
                           "--candidates", candidates, "--threads", "1", "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert report["candidates"] == candidates and report["images"]["measured"] == 2
    assert report["images"]["missing"] > 0 and "whose file is missing" in err
    assert set(report["margins"]["centre"]) == {"iou", "disp"}


def test_console_script_runs_as_a_separate_process(tmp_path, card_model):
    exe = Path(sys.executable).with_name("autocrop")
    if not exe.is_file():
        pytest.skip(f"console script not installed beside {sys.executable}")
    fcdb = make_mini_fcdb(tmp_path / "FCDB", count=1)
    env = dict(os.environ, OMP_NUM_THREADS="1", AUTOCROP_FCDB_DIR=str(fcdb))
    proc = subprocess.run([str(exe), "bench", "--dataset", "fcdb", "--model", str(card_model), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert json.loads(proc.stdout)["images"]["measured"] == 1
