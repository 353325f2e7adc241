"""User config (autocrop.commands.config_file) and ``autocrop config path|show|set|unset``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autocrop import settings
from autocrop.cli import main
from autocrop.commands import config_file as config
from autocrop.errors import UsageError

PACKAGE = Path(__file__).resolve().parent.parent / "autocrop"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_path_uses_env_dir(isolated_config: Path) -> None:
    assert config.config_path() == isolated_config / "config.toml"


def test_defaults_without_file_come_from_settings() -> None:
    loaded = config.load_config()
    assert loaded["top"] == settings.DEFAULT_TOP and loaded["quality"] == settings.DEFAULT_QUALITY
    assert loaded["name"] == settings.DEFAULT_NAME and loaded["device"] == settings.DEFAULT_DEVICE
    assert loaded["ratio"] == "" and loaded["format"] == "" and loaded["model"] == ""
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.configured() == {}
    assert list(config.KEYS) == ["ratio", "top", "quality", "name", "format", "device", "model", "runtime", "faces",
                                 "gaicd_dir", "fcdb_dir", "flms_dir"]


def test_precedence_env_over_file_over_default(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_config / "config.toml").write_text('top = 4\nquality = 80\nratio = "1:1"\nformat = "png"\n')
    monkeypatch.setenv("AUTOCROP_QUALITY", "70")
    monkeypatch.setenv("AUTOCROP_FORMAT", "")  # "" = back to the built-in default (the input's format)
    loaded = config.load_config()
    assert loaded["top"] == 4 and loaded.sources["top"] == "file"
    assert loaded["quality"] == 70 and loaded.sources["quality"] == "env"
    assert loaded["format"] == "" and loaded.sources["format"] == "env"
    assert loaded["name"] == settings.DEFAULT_NAME and loaded.sources["name"] == "default"
    assert loaded.configured() == {"top": 4, "quality": 70, "ratio": "1:1"}


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ('top = 3\nratio = "16:9\nquality = 90\n', 2, "invalid TOML"),
        ("top = 3\n\nquality == 90\n", 3, "invalid TOML"),
        ('top = 3\ncolour = "red"\n', 2, "unknown key 'colour'"),
        ('ratio = "16:9"\ntop = "many"\n', 2, "top 'many': must be a whole number"),
        ("quality = 400\n", 1, "quality 400: must be 1..100"),
        ('ratio = "16:0"\n', 1, "positive"),
        ('format = "gif"\n', 1, "unknown output format"),
        ('name = "{stem}/{rank}"\n', 1, "must be a file name"),
        ("model = 3\n", 1, "must be text"),
        ('device = "gpu"\n', 1, "device 'gpu': use auto, cpu"),
    ],
)
def test_broken_file_names_file_and_line(isolated_config: Path, text: str, line: int, fragment: str) -> None:
    path = isolated_config / "config.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        config.load_config()
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}"), message
    assert fragment in message and "\n" not in message


def test_bad_env_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCROP_TOP", "zero")
    with pytest.raises(UsageError, match=r"^\$AUTOCROP_TOP: top 'zero': must be a whole number$"):
        config.load_config()
    monkeypatch.setenv("AUTOCROP_TOP", "0")
    with pytest.raises(UsageError, match=r"^\$AUTOCROP_TOP: top 0: must be 1\.\.1000$"):
        config.load_config()


def test_values_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCROP_TOP", " 3 ")
    monkeypatch.setenv("AUTOCROP_FORMAT", ".WebP")
    monkeypatch.setenv("AUTOCROP_DEVICE", "CPU")
    monkeypatch.setenv("AUTOCROP_MODEL", "~/m.safetensors")
    monkeypatch.setenv("AUTOCROP_NAME", "")
    loaded = config.load_config()
    assert loaded["top"] == 3 and loaded["format"] == "webp" and loaded["device"] == "cpu"
    assert loaded["model"] == str(Path("~/m.safetensors").expanduser())
    assert loaded["name"] == settings.DEFAULT_NAME


def test_cli_set_show_unset_path(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["config", "path"], capsys)
    assert code == 0 and out.strip() == str(isolated_config / "config.toml")
    code, out, err = run_cli(["config", "set", "top", "3"], capsys)
    assert code == 0 and out == "" and "top set in" in err
    code, _, _ = run_cli(["config", "set", "ratio", "16:9,1:1"], capsys)
    assert code == 0
    code, _, _ = run_cli(["config", "set", "model", "~/m.safetensors"], capsys)
    assert code == 0
    text = (isolated_config / "config.toml").read_text()
    assert "top = 3" in text and 'ratio = "16:9,1:1"' in text
    code, out, err = run_cli(["config", "show", "--json"], capsys)
    assert code == 0 and err == ""
    shown = json.loads(out)["settings"]
    assert shown["top"] == {"value": 3, "source": "file"}
    assert shown["model"]["value"] == str(Path("~/m.safetensors").expanduser())
    assert shown["quality"] == {"value": settings.DEFAULT_QUALITY, "source": "default"}
    code, out, _ = run_cli(["config", "show"], capsys)
    assert code == 0 and "top" in out and "file" in out
    code, out, err = run_cli(["config", "unset", "top"], capsys)
    assert code == 0 and out == "" and "top removed from" in err
    assert config.load_config().sources["top"] == "default"


def test_cli_set_rejects_bad_values_without_touching_file(isolated_config: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["config", "set", "quality", "90"], capsys)
    before = (isolated_config / "config.toml").read_bytes()
    for args, fragment in ((["top", "0"], "top 0: must be 1..1000"), (["ratio", "abc"], "not a ratio"),
                           (["colour", "red"], "config key 'colour' is unknown"),
                           (["device", "gpu9"], "device 'gpu9': use auto, cpu"),
                           (["device", "banana"], "device 'banana'")):
        code, out, err = run_cli(["config", "set", *args], capsys)
        assert code == 2, args
        assert err.startswith("autocrop: error:") and fragment in err and err.count("\n") == 1, err
        assert out == ""
    assert (isolated_config / "config.toml").read_bytes() == before


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_cli_set_unavailable_device(isolated_config: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    import torch

    if device == "mps":
        available = torch.backends.mps.is_available()
    else:
        available = torch.cuda.is_available() and torch.cuda.device_count() > int(device.partition(":")[2] or 0)
    code, _, err = run_cli(["config", "set", "device", device], capsys)
    if available:
        assert code == 0 and config.load_config()["device"] == device
    else:
        assert code == 2 and not (isolated_config / "config.toml").exists()
        assert re.fullmatch(rf"autocrop: error: device '{device}': [^\n]*(not available|device\(s\))[^\n]*\n", err), err


def test_cli_set_device_cpu_and_auto(capsys: pytest.CaptureFixture[str]) -> None:
    for device in ("cpu", "auto"):
        code, _, _ = run_cli(["config", "set", "device", device], capsys)
        assert code == 0 and config.load_config()["device"] == device


def test_cli_reports_broken_file(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = isolated_config / "config.toml"
    path.write_text("top = [\n")
    code, _, err = run_cli(["config", "show"], capsys)
    assert code == 2 and err.startswith(f"autocrop: error: {path}: line ") and err.count("\n") == 1


def test_config_file_is_read_by_the_cli_only() -> None:
    """Nothing below commands/ (and no library module) reads the config file; the old module is gone."""
    assert not (PACKAGE / "config.py").exists()
    allowed = {PACKAGE / "cli.py", *(PACKAGE / "commands").glob("*.py")}
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path not in allowed and re.search(r"config_file|autocrop\.config\b|autocrop import config\b",
                                                      path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_cli_set_empty_text_means_built_in_default(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["config", "set", "name", "{stem}-{rank}.{ext}"], capsys)
    run_cli(["config", "set", "ratio", "4:5"], capsys)
    code, _, err = run_cli(["config", "set", "name", ""], capsys)
    assert code == 0 and "name back to its built-in default" in err
    loaded = config.load_config()
    assert loaded["name"] == settings.DEFAULT_NAME and loaded.sources["name"] == "default"
    assert loaded["ratio"] == "4:5"
    code, _, err = run_cli(["config", "set", "top", ""], capsys)
    assert code == 2 and "top '': must be a whole number" in err
