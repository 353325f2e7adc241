"""How commands talk to people: rich consoles (wide when not a terminal) and one-line error messages."""

from __future__ import annotations

import sys
from typing import Any

import typer


def console(stderr: bool) -> Any:
    """A rich console on stdout or stderr; when not writing to a terminal, wide enough that paths are never cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 400)


def error_line(err: BaseException | str) -> None:
    """``autocrop: error: <message>`` on stderr (the one line every error gets)."""
    typer.echo(f"autocrop: error: {err}", err=True)
