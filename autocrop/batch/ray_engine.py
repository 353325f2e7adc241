"""The Ray engine: the same per-input work (:func:`autocrop.batch.worker.process_one`) on a pool of Ray actors.

Each actor builds its engine once (one model per actor, torch limited to one thread per actor CPU) and crops
inputs that it reads from, and writes to, paths every node can see (a shared file system). The driver -- the
``autocrop batch`` process -- walks the source, feeds the actors (two inputs in flight per actor), and alone
writes the manifest and the progress, exactly as the local engine does, so both produce the same files and
the same manifest records.

Without an address a local Ray instance is started (and shut down at the end); with ``--ray-address``
(or ``RAY_ADDRESS``), e.g. ``auto`` on a cluster node or ``ray://head:10001``, the existing cluster is used.
Requires the optional extra: ``pip install 'autocrop-views[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from autocrop.batch.worker import BatchEngine, Destination, FatalOutputError, WorkItem, process_one
from autocrop.errors import AutocropError, InputError

RAY_HINT = "--engine ray needs Ray: pip install 'autocrop-views[ray]'"


def require_ray() -> Any:
    """Import ray or raise a one-line :class:`InputError` naming the extra."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_HINT) from None
    return ray


class _CropActor:
    """One Ray actor: one engine (model loaded once), many inputs."""

    def __init__(self, engine_factory: Callable[[], BatchEngine], dest: Destination) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.engine = engine_factory()
        self.dest = dest

    def crop(self, item: WorkItem) -> dict[str, Any]:
        try:
            return process_one(self.engine, item, self.dest)
        except FatalOutputError as err:
            return {"__fatal__": str(err), "path": item.rel}


def _single_threaded(factory: Callable[[], BatchEngine]) -> Callable[[], BatchEngine]:
    """The engine spec with one torch thread per actor (an actor holds one CPU)."""
    if hasattr(factory, "threads") and getattr(factory, "threads") is None:
        try:
            return replace(factory, threads=1)  # type: ignore[type-var]
        except TypeError:
            return factory
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
        raise InputError(f"ray worker failed: {(lines[-1] if lines else type(err).__name__)[:300]}") from None


def run_ray(
    items: Iterable[WorkItem],
    dest: Destination,
    engine_factory: Callable[[], BatchEngine],
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
            raise InputError(f"--ray-address {address}: cannot connect to the Ray cluster ({err})") from None
    fatal: str | None = None
    inflight: dict[Any, Any] = {}
    try:
        n_actors = jobs if jobs > 0 else max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_CropActor)
        factory = _single_threaded(engine_factory)
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
                    if "__fatal__" in record:
                        fatal = fatal or record["__fatal__"]
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
                    if "__fatal__" not in record:
                        on_record(record)
            raise
        for actor in actors:
            ray.kill(actor)
    finally:
        if started_here:
            ray.shutdown()
    if fatal is not None:
        raise FatalOutputError(fatal)
