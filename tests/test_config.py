"""User config (autocrop.config) and ``autocrop config path|show|set|unset``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autocrop import config
from autocrop.cli import main
from autocrop.errors import InputError


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


def test_defaults_without_file() -> None:
    settings = config.load_config()
    assert settings["top"] == 1 and settings["quality"] == 95 and settings["ratio"] == ""
    assert set(settings.sources.values()) == {"default"}
    assert {"ratio", "top", "quality", "name", "format", "device", "model", "gaicd_dir", "fcdb_dir",
            "flms_dir"} <= set(config.KEYS)


def test_precedence_cli_env_file_default(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_config / "config.toml").write_text('top = 4\nquality = 80\nratio = "1:1"\n')
    monkeypatch.setenv("AUTOCROP_QUALITY", "70")
    settings = config.load_config()
    assert settings["top"] == 4 and settings.sources["top"] == "file"
    assert settings["quality"] == 70 and settings.sources["quality"] == "env"
    assert settings["name"] == "{stem}.crop{rank}.{ext}" and settings.sources["name"] == "default"
    assert settings.get("top", 2) == 2  # a command-line value wins
    assert settings.get("top", None) == 4
    assert config.get_value("ratio") == "1:1"


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ('top = 3\nratio = "16:9\nquality = 90\n', 2, "invalid TOML"),
        ("top = 3\n\nquality == 90\n", 3, "invalid TOML"),
        ('top = 3\ncolour = "red"\n', 2, "unknown key 'colour'"),
        ('ratio = "16:9"\ntop = "many"\n', 2, "must be an integer"),
        ("quality = 400\n", 1, "must be 1..100"),
        ('ratio = "16:0"\n', 1, "positive"),
        ('format = "gif"\n', 1, "must be one of"),
    ],
)
def test_broken_file_names_file_and_line(isolated_config: Path, text: str, line: int, fragment: str) -> None:
    path = isolated_config / "config.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        config.load_config()
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}"), message
    assert fragment in message and "\n" not in message


def test_bad_env_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCROP_TOP", "zero")
    with pytest.raises(InputError, match=r"\$AUTOCROP_TOP='zero': must be an integer"):
        config.load_config()


def test_cli_set_show_unset_path(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["config", "path"], capsys)
    assert code == 0 and out.strip() == str(isolated_config / "config.toml")
    code, _, err = run_cli(["config", "set", "top", "3"], capsys)
    assert code == 0 and "top set in" in err
    code, _, _ = run_cli(["config", "set", "ratio", "16:9,1:1"], capsys)
    assert code == 0
    code, _, _ = run_cli(["config", "set", "model", "~/m.safetensors"], capsys)
    assert code == 0
    text = (isolated_config / "config.toml").read_text()
    assert "top = 3" in text and 'ratio = "16:9,1:1"' in text
    code, out, _ = run_cli(["config", "show", "--json"], capsys)
    shown = json.loads(out)["settings"]
    assert shown["top"] == {"value": 3, "source": "file"}
    assert shown["model"]["value"] == str(Path("~/m.safetensors").expanduser())
    assert shown["quality"] == {"value": 95, "source": "default"}
    code, out, _ = run_cli(["config", "show"], capsys)
    assert code == 0 and "top" in out and "file" in out
    code, _, _ = run_cli(["config", "unset", "top"], capsys)
    assert code == 0 and config.load_config().sources["top"] == "default"


def test_cli_set_rejects_bad_values_without_touching_file(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["config", "set", "quality", "90"], capsys)
    before = (isolated_config / "config.toml").read_bytes()
    for args, fragment in ((["top", "0"], "must be 1..1000"), (["ratio", "abc"], "not a ratio"),
                           (["colour", "red"], "unknown"), (["device", "gpu9"], "must be cpu")):
        code, out, err = run_cli(["config", "set", *args], capsys)
        assert code == 2, args
        assert err.startswith("autocrop: error:") and fragment in err and err.count("\n") == 1, err
    assert (isolated_config / "config.toml").read_bytes() == before


def test_cli_reports_broken_file(isolated_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = isolated_config / "config.toml"
    path.write_text("top = [\n")
    code, _, err = run_cli(["config", "show"], capsys)
    assert code == 2 and err.startswith(f"autocrop: error: {path}: line ") and err.count("\n") == 1
