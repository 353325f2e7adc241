"""One bench run: quality of the model and of the baselines, plus speed, on one dataset -> a report dict.

The loop decodes each photo once, scores its candidates with the model (one forward pass), ranks the
same candidates with every baseline, and feeds everything through the same metric code
(:mod:`autocrop.bench.metrics`). Training images listed in the model card are excluded (or, with
``include_train``, kept and flagged). See :func:`run_bench`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from autocrop.bench.baselines import BASELINES, baseline_scores, baseline_top1
from autocrop.bench.datasets import DATASETS, load_anchors, load_bench_dataset, split_training_items
from autocrop.bench.metrics import box_metrics, gaicd_metrics
from autocrop.bench.scoring import BenchScorer
from autocrop.errors import DatasetError, InputError

CANDIDATE_SETS = ("grid", "anchors")
GAICD_MARGIN_KEYS = ("acc1_5", "acc5_mean", "acc1_10", "acc10_mean", "srcc", "pcc")
BOX_MARGIN_KEYS = ("iou", "disp")
UNREFINED = "model_unrefined"  # box datasets: the best grid view itself, before refine_boxes
LOWER_IS_BETTER = {"disp"}
CONFIG_KEYS = {"gaicd": "gaicd_dir", "fcdb": "fcdb_dir", "flms": "flms_dir"}

ProgressFn = Callable[[int, int], None]


@dataclass
class BenchOptions:
    """What to measure. ``candidates``: FCDB/FLMS only ('grid' default | 'anchors'); GAICD uses its annotated crops."""

    dataset: str
    data_dir: Path | None = None
    model: Path | None = None
    split: str = "test"
    candidates: str | None = None
    limit: int | None = None
    include_train: bool = False
    seed: int = 0
    threads: int | None = None


# ---------------------------------------------------------------------------------------------
# locating the data
# ---------------------------------------------------------------------------------------------


def _configured_dir(dataset: str) -> tuple[str | None, str | None]:
    """(``<dataset>_dir`` from the config module, its source "env" | "file"), or (None, None) when unset."""
    try:
        from autocrop.config import load_config
    except ImportError:  # a build without the config module
        return None, None
    key = CONFIG_KEYS[dataset]
    config = load_config()  # a broken config file raises a one-line InputError
    value = config.values.get(key)
    if not value:
        return None, None
    return str(value), config.sources.get(key)


def resolve_bench_dir(dataset: str, data_dir: str | Path | None) -> Path:
    """The dataset folder. Precedence (command line > environment > config file > default):

    ``--data-dir`` > ``$AUTOCROP_<NAME>_DIR`` > ``$AUTOCROP_DATA_DIR/<NAME>`` > config file ``<name>_dir``
    > ``../shared/data/<NAME>`` (NAME: GAICD, FCDB, FLMS).
    """
    from autocrop.data.locate import DATA_ENV, resolve_data_dir

    if data_dir is not None:
        return resolve_data_dir(dataset, data_dir)
    configured, source = _configured_dir(dataset)
    if configured and source == "env":
        return resolve_data_dir(dataset, configured)
    if os.environ.get(DATA_ENV):
        return resolve_data_dir(dataset)
    if configured:
        return resolve_data_dir(dataset, configured)
    return resolve_data_dir(dataset)


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


def machine_info() -> dict:
    """Platform, CPU and torch thread facts recorded with every report."""
    import torch

    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
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


def _check_options(options: BenchOptions) -> None:
    if options.dataset not in DATASETS:
        raise InputError(f"unknown dataset {options.dataset!r} (choose {', '.join(DATASETS)})")
    if options.threads is not None and options.threads < 1:
        raise InputError(f"--threads must be >= 1, got {options.threads}")
    if options.limit is not None and options.limit < 1:
        raise InputError(f"--limit must be >= 1, got {options.limit}")
    if options.dataset == "gaicd" and options.candidates is not None:
        raise InputError("--candidates applies to fcdb and flms; GAICD is scored on its annotated candidates")
    if options.candidates is not None and options.candidates not in CANDIDATE_SETS:
        raise InputError(f"unknown candidate set {options.candidates!r} (choose {', '.join(CANDIDATE_SETS)})")


def run_bench(options: BenchOptions, scorer: BenchScorer | None = None, progress: ProgressFn | None = None) -> dict:
    """Measure the model (``scorer``, or loaded from ``options.model``) and the baselines -> report dict.

    Raises :class:`autocrop.errors.AutocropError` subclasses with one-line messages for bad input.
    """
    _check_options(options)
    dataset = options.dataset
    root = resolve_bench_dir(dataset, options.data_dir)
    items, missing = load_bench_dataset(dataset, root, options.split)
    candidate_set = "annotated" if dataset == "gaicd" else (options.candidates or "grid")
    anchors = anchors_path = None
    if candidate_set == "anchors":
        anchors, anchors_path = load_anchors(root)

    if scorer is None:
        scorer = BenchScorer.load(options.model, threads=options.threads)
    card = scorer.card
    kept, trained = split_training_items(items, card, dataset)
    if options.include_train:
        evaluated, excluded, flagged = list(items), [], trained
    else:
        evaluated, excluded, flagged = kept, trained, []
    if not evaluated:
        if items and excluded:
            raise DatasetError(
                f"{root}: all {len(items)} {dataset.upper()} images are listed as training images in the model card; "
                "nothing left to measure honestly (--include-train measures them anyway, flagged)"
            )
        raise DatasetError(f"{root}: no {dataset.upper()} images found ({missing} annotated images are missing)")
    if options.limit is not None:
        evaluated = evaluated[: options.limit]
    flagged_names = {i.name for i in flagged}

    rng = np.random.default_rng(options.seed)
    methods = ("model", *BASELINES) if dataset == "gaicd" else ("model", UNREFINED, *BASELINES)
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

    from autocrop.engine import FREE, Engine

    grid_engine = Engine()  # candidates and final boxes exactly as `autocrop crop` makes them (loads no model)
    loop_start = time.perf_counter()
    for index, item in enumerate(evaluated):
        t0 = time.perf_counter()
        try:
            decoded = scorer.decode(item.path)
        except InputError:  # unreadable / corrupt photo: skipped and counted
            unreadable.append(item.name)
            if progress:
                progress(index + 1, len(evaluated))
            continue
        t1 = time.perf_counter()
        width, height = decoded.width, decoded.height
        if dataset == "gaicd":
            boxes = item.boxes
        elif candidate_set == "grid":
            boxes = grid_engine.candidates(width, height, [FREE], item.path)[0]  # exactly `autocrop crop`'s views
        else:
            boxes = anchors * np.asarray([width, height, width, height], dtype=np.float64)
        t2 = time.perf_counter()
        scores = scorer.score(decoded, boxes)
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
            top1 = np.array([int(np.argmax(scores))])
            grid_box = np.asarray(boxes, dtype=np.float64)[top1[0]]
            # exactly what `autocrop crop` writes: the best view, refined, in whole pixels
            top1_box = grid_engine.final_boxes(boxes, scores, top1, width, height, None)[0].astype(np.float64)
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
            "path": str(scorer.weights_path or options.model or "packaged default"),
            "name": card.get("name"),
            "sha256": card.get("sha256"),
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
            "torch_import_s": round(scorer.torch_import_seconds, 3),
            "model_load_s": round(scorer.load_seconds, 3),
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
