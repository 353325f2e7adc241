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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from autocrop.bench.baselines import BASELINES, baseline_scores, baseline_top1
from autocrop.bench.datasets import DATASETS, load_anchors, load_bench_dataset, split_training_items
from autocrop.bench.machine import machine_info, peak_rss_mib, percentiles
from autocrop.bench.measure import measure
from autocrop.bench.metrics import box_metrics, diversity_metrics, gaicd_metrics
from autocrop.candidates import candidate_boxes
from autocrop.cropper import Cropper
from autocrop.errors import AutocropError, DatasetError, InputError, ModelError, UsageError
from autocrop.ratios import FREE
from autocrop.settings import DEFAULT_DEVICE, DEFAULT_RUNTIME, check_device, check_runtime
from autocrop.views import is_set_model

CANDIDATE_SETS = ("grid", "anchors")
SPLITS = ("test", "train")
GAICD_MARGIN_KEYS: tuple[str, ...] = ("acc1_5", "acc5_mean", "acc1_10", "acc10_mean", "srcc", "pcc")
BOX_MARGIN_KEYS = ("iou", "disp")
UNREFINED = "model_unrefined"  # box datasets: the best grid view itself, before refinement
REFERENCE = "reference"  # the reference model measured in the same run (BenchOptions.reference)
LOWER_IS_BETTER = {"disp"}

ProgressFn = Callable[[int, int], None]


@dataclass
class BenchOptions:
    """What to measure.

    dataset:    'gaicd', 'fcdb' or 'flms'.
    data_dir:   the dataset's folder; else ``gaicd_dir`` / ``fcdb_dir`` / ``flms_dir`` for that dataset;
                else ``$AUTOCROP_DATA_DIR/<NAME>`` (see :func:`resolve_bench_dir`).
    model:      a ``.safetensors`` model file, None for the packaged default. device: auto, cpu, cuda, ...
    runtime:    auto (default: ONNX Runtime on the CPU), onnx or torch, for the model and the reference.
    candidates: FCDB/FLMS only ('grid' default | 'anchors'); GAICD uses its annotated crops.
    threads:    torch intra-op threads (None: torch's own setting).
    reference:  another model measured in the same run on the same photos (``grid``: the packaged grid model;
                ``set``; or a file): a ``reference`` row beside the model and the baselines (not timed).
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
    runtime: str | None = None
    gaicd_dir: Path | None = None
    fcdb_dir: Path | None = None
    flms_dir: Path | None = None
    reference: str | Path | None = None


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
    if options.runtime is not None:
        check_runtime(options.runtime)


def load_cropper(options: BenchOptions) -> tuple[Cropper, float, float]:
    """A :class:`Cropper` with ``options.model`` loaded on ``options.device`` -> (cropper, torch import s, load s).

    The torch import is timed apart from the model load. A file that is not a model becomes a one-line
    :class:`ModelError`, never a traceback.
    """
    start = time.perf_counter()
    import torch  # noqa: F401 - imported here so that its cost is measured apart from the model load

    torch_seconds = time.perf_counter() - start
    cropper = Cropper(options.model, options.device or DEFAULT_DEVICE, runtime=options.runtime or DEFAULT_RUNTIME,
                      threads=options.threads)
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


def load_reference(options: BenchOptions) -> Cropper | None:
    """The reference model of ``options.reference`` (``grid`` / ``set``: a packaged model, or a file), loaded."""
    if options.reference is None:
        return None
    reference = Cropper(options.reference, options.device or DEFAULT_DEVICE,
                        runtime=options.runtime or DEFAULT_RUNTIME, threads=options.threads)
    _load(reference, Path(str(options.reference)))
    return reference


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
    reference = load_reference(options)
    if reference is not None:
        methods = (*methods, REFERENCE)
    settings = cropper.settings
    set_model = is_set_model(scorer)
    tops: list[np.ndarray] = []  # per image: the top-3 free crops [<= 3, 4] pixels (diversity)
    reference_tops: list[np.ndarray] = []
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
            done = measure(cropper, decoded, boxes, dataset != "gaicd", settings)
            extra = measure(reference, reference.decode(item.path), boxes, dataset != "gaicd", settings) \
                if reference is not None else None
        except UsageError as err:  # annotated crops that do not fit their photo
            raise DatasetError(f"{item.name}: candidate crops do not fit the photo ({err})") from None
        decode_ms.append((t1 - t0) * 1000)
        score_ms.append(done.score_s * 1000)
        total_ms.append((t1 - t0 + done.views_s if done.scores is None else t2 - t0 + done.score_s) * 1000)
        candidate_counts.append(done.count)

        record: dict = {"name": item.name, "candidates": len(boxes)}
        if item.name in flagged_names:
            record["training_image"] = True
        if dataset == "gaicd":
            assert done.scores is not None
            preds["model"].append(done.scores)
            if extra is not None and extra.scores is not None:
                preds[REFERENCE].append(extra.scores)
            mos_list.append(item.scores)
            for name in BASELINES:
                preds[name].append(baseline_scores(name, boxes, width, height, rng))
            top1 = int(np.argmax(done.scores))
            record.update(top1_mos=round(float(item.scores[top1]), 4), best_mos=round(float(item.scores.max()), 4))
        else:
            assert done.top is not None and done.unrefined is not None
            tops.append(done.top)
            top1_box = done.top[0]
            chosen["model"].append(top1_box)
            chosen[UNREFINED].append(done.unrefined)
            if extra is not None and extra.top is not None:
                chosen[REFERENCE].append(extra.top[0])
                reference_tops.append(extra.top)
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
            "arch": "set" if set_model else "grid",
            "runtime": getattr(scorer, "runtime", None),
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
        "diversity": {"model": diversity_metrics(tops), "crops": "top 3, free ratio, as autocrop crop --top 3",
                      **({REFERENCE: diversity_metrics(reference_tops)} if reference_tops else {})}
        if tops else None,
        "reference": None if reference is None else {
            "path": str(getattr(reference.scorer, "weights_path", None) or options.reference),
            "arch": "set" if is_set_model(reference.scorer) else "grid",
            "runtime": getattr(reference.scorer, "runtime", None),
        },
        "margins": margins(results, margin_keys),
        "speed": {
            "torch_import_s": round(torch_seconds, 3),
            "model_load_s": round(load_seconds, 3),
            "ms_per_image": percentiles(total_ms),
            "score_ms": percentiles(score_ms),
            "decode_ms": percentiles(decode_ms),
            "images_per_s": round(measured / loop_seconds, 2) if loop_seconds > 0 else None,
            "loop_s": round(loop_seconds, 3),
            "candidates_per_image": round(float(np.mean(candidate_counts)), 1),
            "peak_rss_mib": peak_rss_mib(),
        },
        "machine": machine_info(),
        "per_image": per_image,
    }
