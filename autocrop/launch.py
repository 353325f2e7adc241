"""The ``autocrop`` console script: starts what must begin before the command line is even parsed, then runs
:func:`autocrop.cli.main`.

It runs first in every ``autocrop`` process, so it imports nothing heavy (no typer, no numpy). For a crop
(``autocrop crop ...`` or ``autocrop PHOTO ...``) it has the idle second core fault in heap memory for the
model while the interpreter imports the command line (:func:`autocrop.commands.allocator.prefault_heap`):
started here rather than in the crop command, it is done before the model session is created.
"""

from __future__ import annotations

import sys
from typing import NoReturn

#: The verbs, one module each in ``autocrop/commands/`` (the one list: :mod:`autocrop.cli` registers them).
VERBS = ("crop", "batch", "faces", "train", "bench", "export", "doctor", "config")


def may_crop(argv: list[str]) -> bool:
    """Whether ``autocrop ARGV...`` may crop photos: the ``crop`` verb, ``-`` (stdin), or a first word that is
    neither a verb nor an option (``autocrop PHOTO``; the command line itself decides what a mistyped verb is)."""
    if not argv:
        return False
    first = argv[0]
    return first == "crop" or first == "-" or (first not in VERBS and not first.startswith("-"))


def main() -> NoReturn:
    """Entry point of the ``autocrop`` console script (and ``python -m autocrop``)."""
    if may_crop(sys.argv[1:]):
        from autocrop.commands.allocator import prefault_heap

        prefault_heap()
    from autocrop.cli import main as run_command_line

    run_command_line()
