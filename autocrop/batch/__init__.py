"""``autocrop batch``: whole folder trees, safely (mirrored output tree, originals only read), resumably
(JSONL manifest), in parallel (local threads or Ray actors).

Modules: :mod:`.walk` (inputs, safety checks), :mod:`.manifest` (JSONL records, resume), :mod:`.worker`
(one input through the engine), :mod:`.local` / :mod:`.ray_engine` (the two engines), :mod:`.summary`
(progress, summary, exit codes), :mod:`.adapter` (the crop engine with ``autocrop crop``'s options),
:mod:`.run` (:func:`run_batch`, which ties them together). Importing this package imports no torch.
"""

from __future__ import annotations

from autocrop.batch.summary import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE"]
