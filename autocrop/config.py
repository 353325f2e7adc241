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
A broken file or a bad value raises :class:`~autocrop.errors.InputError` naming the file and the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocrop.errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_DIR_ENV = "AUTOCROP_CONFIG_DIR"
ENV_PREFIX = "AUTOCROP_"
FILE_NAME = "config.toml"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _path_text(value: Any) -> str:
    return str(Path(_text(value)).expanduser()) if _text(value) else ""


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        if isinstance(value, str):
            value = value.strip()
            if not re.fullmatch(r"[+-]?\d+", value):
                raise ValueError("must be an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be {low}..{high}")
        return number

    return check


def _ratio(value: Any) -> str:
    from autocrop.engine import parse_ratios

    text = _text(value).strip()
    if text:
        try:
            parse_ratios(text)
        except InputError as err:
            raise ValueError(str(err).split(": ", 1)[-1]) from None
    return text


def _name(value: Any) -> str:
    from autocrop.engine import check_name_pattern

    try:
        check_name_pattern(_text(value))
    except InputError as err:
        raise ValueError(str(err).split(": ", 1)[-1]) from None
    return _text(value)


def _format(value: Any) -> str:
    from autocrop.imageio import FORMAT_ALIASES

    text = _text(value).strip().lower()
    if text and text not in FORMAT_ALIASES:
        raise ValueError(f"must be one of {', '.join(sorted(FORMAT_ALIASES))} or \"\"")
    return text


def _device(value: Any) -> str:
    text = _text(value).strip()
    if not re.fullmatch(r"(cpu|cuda(:\d+)?|mps)", text):
        raise ValueError("must be cpu, cuda, cuda:N or mps")
    return text


@dataclass(frozen=True)
class Key:
    """A configuration key: its built-in default, its parser/validator and a one-line description."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


KEYS: dict[str, Key] = {k.name: k for k in (
    Key("ratio", "", _ratio, "default --ratio: W:H, several comma-separated, 'original'; \"\" = free crops"),
    Key("top", 1, _int_range(1, 1000), "default --top: crops per photo and ratio"),
    Key("quality", 95, _int_range(1, 100), "JPEG/WebP quality of the crops"),
    Key("name", "{stem}.crop{rank}.{ext}", _name, "output file-name pattern: {stem} {rank} {ratio} {ext} {w} {h}"),
    Key("format", "", _format, "output format jpeg|png|webp|tiff|bmp; \"\" keeps the input's"),
    Key("device", "cpu", _device, "torch device for the model"),
    Key("model", "", _path_text, "model weights (.safetensors); \"\" = the packaged default"),
    Key("gaicd_dir", "", _path_text, "GAICD dataset folder (bench/train)"),
    Key("fcdb_dir", "", _path_text, "FCDB dataset folder (bench/train)"),
    Key("flms_dir", "", _path_text, "FLMS dataset folder (bench)"),
)}


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


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None


def read_file(path: Path | None = None) -> dict[str, Any]:
    """Parsed and validated values of the config file ({} when it does not exist).

    Raises :class:`InputError` "FILE: line N: ..." for invalid TOML, unknown keys or bad values.
    """
    path = config_path() if path is None else path
    if not path.exists():
        return {}
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a TOML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read config file: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", message) or "invalid TOML"
        where = f"line {match.group(1)}, column {match.group(2)}" if match else "line ?"
        if match is None and "end of document" in message:
            where = f"line {text.count(chr(10)) + 1}"
        raise InputError(f"{path}: {where}: invalid TOML: {reason}") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        line = _line_of(text, key)
        where = f"line {line}" if line else "line ?"
        spec = KEYS.get(key)
        if spec is None:
            raise InputError(f"{path}: {where}: unknown key '{key}' (known: {', '.join(KEYS)})")
        try:
            values[key] = spec.parse(raw)
        except (ValueError, TypeError) as err:
            raise InputError(f"{path}: {where}: {key} = {raw!r}: {err}") from None
    return values


@dataclass
class Config:
    """Effective settings: ``values[key]`` and where each came from (``sources[key]``:
    "default", "file" or "env")."""

    values: dict[str, Any]
    sources: dict[str, str]
    path: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, cli_value: Any = None) -> Any:
        """The command-line value when given (not None), else the configured one."""
        return cli_value if cli_value is not None else self.values[key]


def load_config() -> Config:
    """Defaults, overridden by the file, overridden by ``AUTOCROP_<KEY>`` environment variables."""
    path = config_path()
    values = {key: spec.default for key, spec in KEYS.items()}
    sources = {key: "default" for key in KEYS}
    for key, value in read_file(path).items():
        values[key], sources[key] = value, "file"
    for key, spec in KEYS.items():
        env_name = ENV_PREFIX + key.upper()
        if env_name in os.environ:
            raw = os.environ[env_name]
            try:
                values[key] = spec.parse(raw)
            except (ValueError, TypeError) as err:
                raise InputError(f"${env_name}={raw!r}: {err}") from None
            sources[key] = "env"
    return Config(values=values, sources=sources, path=path)


def parse_value(key: str, text: str) -> Any:
    """Parse a command-line string for ``key`` (``autocrop config set``) -> the typed value."""
    spec = KEYS.get(key)
    if spec is None:
        raise InputError(f"config key '{key}' is unknown (known: {', '.join(KEYS)})")
    try:
        return spec.parse(text)
    except (ValueError, TypeError) as err:
        raise InputError(f"config {key} = {text!r}: {err}") from None


def set_value(key: str, text: str | None) -> Path:
    """Store ``key = text`` in the config file (``text`` None removes the key); returns the file.

    The file is rewritten atomically (comments are not preserved). An existing broken file is
    reported, not overwritten.
    """
    import tomli_w

    from autocrop.imageio import atomic_write

    path = config_path()
    values = read_file(path)
    if text is None:
        if key not in KEYS:
            raise InputError(f"config key '{key}' is unknown (known: {', '.join(KEYS)})")
        values.pop(key, None)
    else:
        values[key] = parse_value(key, text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path.parent}: cannot create config directory: {err.strerror or err}") from None
    ordered = {k: values[k] for k in KEYS if k in values}
    payload = tomli_w.dumps(ordered).encode("utf-8")
    atomic_write(path, lambda fh: fh.write(payload), overwrite=True)
    return path


def get_value(key: str) -> Any:
    """The effective value of one key (environment > file > default); KeyError for unknown keys."""
    if key not in KEYS:
        raise KeyError(key)
    return load_config()[key]
