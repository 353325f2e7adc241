"""The ``autocrop`` command line: a thin typer app.

Each verb lives in ``autocrop/commands/<verb>.py`` and exposes ``register(app)``; this module only
wires them together, turns :class:`autocrop.errors.AutocropError` into one-line messages, and
implements the ``autocrop IMAGE ...`` shorthand for ``autocrop crop IMAGE ...``.
Heavy imports (torch) happen inside the commands, never at import time.
"""

from __future__ import annotations

import importlib
import sys

import typer

COMMAND_MODULES = ("crop", "batch", "train", "bench", "doctor", "config")

app = typer.Typer(
    name="autocrop",
    help="Crop photos the way a good photographer would (learned view ranking).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"autocrop.commands.{name}")
        except ModuleNotFoundError as err:  # a verb still being built must not break the others
            if err.name == f"autocrop.commands.{name}":
                continue
            raise
        module.register(app)


_register_commands()


def _with_crop_shorthand(argv: list[str]) -> list[str]:
    """``autocrop photo.jpg ...`` means ``autocrop crop photo.jpg ...``."""
    if not argv:
        return argv
    first = argv[0]
    known = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    if first in known or first.startswith("-"):
        return argv
    return ["crop", *argv]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``autocrop`` console script."""
    from autocrop.errors import AutocropError

    args = _with_crop_shorthand(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="autocrop", standalone_mode=True)
    except AutocropError as err:
        typer.echo(f"autocrop: error: {err}", err=True)
        raise SystemExit(2) from None
