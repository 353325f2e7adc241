"""One bench run: quality of the model and of the baselines, plus speed, on one dataset -> a report dict.

Every score comes from :class:`autocrop.cropper.Cropper`, the code path of ``autocrop crop``: each
photo is decoded once (:meth:`Cropper.decode`: EXIF-oriented, reduced size), its candidates are scored
in one forward pass (:meth:`Cropper.score`, boxes in pixels of the full-size oriented photo, where the
annotations live), and on FCDB/FLMS the written top-1 crop is made by
:meth:`Cropper.choose` exactly as ``autocrop crop`` makes it (face rule included). The same candidates are
ranked by every baseline and everything goes through the same metric code
(:mod:`autocrop.bench.metrics`). Training images listed in the model card are excluded (or, with
``include_train``, kept and flagged). See :func:`run_bench`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from autocrop.bench.baselines import BASELINES, baseline_scores, baseline_top1
from autocrop.bench.datasets import DATASETS, load_anchors, load_bench_dataset, split_training_items
from autocrop.bench.metrics import box_metrics, gaicd_metrics
from autocrop.candidates import candidate_boxes
from autocrop.cropper import Cropper
from autocrop.errors import AutocropError, DatasetError, InputError, ModelError, UsageError
from autocrop.ratios import FREE
from autocrop.settings import DEFAULT_DEVICE, check_device
from autocrop.system import available_cpus

CANDIDATE_SETS = ("grid", "anchors")
SPLITS = ("test", "train")
GAICD_MARGIN_KEYS: tuple[str, ...] = ("acc1_5", "acc5_mean", "acc1_10", "acc10_mean", "srcc", "pcc")
BOX_MARGIN_KEYS = ("iou", "disp")
UNREFINED = "model_unrefined"  # box datasets: the best grid view itself, before refinement
LOWER_IS_BETTER = {"disp"}

ProgressFn = Callable[[int, int], None]


@dataclass
class BenchOptions:
    """What to measure.

    dataset:    'gaicd', 'fcdb' or 'flms'.
    data_dir:   the dataset's folder; else ``gaicd_dir`` / ``fcdb_dir`` / ``flms_dir`` for that dataset;
                else ``$AUTOCROP_DATA_DIR/<NAME>`` (see :func:`resolve_bench_dir`).
    model:      a ``.safetensors`` model file, None for the packaged default. device: auto, cpu, cuda, ...
    candidates: FCDB/FLMS only ('grid' default | 'anchors'); GAICD uses its annotated crops.
    threads:    torch intra-op threads (None: torch's own setting).
    """

    dataset: str
    data_dir: Path | None = None
    model: Path | None = None
    split: str = "test"
    candidates: str | None = None
    limit: int | None = None
    include_train: bool = False
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    gaicd_dir: Path | None = None
    fcdb_dir: Path | None = None
    flms_dir: Path | None = None


# ---------------------------------------------------------------------------------------------
# locating the data
# ---------------------------------------------------------------------------------------------


def resolve_bench_dir(options: BenchOptions) -> Path:
    """The folder of ``options.dataset``: ``data_dir`` > that dataset's own ``<name>_dir`` >
    ``$AUTOCROP_DATA_DIR/<NAME>`` (NAME: GAICD, FCDB, FLMS; see :func:`autocrop.data.locate.resolve_data_dir`).

    Raises :class:`DatasetError` when the folder does not exist.
    """
    from autocrop.data.locate import resolve_data_dir

    own = {"gaicd": options.gaicd_dir, "fcdb": options.fcdb_dir, "flms": options.flms_dir}.get(options.dataset)
    chosen = options.data_dir if options.data_dir is not None else own
    return resolve_data_dir(options.dataset, chosen or None)


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process in MiB (``getrusage`` maxrss), ``None`` where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)


def machine_info() -> dict[str, Any]:
    """Platform, CPU and torch thread facts recorded with every report."""
    import torch

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p90": None, "mean": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(arr)), 2),
        "p90": round(float(np.percentile(arr, 90)), 2),
        "mean": round(float(arr.mean()), 2),
    }


def margins(results: dict, keys: tuple[str, ...]) -> dict:
    """Model vs each baseline: ``delta`` = model - baseline, ``ratio`` = model / baseline, ``better`` per metric."""
    model = results["model"]
    out: dict = {}
    for name in BASELINES:
        base = results.get(name)
        if base is None:
            continue
        entry = {}
        for key in keys:
            m, b = model[key], base[key]
            entry[key] = {
                "delta": round(m - b, 5),
                "ratio": round(m / b, 4) if b else None,
                "better": bool(m < b) if key in LOWER_IS_BETTER else bool(m > b),
            }
        out[name] = entry
    return out


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def check_options(options: BenchOptions) -> None:
    """Validate ``options`` before anything is loaded; one-line :class:`UsageError` naming the parameter."""
    if options.dataset not in DATASETS:
        raise UsageError(f"dataset {options.dataset!r}: unknown (choose {', '.join(DATASETS)})")
    if options.split not in SPLITS:
        raise UsageError(f"split {options.split!r}: use {' or '.join(SPLITS)}")
    if options.threads is not None and (isinstance(options.threads, bool) or options.threads < 1):
        raise UsageError(f"threads must be >= 1, got {options.threads}")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"limit must be >= 1, got {options.limit}")
    if options.dataset == "gaicd" and options.candidates is not None:
        raise UsageError("candidates applies to fcdb and flms; GAICD is scored on its annotated candidates")
    if options.candidates is not None and options.candidates not in CANDIDATE_SETS:
        choices = ", ".join(CANDIDATE_SETS)
        raise UsageError(f"candidates {options.candidates!r}: unknown candidate set (choose {choices})")
    check_device(options.device)


def load_cropper(options: BenchOptions) -> tuple[Cropper, float, float]:
    """A :class:`Cropper` with ``options.model`` loaded on ``options.device`` -> (cropper, torch import s, load s).

    The torch import is timed apart from the model load. A file that is not a model becomes a one-line
    :class:`ModelError`, never a traceback.
    """
    start = time.perf_counter()
    import torch  # noqa: F401 - imported here so that its cost is measured apart from the model load

    torch_seconds = time.perf_counter() - start
    cropper = Cropper(options.model, options.device or DEFAULT_DEVICE, threads=options.threads)
    return cropper, torch_seconds, _load(cropper, options.model)


def _load(cropper: Cropper, model: Path | None) -> float:
    """Load the cropper's model now (so that the load is timed here) -> seconds it took."""
    start = time.perf_counter()
    try:
        cropper.scorer  # noqa: B018 - loads the model
    except AutocropError:
        raise
    except Exception as err:  # noqa: BLE001 - a file that is not a model must never produce a traceback
        raise ModelError(f"{model}: cannot load model ({type(err).__name__}: {err})") from None
    return time.perf_counter() - start


def run_bench(options: BenchOptions, cropper: Cropper | None = None, progress: ProgressFn | None = None) -> dict:
    """Measure the model (``cropper``, else one loaded from ``options.model``) and the baselines -> report dict.

    ``cropper``: e.g. ``Cropper(scorer=ViewScorer.untrained())``; its settings' ``refine`` and
    ``diversity`` make the FCDB/FLMS top-1 crop (the defaults: as ``autocrop crop`` does).
    Raises :class:`autocrop.errors.AutocropError` subclasses with one-line messages for bad input.
    """
    check_options(options)
    dataset = options.dataset
    root = resolve_bench_dir(options)
    items, missing = load_bench_dataset(dataset, root, options.split)
    candidate_set = "annotated" if dataset == "gaicd" else (options.candidates or "grid")
    anchors = anchors_path = None
    if candidate_set == "anchors":
        anchors, anchors_path = load_anchors(root)

    if cropper is None:
        cropper, torch_seconds, load_seconds = load_cropper(options)
    else:
        torch_seconds, load_seconds = 0.0, _load(cropper, options.model)
    scorer = cropper.scorer
    card: dict = getattr(scorer, "card", None) or {}
    kept, trained = split_training_items(items, card, dataset)
    if options.include_train:
        evaluated, excluded, flagged = list(items), [], trained
    else:
        evaluated, excluded, flagged = kept, trained, []
    if not evaluated:
        if items and excluded:
            raise DatasetError(
                f"{root}: all {len(items)} {dataset.upper()} images are listed as training images in the model card; "
                "nothing left to measure honestly (include_train measures them anyway, flagged)"
            )
        raise DatasetError(f"{root}: no {dataset.upper()} images found ({missing} annotated images are missing)")
    if options.limit is not None:
        evaluated = evaluated[: options.limit]
    flagged_names = {i.name for i in flagged}

    rng = np.random.default_rng(options.seed)
    methods = ("model", *BASELINES) if dataset == "gaicd" else ("model", UNREFINED, *BASELINES)
    settings = cropper.settings
    per_image: list[dict] = []
    decode_ms: list[float] = []
    score_ms: list[float] = []
    total_ms: list[float] = []
    candidate_counts: list[int] = []
    unreadable: list[str] = []
    # GAICD accumulators
    preds: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    mos_list: list[np.ndarray] = []
    # FCDB / FLMS accumulators
    chosen: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    gts: list[np.ndarray] = []
    sizes: list[tuple[float, float]] = []

    loop_start = time.perf_counter()
    for index, item in enumerate(evaluated):
        t0 = time.perf_counter()
        try:
            decoded = cropper.decode(item.path)
        except InputError:  # unreadable / corrupt photo: skipped and counted
            unreadable.append(item.name)
            if progress:
                progress(index + 1, len(evaluated))
            continue
        t1 = time.perf_counter()
        width, height = int(decoded.info.width), int(decoded.info.height)
        if dataset == "gaicd":
            boxes = item.boxes
        elif anchors is None:
            boxes = candidate_boxes(width, height, (FREE,), decoded.label)[0]  # exactly `autocrop crop`'s views
        else:
            boxes = anchors * np.asarray([width, height, width, height], dtype=np.float64)
        t2 = time.perf_counter()
        try:
            scores = cropper.score(decoded, boxes)
        except UsageError as err:  # annotated crops that do not fit their photo
            raise DatasetError(f"{item.name}: candidate crops do not fit the photo ({err})") from None
        t3 = time.perf_counter()
        decode_ms.append((t1 - t0) * 1000)
        score_ms.append((t3 - t2) * 1000)
        total_ms.append((t3 - t0) * 1000)
        candidate_counts.append(len(boxes))

        record: dict = {"name": item.name, "candidates": len(boxes)}
        if item.name in flagged_names:
            record["training_image"] = True
        if dataset == "gaicd":
            preds["model"].append(scores)
            mos_list.append(item.scores)
            for name in BASELINES:
                preds[name].append(baseline_scores(name, boxes, width, height, rng))
            top1 = int(np.argmax(scores))
            record.update(top1_mos=round(float(item.scores[top1]), 4), best_mos=round(float(item.scores.max()), 4))
        else:
            best = np.array([int(np.argmax(scores))])
            grid_box = np.asarray(boxes, dtype=np.float64)[best[0]]
            # exactly what `autocrop crop` writes: the best view (under the face rule), refined, in whole pixels
            top1_box = cropper.choose(decoded, boxes, scores, settings)[0].astype(np.float64)
            chosen["model"].append(top1_box)
            chosen[UNREFINED].append(grid_box)
            for name in BASELINES:
                chosen[name].append(baseline_top1(name, boxes, width, height, rng))
            gts.append(item.gts)
            sizes.append((width, height))
            one = box_metrics([top1_box], [item.gts], [(width, height)])
            record.update(top1=[round(float(v), 1) for v in top1_box], iou=round(one.iou, 4), disp=round(one.disp, 4))
        per_image.append(record)
        if progress:
            progress(index + 1, len(evaluated))
    loop_seconds = time.perf_counter() - loop_start

    measured = len(per_image)
    if measured == 0:
        raise DatasetError(f"{root}: none of the {len(evaluated)} selected images could be decoded")
    if dataset == "gaicd":
        results = {m: gaicd_metrics(preds[m], mos_list).as_dict() for m in methods}
        margin_keys = GAICD_MARGIN_KEYS
    else:
        results = {m: box_metrics(chosen[m], gts, sizes).as_dict() for m in methods}
        margin_keys = BOX_MARGIN_KEYS

    from autocrop import __version__

    return {
        "autocrop_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "split": options.split,
        "data_dir": str(root),
        "candidates": candidate_set,
        "anchors_file": str(anchors_path) if anchors_path else None,
        "seed": options.seed,
        "model": {
            "path": str(getattr(scorer, "weights_path", None) or options.model or "packaged default"),
            "name": card.get("name"),
            "sha256": card.get("sha256"),
            "device": cropper.device,
        },
        "images": {
            "annotated": len(items) + missing,
            "missing": missing,
            "unreadable": len(unreadable),
            "unreadable_names": unreadable,
            "excluded_training": len(excluded),
            "excluded_names": sorted(i.name for i in excluded),
            "included_training": len(flagged_names & {r["name"] for r in per_image}),
            "limit": options.limit,
            "measured": measured,
        },
        "results": results,
        "margins": margins(results, margin_keys),
        "speed": {
            "torch_import_s": round(torch_seconds, 3),
            "model_load_s": round(load_seconds, 3),
            "ms_per_image": _percentiles(total_ms),
            "score_ms": _percentiles(score_ms),
            "decode_ms": _percentiles(decode_ms),
            "images_per_s": round(measured / loop_seconds, 2) if loop_seconds > 0 else None,
            "loop_s": round(loop_seconds, 3),
            "candidates_per_image": round(float(np.mean(candidate_counts)), 1),
            "peak_rss_mib": peak_rss_mib(),
        },
        "machine": machine_info(),
        "per_image": per_image,
    }
