"""How commands talk to people: rich consoles (wide when not a terminal), plain-text tables and one-line errors.

``autocrop crop`` prints with :func:`text_table` and ``print``, not rich: importing rich costs 30-40 ms,
a tenth of a one-photo command's budget (``docs/runtime.md``). The other verbs use :func:`console`.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
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


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """``header`` and ``rows`` as plain-text columns two spaces apart (no trailing spaces), one line each.

    Columns whose index is in ``right`` are right-justified, the others left-justified; the last column
    is never padded, so long paths stay whole and can be cut out of the line with ``awk``.
    """
    lines = [list(header)] + [list(row) for row in rows]
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    out = []
    for line in lines:
        cells = [cell.rjust(widths[c]) if c in right else cell.ljust(widths[c]) for c, cell in enumerate(line)]
        cells[-1] = line[-1].rjust(widths[-1]) if len(line) - 1 in right else line[-1]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
