"""The shell around every verb (``autocrop.cli``): version, help, the IMAGE shorthand, did-you-mean, the
config file as click's default_map, and the exit-code table."""

from __future__ import annotations

import os
import re
import signal
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from autocrop import cli
from autocrop.commands.exit_codes import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
)
from autocrop.errors import ModelError, UsageError

VERBS = ("crop", "batch", "train", "bench", "doctor", "config")
TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|text|list\[[^\]]*\])>")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


# --- version, help ------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--version"], capsys)
    assert code == EXIT_OK and err == ""
    assert out == f"autocrop {metadata.version('autocrop-views')}\n"
    assert cli.package_version() == metadata.version("autocrop-views")


def test_exit_code_table() -> None:
    assert (EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)
    assert list(EXIT_CODES) == [0, 1, 2, 3, 130]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_short_and_long_everywhere(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    verbs = list(cli.build_command().commands)
    assert {"doctor", "config"} <= set(verbs)
    for words in ([], *([verb] for verb in verbs), ["config", "set"], ["config", "show"]):
        code, out, _ = run([*words, flag], capsys)
        assert code == EXIT_OK, words
        assert f"Usage: autocrop {' '.join(words)}".rstrip() in out, words
        assert TYPE_LABEL.search(out) is None, (words, TYPE_LABEL.search(out))


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
@pytest.mark.parametrize("words", [[], ["config"], ["config", "set"], ["config", "show"], ["doctor"]])
def test_help_has_no_typer_internals(words: list[str], term: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", term)
    code, out, _ = run([*words, "--help"], capsys)
    assert code == EXIT_OK
    assert TYPE_LABEL.search(out) is None
    assert " ." not in out.replace(" ...", "")
    assert "\\[" not in out and "{key}" not in out


def test_top_level_help_states_shorthand_examples_and_exit_codes(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = run(["--help"], capsys)
    assert code == EXIT_OK
    text = " ".join(out.split())
    assert "autocrop IMAGE ... is short for autocrop crop IMAGE ..." in text
    for verb in VERBS:
        assert re.search(rf"autocrop {verb}\b" if verb != "crop" else r"autocrop photo\.jpg", text), verb
    for code_, meaning in EXIT_CODES.items():
        assert f"{code_} {meaning}" in text
    assert "--install-completion" in text and "--show-completion" in text and "--version" in text


def test_escaped_brackets_in_help_texts() -> None:
    assert cli._escape_markup("Crops [default: 1].") == "Crops \\[default: 1]."
    assert cli._escape_markup("already \\[escaped]") == "already \\[escaped]"
    assert cli._escape_markup(None) is None


# --- shorthand and did-you-mean -----------------------------------------------------------------


def test_shorthand_routes_files_and_stdin_to_crop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")
    route = cli._with_crop_shorthand
    assert route([str(photo), "-k", "2"], VERBS) == ["crop", str(photo), "-k", "2"]
    assert route(["-", "-r", "1:1"], VERBS) == ["crop", "-", "-r", "1:1"]
    assert route(["missing.jpg"], VERBS) == ["crop", "missing.jpg"]  # crop names the missing photo itself
    assert route(["some/folder/missing"], VERBS) == ["crop", "some/folder/missing"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doctr").write_bytes(b"")  # an existing file keeps the shorthand, whatever its name
    assert route(["doctr"], VERBS) == ["crop", "doctr"]
    assert route(["doctor", "--json"], VERBS) == ["doctor", "--json"]  # a verb wins over a file
    assert route(["--version"], VERBS) == ["--version"] and route(["-h"], VERBS) == ["-h"] and route([], VERBS) == []


@pytest.mark.parametrize("word,verb", [("doctr", "doctor"), ("bentch", "bench"), ("confg", "config"),
                                       ("bach", "batch")])
def test_mistyped_verb_did_you_mean(word: str, verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=rf"^no such command or file '{word}' \(did you mean '{verb}'\?\)$"):
        cli._with_crop_shorthand([word], VERBS)
    code, out, err = run([word, "--json"], capsys)
    assert code == EXIT_USAGE and out == ""
    assert err == f"autocrop: error: no such command or file '{word}' (did you mean '{verb}'?)\n"


def test_unknown_word_lists_the_verbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["xyzzy"], capsys)
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert err.startswith("autocrop: error: no such command or file 'xyzzy' (commands: crop, batch")


def test_click_usage_error_is_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["doctor", "--no-such-option"], capsys)
    assert code == EXIT_USAGE and "No such option" in err


# --- the config file as default_map -------------------------------------------------------------


def _throwaway_app(seen: dict[str, Any]) -> typer.Typer:
    """Verbs named like the real ones, with the parameter names and flags the config keys must find."""
    app = typer.Typer(add_completion=False)

    @app.command("crop")
    def crop(
        images: Annotated[list[str], typer.Argument()],
        ratio: Annotated[list[str] | None, typer.Option("--ratio", "-r")] = None,
        top: Annotated[int | None, typer.Option("--top", "-k")] = None,
        fmt: Annotated[str | None, typer.Option("--format")] = None,
        model: Annotated[Path | None, typer.Option("--model")] = None,
        size: Annotated[str | None, typer.Option("--size")] = None,
    ) -> None:
        seen.update(verb="crop", images=images, ratio=ratio, top=top, fmt=fmt, model=model, size=size)

    @app.command("bench")
    def bench(
        gaicd: Annotated[Path | None, typer.Option("--gaicd-dir")] = None,
        device: Annotated[str, typer.Option("--device")] = "cpu",
    ) -> None:
        seen.update(verb="bench", gaicd=gaicd, device=device)

    @app.command("doctor")
    def doctor(model: Annotated[Path | None, typer.Option("--model")] = None) -> None:
        seen.update(verb="doctor", model=model)

    @app.command("boom")
    def boom(kind: str) -> None:
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        raise ModelError("/models/m.safetensors: model file not found")

    return app


@pytest.fixture()
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    values: dict[str, Any] = {}
    monkeypatch.setattr(cli, "app", _throwaway_app(values))
    return values


def test_default_map_maps_keys_to_parameters(seen: dict[str, Any]) -> None:
    command = cli.build_command()
    configured = {"ratio": "16:9,1:1", "top": 3, "format": "webp", "model": "/m.safetensors", "device": "cuda",
                  "gaicd_dir": "/data/GAICD", "fcdb_dir": "/data/FCDB", "quality": 80}
    assert cli.build_default_map(command, configured) == {
        "crop": {"ratio": ["16:9,1:1"], "top": 3, "fmt": "webp", "model": "/m.safetensors"},
        "bench": {"gaicd": "/data/GAICD", "device": "cuda"},
    }  # doctor takes no config keys; options a verb lacks (quality, fcdb_dir) are left out


def test_default_map_precedence_cli_env_file(seen: dict[str, Any], isolated_config: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (isolated_config / "config.toml").write_text(
        'ratio = "4:5,1:1"\ntop = 4\nformat = "png"\nmodel = "~/file.safetensors"\ngaicd_dir = "/file/GAICD"\n')
    assert run(["crop", "a.jpg"], capsys)[0] == EXIT_OK
    assert seen == {"verb": "crop", "images": ["a.jpg"], "ratio": ["4:5,1:1"], "top": 4, "fmt": "png",
                    "model": Path("~/file.safetensors").expanduser(), "size": None}
    monkeypatch.setenv("AUTOCROP_TOP", "5")
    monkeypatch.setenv("AUTOCROP_FORMAT", "")  # "" in the environment: back to the built-in default
    monkeypatch.setenv("AUTOCROP_GAICD_DIR", "/env/GAICD")
    assert run(["crop", "a.jpg"], capsys)[0] == EXIT_OK
    assert (seen["top"], seen["fmt"], seen["ratio"]) == (5, None, ["4:5,1:1"])
    assert run(["crop", "a.jpg", "-k", "2", "--format", "jpeg", "-r", "16:9"], capsys)[0] == EXIT_OK
    assert (seen["top"], seen["fmt"], seen["ratio"]) == (2, "jpeg", ["16:9"])
    seen.clear()
    assert run(["bench"], capsys)[0] == EXIT_OK
    assert seen == {"verb": "bench", "gaicd": Path("/env/GAICD"), "device": "cpu"}
    assert run(["bench", "--gaicd-dir", "/cli/GAICD"], capsys)[0] == EXIT_OK
    assert seen["gaicd"] == Path("/cli/GAICD")


def test_bad_config_stops_a_config_verb_but_not_doctor(seen: dict[str, Any], isolated_config: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTOCROP_TOP", "0")
    code, out, err = run(["crop", "a.jpg"], capsys)
    assert code == EXIT_USAGE and out == "" and seen == {}
    assert err == "autocrop: error: $AUTOCROP_TOP: top 0: must be 1..1000\n"
    assert run(["crop", "--help"], capsys)[0] == EXIT_OK  # help still works
    assert run(["doctor"], capsys)[0] == EXIT_OK and seen == {"verb": "doctor", "model": None}


# --- errors and interrupts ----------------------------------------------------------------------


def test_autocrop_error_is_one_line_exit_2(seen: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["boom", "model"], capsys)
    assert code == EXIT_USAGE and out == ""
    assert err == "autocrop: error: /models/m.safetensors: model file not found\n"


@pytest.mark.parametrize("kind", ["interrupt", "sigterm"])
def test_interrupt_is_130(kind: str, seen: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = run(["boom", kind], capsys)
    assert code == EXIT_INTERRUPTED and err == "autocrop: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is handler  # restored


def test_interrupt_outside_a_verb_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from autocrop.commands import config_file

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(config_file, "load_config", interrupted)
    code, _, err = run(["crop", "a.jpg"], capsys)
    assert code == EXIT_INTERRUPTED and err == "autocrop: interrupted\n"
