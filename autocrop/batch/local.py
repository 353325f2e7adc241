"""The local engine: a pool of worker threads, each running decode -> score -> encode for one input at a time.

Decoding and encoding (PIL) and the model's forward pass (torch) release the GIL, so ``jobs`` threads overlap
those stages of different inputs on ``jobs`` cores while one model, loaded once, serves every thread
(the Cropper serialises the forward passes). Records come back to the calling thread, which alone writes the
manifest and the progress -- in completion order.

Ctrl-C / SIGTERM: no new input is started, inputs in flight finish (their files are written atomically) and are
recorded, then :class:`KeyboardInterrupt` propagates. A :class:`~autocrop.batch.worker.FatalOutputError` (disk
full) does the same and is raised again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from autocrop.batch.worker import CropperFactory, Destination, FatalOutputError, WorkItem, process_one


def run_local(
    items: Iterable[WorkItem],
    dest: Destination,
    cropper_factory: CropperFactory,
    jobs: int,
    on_record: Callable[[dict[str, Any]], None],
) -> None:
    """Process ``items`` with ``jobs`` threads; call ``on_record`` (in this thread) for each finished input.

    ``cropper_factory`` is called once, before the first input (so a run with nothing to do loads no model).
    """
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        return
    cropper = cropper_factory()
    jobs = max(1, jobs)
    window = 2 * jobs
    pending: set[Future[dict[str, Any]]] = set()
    fatal: FatalOutputError | None = None

    def drain(futures: set[Future[dict[str, Any]]]) -> None:
        nonlocal fatal
        for fut in futures:
            try:
                on_record(fut.result())
            except FatalOutputError as err:
                fatal = fatal or err

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="autocrop-batch") as pool:
        try:
            pending.add(pool.submit(process_one, cropper, first, dest))
            exhausted = False
            while True:
                while not exhausted and fatal is None and len(pending) < window:
                    item = next(iterator, None)
                    if item is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(process_one, cropper, item, dest))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                drain(done)
                if fatal is not None:
                    exhausted = True
        except BaseException:  # KeyboardInterrupt / SystemExit: finish what is in flight, record it, stop
            for fut in pending:
                fut.cancel()
            running = {f for f in pending if not f.cancelled()}
            done, _ = wait(running)
            drain(done)
            raise
    if fatal is not None:
        raise fatal
