"""Batch cropping of whole folder trees: safely (mirrored output tree, originals only read), resumably (JSONL
manifest), in parallel (local threads or Ray actors), every input through :class:`autocrop.Cropper`.

    from autocrop.batch import BatchOptions, CropperSpec, run_batch
    from autocrop.settings import CropSettings

    spec = CropperSpec(CropSettings.build(ratio="16:9"))
    tally = run_batch(BatchOptions(source=Path("album"), out=Path("crops")), spec)
    tally.complete, tally.failures        # every input done? which failed, and why

Modules: :mod:`.walk` (inputs, location checks, output stems), :mod:`.manifest` (JSONL records, resume),
:mod:`.lock` (one batch per output folder), :mod:`.worker`
(:class:`CropperSpec` and one input through the Cropper), :mod:`.local` / :mod:`.ray_engine` (the two
engines), :mod:`.summary` (progress, summary, the :class:`Tally` a run returns), :mod:`.run`
(:func:`run_batch`, which ties them together). Exit codes are the command's business
(:mod:`autocrop.commands.batch`). Importing this package imports no torch.
"""

from __future__ import annotations

from autocrop.batch.run import BatchOptions, run_batch
from autocrop.batch.summary import Tally
from autocrop.batch.worker import CropperSpec, FatalOutputError

__all__ = ["BatchOptions", "CropperSpec", "FatalOutputError", "Tally", "run_batch"]
