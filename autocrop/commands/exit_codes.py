"""The one table of exit codes, the same for every verb (``autocrop --help`` prints it).

    0    ok
    1    doctor found a problem
    2    usage or fatal error: bad option, bad config, missing model, unavailable device, unwritable output
    3    some inputs failed (crop and batch alike); the others were done
    130  interrupted (Ctrl-C or SIGTERM)

Verbs end with ``raise typer.Exit(EXIT_...)``; :func:`autocrop.cli.main` turns an
:class:`~autocrop.errors.AutocropError` into one line and :data:`EXIT_USAGE`, and an uncaught
:class:`KeyboardInterrupt` into one line and :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130

#: exit code -> what it means, in the order the help lists them.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_PROBLEM: "doctor found a problem",
    EXIT_USAGE: "usage or fatal error (bad option, bad config, missing model, unavailable device, "
                "unwritable output)",
    EXIT_SOME_FAILED: "some inputs failed (crop and batch); the others were done",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
}


def exit_code_lines() -> list[str]:
    """The table as aligned text lines (``"  0    ok"``), for help texts."""
    return [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()]
