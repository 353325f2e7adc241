"""The Ray engine: the same per-input work (:func:`autocrop.batch.worker.process_one`) on a pool of Ray actors.

Each actor builds its Cropper once (one model per actor, torch limited to one thread per actor CPU) and crops
inputs that it reads from, and writes to, paths every node can see (a shared file system). The driver -- the
``autocrop batch`` process -- walks the source, feeds the actors (two inputs in flight per actor), and alone
writes the manifest and the progress, exactly as the local engine does, so both produce the same files and
the same manifest records.

Without an ``address`` a local Ray instance is started (and shut down at the end); with one (the command
line also reads ``RAY_ADDRESS``), e.g. ``auto`` on a cluster node or ``ray://head:10001``, the existing
cluster is used.
Requires the optional extra: ``pip install 'autocrop-views[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from autocrop.batch.worker import CropperFactory, CropperSpec, Destination, FatalOutputError, WorkItem, process_one
from autocrop.errors import AutocropError, UsageError

RAY_HINT = "the ray engine needs Ray: pip install 'autocrop-views[ray]'"
FATAL = "__fatal__"  # key of the record an actor returns for a FatalOutputError


def require_ray() -> Any:
    """Import ray or raise a one-line :class:`UsageError` naming the extra."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_HINT) from None
    return ray


class _CropActor:
    """One Ray actor: one Cropper (model loaded once), many inputs."""

    def __init__(self, cropper_factory: CropperFactory, dest: Destination) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.cropper = cropper_factory()
        self.dest = dest

    def crop(self, item: WorkItem) -> dict[str, Any]:
        try:
            return process_one(self.cropper, item, self.dest)
        except FatalOutputError as err:  # sent back as plain values: the driver raises it again
            return {FATAL: [str(err.path), err.reason, err.errno], "path": item.rel}


def _fatal(record: dict[str, Any]) -> FatalOutputError:
    path, reason, errno = record[FATAL]
    return FatalOutputError(path, reason, errno)


def _single_threaded(factory: CropperFactory) -> CropperFactory:
    """The Cropper spec with one torch thread per actor (an actor holds one CPU)."""
    if isinstance(factory, CropperSpec) and factory.threads is None:
        return replace(factory, threads=1)
    return factory


def _get(ray: Any, ref: Any) -> dict[str, Any]:
    """``ray.get`` that turns a worker's failure (e.g. a model that cannot load) into a one-line error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, AutocropError):
            raise cause from None
        text = str(cause or err).strip().splitlines()
        lines = [ln for ln in text if ln.strip() and not ln.startswith((" ", "Traceback"))]
        raise AutocropError(f"ray worker failed: {(lines[-1] if lines else type(err).__name__)[:300]}") from None


def run_ray(
    items: Iterable[WorkItem],
    dest: Destination,
    cropper_factory: CropperFactory,
    jobs: int,
    on_record: Callable[[dict[str, Any]], None],
    address: str | None = None,
) -> None:
    """Process ``items`` on Ray actors; ``on_record`` is called in this (driver) thread per finished input.

    ``jobs``: number of actors (0/negative: one per CPU of the cluster). Nothing is started when ``items`` is
    empty. Ctrl-C: in-flight inputs finish and are recorded, then KeyboardInterrupt propagates.
    """
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        return
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": True,
                                "configure_logging": True}
        if address:
            init["address"] = address
        else:
            init.update(num_cpus=max(1, jobs), object_store_memory=128 * 1024**2)
        try:
            ray.init(**init)
        except ConnectionError as err:
            raise UsageError(f"ray address {address}: cannot connect to the Ray cluster ({err})") from None
    fatal: FatalOutputError | None = None
    inflight: dict[Any, Any] = {}
    try:
        n_actors = jobs if jobs > 0 else max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_CropActor)
        factory = _single_threaded(cropper_factory)
        actors = [actor_cls.remote(factory, dest) for _ in range(n_actors)]
        pending_first = [first]
        exhausted = False
        per_actor = 2

        def next_item() -> WorkItem | None:
            nonlocal exhausted
            if pending_first:
                return pending_first.pop()
            item = next(iterator, None)
            if item is None:
                exhausted = True
            return item

        load = {i: 0 for i in range(n_actors)}
        try:
            while True:
                if fatal is None and not exhausted:
                    for idx in range(n_actors):
                        while load[idx] < per_actor and not exhausted:
                            item = next_item()
                            if item is None:
                                break
                            ref = actors[idx].crop.remote(item)
                            inflight[ref] = idx
                            load[idx] += 1
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    load[inflight.pop(ref)] -= 1
                    record = _get(ray, ref)
                    if FATAL in record:
                        fatal = fatal or _fatal(record)
                        continue
                    on_record(record)
        except KeyboardInterrupt:
            while inflight:  # let started inputs finish, then record them
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=60)
                if not ready:
                    break
                for ref in ready:
                    inflight.pop(ref)
                    try:
                        record = _get(ray, ref)
                    except Exception:  # noqa: BLE001 -- already stopping
                        continue
                    if FATAL not in record:
                        on_record(record)
            raise
        for actor in actors:
            ray.kill(actor)
    finally:
        if started_here:
            ray.shutdown()
    if fatal is not None:
        raise fatal
