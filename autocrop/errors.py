"""Exceptions that the CLI turns into one-line messages (never tracebacks)."""

from __future__ import annotations


class AutocropError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is the one-line message."""


class InputError(AutocropError):
    """A bad input file, path or option value (names the file and the problem)."""


class ModelError(AutocropError):
    """A model/weights file that is missing, damaged or does not match its card."""


class DatasetError(AutocropError):
    """A dataset directory in the wrong layout or without annotations."""
