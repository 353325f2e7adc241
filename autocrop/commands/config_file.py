"""User defaults in a TOML file; precedence: command line > environment (AUTOCROP_*) > file > built-in.

The file is ``config.toml`` in ``platformdirs.user_config_path("autocrop")`` (e.g.
``~/.config/autocrop/config.toml`` on Linux); ``$AUTOCROP_CONFIG_DIR`` replaces that directory.
It holds flat ``key = value`` lines::

    ratio = "16:9"        # one ratio or several, comma-separated ("16:9,1:1"); "" = free crops
    top = 3
    quality = 92
    name = "{stem}.crop{rank}.{ext}"
    format = "webp"       # "" keeps the input's format
    device = "cpu"
    model = "~/models/mine.safetensors"   # "" = the packaged default model
    gaicd_dir = "/data/GAICD"             # dataset folders used by bench/train

Every key can also be set by the environment variable ``AUTOCROP_<KEY>`` (e.g. ``AUTOCROP_TOP=3``).
Values are checked by the validators of :mod:`autocrop.settings` and :mod:`autocrop.ratios` (the one
table of defaults and checks); a broken file or a bad value raises :class:`~autocrop.errors.UsageError`
naming the file and the line, or the environment variable.

Only the CLI reads this module (``autocrop.cli.main`` hands the values to the verbs as click's
``default_map``; ``doctor`` and ``config`` show them): nothing outside ``autocrop/commands/`` and
``autocrop/cli.py`` imports it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocrop.errors import AutocropError, OutputError, UsageError
from autocrop.ratios import parse_ratios
from autocrop.settings import (
    DEFAULT_DEVICE,
    DEFAULT_NAME,
    DEFAULT_QUALITY,
    DEFAULT_RUNTIME,
    DEFAULT_TOP,
    check_device,
    check_format,
    check_name_pattern,
    check_quality,
    check_runtime,
    check_top,
    parse_switch,
)

CONFIG_DIR_ENV = "AUTOCROP_CONFIG_DIR"
ENV_PREFIX = "AUTOCROP_"
FILE_NAME = "config.toml"


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{key} {value!r}: must be text (in quotes in the config file)")
    return value.strip()


def _whole(value: Any) -> Any:
    """A number written as text ("3", from the environment or ``config set``) -> int; anything else unchanged
    (the settings validators then name the parameter and say what is wrong)."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return value


def _ratio(value: Any) -> str:
    text = _text("ratio", value)
    if text:
        parse_ratios(text)
    return text


def _top(value: Any) -> int:
    return check_top(_whole(value))


def _quality(value: Any) -> int:
    return check_quality(_whole(value))


def _name(value: Any) -> str:
    text = _text("name", value)
    if not text:
        return DEFAULT_NAME
    check_name_pattern(text)
    return text


def _format(value: Any) -> str:
    text = _text("format", value).lower().lstrip(".")
    check_format(text)
    return text


def _device(value: Any) -> str:
    text = _text("device", value)
    return check_device(text) if text else DEFAULT_DEVICE


def _runtime(value: Any) -> str:
    text = _text("runtime", value)
    return check_runtime(text) if text else DEFAULT_RUNTIME


def _faces(value: Any) -> str:
    return "on" if parse_switch("faces", value) else "off"


def _path(key: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(key, value)
        return str(Path(text).expanduser()) if text else ""

    return parse


@dataclass(frozen=True)
class Key:
    """A configuration key: its built-in default, its parser/validator and a one-line description."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


KEYS: dict[str, Key] = {k.name: k for k in (
    Key("ratio", "", _ratio, "default --ratio: W:H, several comma-separated, 'original'; \"\" = free crops"),
    Key("top", DEFAULT_TOP, _top, "default --top: crops per photo and ratio"),
    Key("quality", DEFAULT_QUALITY, _quality, "JPEG/WebP quality of the crops"),
    Key("name", DEFAULT_NAME, _name, "output file-name pattern: {stem} {rank} {ratio} {ext} {w} {h}"),
    Key("format", "", _format, "output format jpeg|png|webp|tiff|bmp; \"\" keeps the input's"),
    Key("device", DEFAULT_DEVICE, _device, "torch device for the model: auto, cpu, cuda, cuda:N or mps"),
    Key("model", "", _path("model"), "model weights (.safetensors); \"\" = the packaged default"),
    Key("runtime", DEFAULT_RUNTIME, _runtime, "inference runtime: auto (ONNX Runtime on the CPU), onnx or torch"),
    Key("faces", "on", _faces, "face-aware crops: on|off (never cut a face, keep the main face)"),
    Key("gaicd_dir", "", _path("gaicd_dir"), "GAICD dataset folder (bench, train)"),
    Key("fcdb_dir", "", _path("fcdb_dir"), "FCDB dataset folder (bench, train)"),
    Key("flms_dir", "", _path("flms_dir"), "FLMS dataset folder (bench)"),
)}

def env_name(key: str) -> str:
    """``top`` -> ``AUTOCROP_TOP``."""
    return ENV_PREFIX + key.upper()


def config_dir() -> Path:
    """``$AUTOCROP_CONFIG_DIR`` or the platform's user config directory for autocrop."""
    env = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_path("autocrop"))


def config_path() -> Path:
    """The config file (it need not exist)."""
    return config_dir() / FILE_NAME


def _unknown_key(key: str) -> UsageError:
    return UsageError(f"config key '{key}' is unknown (known: {', '.join(KEYS)})")


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None


def _load_toml(path: Path, text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):  # imported here: most calls have no config file (saves ~4 ms of start-up)
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", message) or "invalid TOML"
        where = f"line {match.group(1)}, column {match.group(2)}" if match else "line ?"
        if match is None and "end of document" in message:
            where = f"line {text.count(chr(10)) + 1}"
        raise UsageError(f"{path}: {where}: invalid TOML: {reason}") from None


def read_file(path: Path | None = None) -> dict[str, Any]:
    """Parsed and validated values of the config file ({} when it does not exist).

    Raises :class:`UsageError` "FILE: line N: ..." for invalid TOML, unknown keys or bad values.
    """
    path = config_path() if path is None else path
    if not path.exists():
        return {}
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a TOML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read config file: {getattr(err, 'strerror', None) or err}") from None
    values: dict[str, Any] = {}
    for key, raw in _load_toml(path, text).items():
        line = _line_of(text, key)
        where = f"{path}: line {line}" if line else f"{path}: line ?"
        spec = KEYS.get(key)
        if spec is None:
            raise UsageError(f"{where}: unknown key '{key}' (known: {', '.join(KEYS)})")
        try:
            values[key] = spec.parse(raw)
        except AutocropError as err:
            raise UsageError(f"{where}: {err}") from None
    return values


@dataclass(frozen=True)
class Config:
    """Effective settings: ``values[key]`` and where each came from (``sources[key]``: "default", "file"
    or "env")."""

    values: dict[str, Any]
    sources: dict[str, str]
    path: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def configured(self) -> dict[str, Any]:
        """The values the user set (file or environment), without those that mean "built-in default" ("")."""
        return {k: v for k, v in self.values.items() if self.sources[k] != "default" and v != ""}


def load_config() -> Config:
    """Defaults, overridden by the file, overridden by ``AUTOCROP_<KEY>`` environment variables."""
    path = config_path()
    values = {key: spec.default for key, spec in KEYS.items()}
    sources = dict.fromkeys(KEYS, "default")
    for key, value in read_file(path).items():
        values[key], sources[key] = value, "file"
    for key, spec in KEYS.items():
        name = env_name(key)
        if name in os.environ:
            try:
                values[key] = spec.parse(os.environ[name])
            except AutocropError as err:
                raise UsageError(f"${name}: {err}") from None
            sources[key] = "env"
    return Config(values=values, sources=sources, path=path)


def parse_value(key: str, text: str) -> Any:
    """Parse a command-line string for ``key`` (``autocrop config set``) -> the typed value."""
    spec = KEYS.get(key)
    if spec is None:
        raise _unknown_key(key)
    return spec.parse(text)


def set_value(key: str, text: str | None) -> Path:
    """Store ``key = text`` in the config file (``text`` None or "" removes the key); returns the file.

    The file is rewritten atomically (comments are not preserved). An existing broken file is
    reported, not overwritten. A config file that is a symbolic link is written through: the file it
    points to gets the new content and the link stays.
    """
    import tomli_w

    from autocrop.io.fs import atomic_write_bytes

    path = config_path()
    values = read_file(path)
    if key not in KEYS:
        raise _unknown_key(key)
    if text is None or not text.strip():  # unset, or "": back to the built-in default
        if text is not None:
            parse_value(key, text)  # "" is no value for top or quality
        values.pop(key, None)
    else:
        values[key] = parse_value(key, text)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(target.parent, err, "cannot create the config folder") from err
    ordered = {k: values[k] for k in KEYS if k in values}
    atomic_write_bytes(target, tomli_w.dumps(ordered).encode("utf-8"), overwrite=True)
    return path
