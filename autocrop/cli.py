"""The ``autocrop`` command line: a thin typer app.

Each verb lives in ``autocrop/commands/<verb>.py`` and exposes ``register(app)``; this module wires
them together and owns what every verb shares:

* the ``autocrop IMAGE ...`` shorthand for ``autocrop crop IMAGE ...`` (and "did you mean" for a
  mistyped verb that is not a file),
* the user's defaults: the config file and ``AUTOCROP_<KEY>`` are read once, here, and handed to the
  verbs as click's ``default_map`` (so command line > environment > file > built-in everywhere),
* the exit codes of :mod:`autocrop.commands.exit_codes`: an :class:`~autocrop.errors.AutocropError`
  is one line "autocrop: error: ..." and exit 2, Ctrl-C or SIGTERM one line and exit 130.

Heavy imports (torch, numpy) happen inside the commands, never at import time.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from autocrop.commands.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE, exit_code_lines
from autocrop.errors import AutocropError, UsageError
from autocrop.launch import VERBS as COMMAND_MODULES

PROG = "autocrop"
CROP_VERB = "crop"
STDIN = "-"
INTERRUPTED = f"{PROG}: interrupted"
#: The config keys each verb takes as defaults of its options (mapped to its parameters by build_default_map).
VERB_KEYS: dict[str, tuple[str, ...]] = {
    "crop": ("ratio", "top", "quality", "name", "format", "model", "device", "runtime", "faces"),
    "batch": ("ratio", "top", "quality", "name", "format", "model", "device", "runtime", "faces"),
    "bench": ("model", "device", "runtime", "gaicd_dir", "fcdb_dir", "flms_dir"),
    "train": ("gaicd_dir", "fcdb_dir"),
}

HELP = (
    "Crop photos the way a good photographer would (learned view ranking).\n\n"
    "autocrop IMAGE ... is short for autocrop crop IMAGE ... ('-' reads a photo from stdin). "
    "Defaults come from the command line, then AUTOCROP_<KEY> variables, then the config file "
    "(see autocrop config show)."
)
EXAMPLES = (
    ("autocrop photo.jpg -r 16:9 -k 3", "the 3 best 16:9 crops of a photo, written beside it"),
    ("autocrop batch ~/Pictures -o ~/crops", "a whole folder tree, resumable"),
    ("autocrop faces group.jpg --json", "the faces the crops will never cut"),
    ("autocrop train --data gaicd --out runs/mine", "train a ranking model"),
    ("autocrop bench --dataset fcdb", "measure the model on a public benchmark"),
    ("autocrop export mine.safetensors", "the ONNX Runtime graph of a trained model"),
    ("autocrop doctor", "check the installation, the model and the device"),
    ("autocrop config set ratio 4:5", "change a default"),
)


def _epilog() -> str:
    width = max(len(command) for command, _ in EXAMPLES)
    examples = [f"  {command:<{width}}  {meaning}" for command, meaning in EXAMPLES]
    return "\n".join(["Examples:", *examples]) + "\n\n" + "\n".join(["Exit codes:", *exit_code_lines()])


app = typer.Typer(
    name=PROG,
    help=HELP,
    epilog=_epilog(),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    """The installed distribution's version (``0+unknown`` in a source tree that was never installed)."""
    from autocrop import __version__

    return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """The root's own options (its help text is :data:`HELP`)."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"autocrop.commands.{name}").register(app)


_register_commands()


def _error(message: str) -> None:
    typer.echo(f"{PROG}: error: {message}", err=True)


def _with_crop_shorthand(argv: list[str], verbs: Collection[str]) -> list[str]:
    """``autocrop photo.jpg ...`` means ``autocrop crop photo.jpg ...``; so does ``autocrop - ...`` (stdin).

    The first word routes to ``crop`` when it is not a verb but an existing path, ``-``, or looks like a
    file name (has a suffix or a folder); crop then reports a missing photo itself. Any other word is a
    mistyped verb: :class:`UsageError` "no such command or file 'doctr' (did you mean 'doctor'?)".
    Options (``--version``, ``-h``) and verbs pass unchanged.
    """
    if not argv:
        return argv
    first = argv[0]
    if first in verbs:
        return argv
    if first == STDIN:
        return [CROP_VERB, *argv]
    if first.startswith("-"):
        return argv
    path = Path(first)
    if path.exists() or path.suffix or "/" in first or os.sep in first:
        return [CROP_VERB, *argv]
    close = difflib.get_close_matches(first, list(verbs), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"commands: {', '.join(verbs)}"
    raise UsageError(f"no such command or file '{first}' ({hint})")


def _option_for(command: Any, key: str) -> Any:
    """The option of ``command`` a config key sets: the parameter named ``key`` (``top``), else the one
    with the flag ``--key`` (``--format`` for a parameter called ``fmt``); None when it has neither."""
    options = [p for p in getattr(command, "params", ()) if getattr(p, "param_type_name", "") == "option"]
    flag = "--" + key.replace("_", "-")
    for param in options:
        if param.name == key:
            return param
    for param in options:
        if flag in param.opts:
            return param
    return None


def build_default_map(command: Any, configured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """click's ``default_map`` for the root command: ``{verb: {parameter name: value}}``.

    ``configured``: the config values set by the file or the environment (``Config.configured()``). Each
    verb gets the keys listed for it in :data:`VERB_KEYS` that are options of it, found by
    :func:`_option_for`; an option taking several values (``--ratio``) gets a one-element list.
    """
    commands: dict[str, Any] = getattr(command, "commands", {})
    default_map: dict[str, dict[str, Any]] = {}
    for verb, keys in VERB_KEYS.items():
        sub = commands.get(verb)
        if sub is None:
            continue
        entries: dict[str, Any] = {}
        for key in keys:
            param = _option_for(sub, key) if key in configured else None
            if param is None:
                continue
            value = configured[key]
            several = getattr(param, "multiple", False) or param.nargs != 1
            entries[param.name] = [value] if several else value
        if entries:
            default_map[verb] = entries
    return default_map


def _configured_defaults(command: Any, args: list[str]) -> dict[str, dict[str, Any]] | None:
    """The default_map for a call of a verb that takes config keys (others read no config at all, so
    ``autocrop doctor`` can report a broken file and ``--help`` always works)."""
    if not args or args[0] not in VERB_KEYS:
        return None
    from autocrop.commands.config_file import load_config

    try:
        config = load_config()
    except AutocropError:
        if "-h" in args or "--help" in args:
            return None
        raise
    return build_default_map(command, config.configured())


def _escape_markup(text: str | None) -> str | None:
    """``[default: 1]`` in a help text stays text (rich markup would drop it and leave a stray " .")."""
    return None if text is None else re.sub(r"(?<!\\)\[", r"\\[", text)


def _argument_metavar(param: Any, usage: bool) -> str:
    """An argument as POSIX usage writes it: ``IMAGE...`` (required), ``[IMAGE]...`` (optional); typer: ``{IMAGE}``."""
    name = param.metavar or (param.name or "").upper()
    if not usage:
        return str(name)
    return (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")


def _tidy_param(param: Any, rich: bool) -> Any:
    if param is None:
        return None
    if param.metavar is None and param.name is not None:
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        param.metavar = "" if flag else param.name.upper()
    if getattr(param, "param_type_name", "") == "argument":
        param.display_type_rich = lambda ctx: None  # the metavar says it all (no "<str>", "<list[str]>")
        if getattr(param, "type", None) is not None:  # typer < 0.29 prints "<str>" when the type has no metavar
            param.type = copy.copy(param.type)  # a copy: click's STRING is shared by every parameter
            param.type.get_metavar = lambda *args, **kwargs: ""
            param.make_metavar = lambda ctx=None, usage=False, p=param: _argument_metavar(p, usage)
        if hasattr(param, "_usage_display_name") and hasattr(param, "display_name_raw"):
            # the usage line as POSIX writes it: IMAGE... (required), [IMAGE]... (optional); typer uses {IMAGE}
            param._usage_display_name = lambda p=param: ((p.display_name_raw if p.required
                                                          else f"[{p.display_name_raw}]")
                                                         + ("..." if p.nargs != 1 else ""))
    if rich and getattr(param, "help", None):
        param.help = _escape_markup(param.help)
    return param


def _tidy_help(command: Any) -> None:
    """Help without typer internals: no type labels (``<bool>``, ``<list[str]>``), a flag (``--help``
    included) shows no value, an option without a metavar shows its name in capitals (``--seed SEED``),
    and square brackets in help texts are printed, not read as rich markup."""
    rich = getattr(command, "rich_markup_mode", None) == "rich"
    for param in getattr(command, "params", ()):
        _tidy_param(param, rich)
    if rich:
        command.help = _escape_markup(command.help)
        command.short_help = _escape_markup(command.short_help)
        command.epilog = _escape_markup(command.epilog)
    make_help_option = command.get_help_option  # click makes --help on first use, per command
    command.get_help_option = lambda ctx: _tidy_param(make_help_option(ctx), rich)
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def _guard_callbacks(command: Any) -> None:
    """Ctrl-C inside any verb: one line and :data:`EXIT_INTERRUPTED` (typer would exit 130 silently)."""
    for sub in getattr(command, "commands", {}).values():
        _guard_callbacks(sub)
    callback: Callable[..., Any] | None = command.callback
    if callback is None:
        return

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo(INTERRUPTED, err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    command.callback = guarded


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`KeyboardInterrupt` in the main thread, like Ctrl-C (restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def verbs() -> list[str]:
    """The verbs of :data:`app` (commands and command groups), without building its click command."""
    commands = [info.name for info in app.registered_commands]
    groups = [info.name for info in app.registered_groups]
    return [str(name) for name in (*commands, *groups) if name]


def build_command(verb: str | None = None) -> Any:
    """The click command of :data:`app`, with tidy help texts and guarded verbs.

    verb: build only that verb of the group (the top-level options stay): what a call of one verb needs,
    ~50 ms sooner than building all of them (typer reads every parameter of every verb).
    """
    if verb is None:
        command = typer.main.get_command(app)
    else:
        source = copy.copy(app)
        source.registered_commands = [info for info in app.registered_commands if info.name == verb]
        source.registered_groups = [info for info in app.registered_groups if info.name == verb]
        command = typer.main.get_group(source)  # a group even with one verb: `autocrop crop ...` still parses
    _tidy_help(command)
    _guard_callbacks(command)
    return command


def run(argv: list[str]) -> int:
    """Run ``autocrop ARGV...``; returns the exit code (see :mod:`autocrop.commands.exit_codes`)."""
    with _sigterm_interrupts():
        try:
            args = _with_crop_shorthand(argv, verbs())
            command = build_command(args[0] if args and args[0] in verbs() else None)
            default_map = _configured_defaults(command, args)
            command.main(args=args, prog_name=PROG, standalone_mode=True, default_map=default_map)
        except SystemExit as exit_:
            code = exit_.code
            if code is None or isinstance(code, int):
                return code or 0
            typer.echo(code, err=True)
            return EXIT_USAGE
        except AutocropError as err:
            _error(str(err))
            return EXIT_USAGE
        except KeyboardInterrupt:
            typer.echo(INTERRUPTED, err=True)
            return EXIT_INTERRUPTED
    return 0  # pragma: no cover - click's standalone mode always exits


GIL_SWITCH_S = 0.001  #: the console script's ``sys.setswitchinterval`` (Python's default: 0.005)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``autocrop`` console script (exits with the code of :func:`run`).

    As the console script (``argv`` None) it ends the process with ``os._exit`` once the output is
    flushed: by then every file a verb wrote is complete and closed, its worker threads have finished and a
    Ray runtime it started is shut down, and the interpreter's own teardown (freeing the decoded photos, the
    model sessions and every module) would add ~0.1 s to each ``autocrop photo.jpg``.

    The console script also shortens the interpreter's thread switch interval (:data:`GIL_SWITCH_S`): the
    model loads in a background thread while the main thread decodes and finds faces, and with the
    default 5 ms a thread that gave the GIL up around a C call (reading the weights, creating a session)
    waits up to 5 ms to get it back, each time (measured: about 30 ms of a 1024 px photo's 0.55 s).
    """
    if argv is None:
        sys.setswitchinterval(GIL_SWITCH_S)
    code = run(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        _exit_now(code)
    raise SystemExit(code)


def _exit_now(code: int) -> NoReturn:
    """Flush standard output and error, then end the process without the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach the reader
            code = code or EXIT_USAGE
    os._exit(code)
