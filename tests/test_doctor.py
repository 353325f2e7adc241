"""``autocrop doctor``: report contents, model checks, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocrop import __version__
from autocrop.cli import app, main
from autocrop.commands.exit_codes import EXIT_OK, EXIT_PROBLEM

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A real (untrained) model written with its card, as ``autocrop train`` would."""
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    config = ModelConfig()
    net = ViewRankingNet(config)  # an unfolded network, as the trainer saves it
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_weights(path, net.state_dict(), config, {"name": "doctor test model", "autocrop_version": "9.9"})
    return path


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_json_report_with_a_valid_model(model_file, monkeypatch):
    import torch

    from autocrop import ops
    from autocrop.model.weights import sha256_of

    monkeypatch.delenv(ops.OPS_ENV, raising=False)
    code, report = run_json("--model", str(model_file))
    assert code == 0, report["problems"]
    assert report["ok"] is True and report["problems"] == []
    assert report["autocrop"] == __version__
    assert report["torch"] == torch.__version__
    assert report["python"].startswith(".".join(map(str, sys.version_info[:2])))
    assert report["numpy"] and report["pillow"]
    assert report["ops"]["backend"] == ops.backend()
    assert report["device"]["torch_threads"] == torch.get_num_threads()
    assert report["device"]["cuda_available"] == torch.cuda.is_available()
    model = report["model"]
    assert model["status"] == "ok" and model["path"] == str(model_file)
    assert model["sha256"] == sha256_of(model_file)
    assert model["card"]["name"] == "doctor test model"
    assert model["card"]["version"] == "9.9"
    assert model["card"]["card_sha256_matches"] is True
    assert Path(report["data"]["root"]).name == "data" or os.environ.get("AUTOCROP_DATA_DIR")


def test_table_output(model_file):
    result = runner.invoke(app, ["doctor", "--model", str(model_file)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for label in ("autocrop", "python", "torch", "numpy", "pillow", "op backend", "device", "model sha256", "data dir"):
        assert label in result.output
    assert "doctor test model" in result.output
    assert str(model_file) in result.output


def test_damaged_model_is_a_problem(model_file, tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-10] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "damaged.json").write_text(model_file.with_suffix(".json").read_text())
    code, report = run_json("--model", str(damaged))
    assert code == EXIT_PROBLEM
    assert report["model"]["status"] == "error"
    assert "sha256" in report["model"]["message"]
    assert report["problems"] == [report["model"]["message"]]


def test_missing_default_model_is_named(tmp_path, monkeypatch):
    from autocrop.model import weights

    absent = tmp_path / "default.safetensors"
    monkeypatch.setattr(weights, "PACKAGED_WEIGHTS", absent)
    code, report = run_json()
    assert code == EXIT_PROBLEM
    assert report["model"]["status"] == "missing"
    assert "default model is missing" in report["model"]["message"] and str(absent) in report["model"]["message"]
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "300"})
    assert result.exit_code == EXIT_PROBLEM
    assert "the default model is missing" in result.output


def test_ops_environment_is_reported(model_file, monkeypatch):
    from autocrop import ops

    monkeypatch.setenv(ops.OPS_ENV, "torch")
    code, report = run_json("--model", str(model_file))
    assert code == 0 and report["ops"]["backend"] == "torch" and report["ops"]["env"] == "torch"
    monkeypatch.setenv(ops.OPS_ENV, "bogus")
    code, report = run_json("--model", str(model_file))
    assert code == EXIT_PROBLEM and report["ops"]["backend"] is None
    assert any("AUTOCROP_OPS" in p for p in report["problems"])


def test_model_and_device_from_config(model_file, isolated_config):
    import torch

    (isolated_config / "config.toml").write_text(f'model = "{model_file}"\ndevice = "cuda"\n')
    code, report = run_json()
    assert report["config"]["path"] == str(isolated_config / "config.toml") and report["config"]["exists"]
    assert report["config"]["device"] == "cuda" and report["config"]["device_source"] == "file"
    assert report["model"]["status"] == "ok" and report["model"]["from_config"] is True
    assert report["model"]["path"] == str(model_file)
    cuda_problem = [p for p in report["problems"] if p.startswith("configured device 'cuda': ")]
    assert bool(cuda_problem) == (not torch.cuda.is_available())
    assert code == (EXIT_OK if torch.cuda.is_available() else EXIT_PROBLEM)


def test_broken_config_is_a_problem_not_a_crash(model_file, isolated_config, capsys):
    """doctor reads no config before it runs (the CLI only merges it for the cropping verbs): a broken file
    is reported in the table and the exit code is the table's 'problem', not a usage error."""
    (isolated_config / "config.toml").write_text("modl = 3\n")
    code, report = run_json("--model", str(model_file))
    assert code == EXIT_PROBLEM and "unknown key 'modl'" in report["config"]["message"]
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--json", "--model", str(model_file)])
    assert exit_.value.code == EXIT_PROBLEM
    assert "unknown key 'modl'" in json.loads(capsys.readouterr().out)["config"]["message"]


def test_no_problem_exit_code_is_zero_from_main(model_file, monkeypatch, capsys):
    from autocrop import ops

    monkeypatch.delenv(ops.OPS_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--model", str(model_file)])
    assert exit_.value.code == EXIT_OK, capsys.readouterr()


def test_console_script_end_to_end(model_file):
    """The real entry point in a fresh interpreter (checks that the verb is registered and runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AUTOCROP_OPS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "autocrop", "doctor", "--json", "--model", str(model_file)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"]["status"] == "ok" and report["ok"] is True
