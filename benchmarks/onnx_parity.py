"""ONNX Runtime vs torch on every GAICD and FCDB test photo: score differences, top-k changes, forward time.

    .venv/bin/python benchmarks/onnx_parity.py [--data-dir DIR] [--model FILE] [--threads 1] [--limit N]
                                               [--report parity.json]

Each photo is decoded as ``autocrop crop`` decodes it; both runtimes score (1) the model's GAIC grid of
candidate views and, for GAICD, (2) the annotated crops (what the GAICD benchmark scores). Reported per
dataset: the worst absolute score difference (scores are standardised MOS), the photos whose top-1 or
top-3 candidate (by score) changes, the photos whose final crops change (``Cropper.analyze`` of the free
grid and of 16:9, top 3, refined: what ``autocrop crop`` writes), and the per-photo forward time of each
runtime (``score`` of the grid, preprocessing included; median and 90th percentile; both runtimes with
``--threads`` intra-op threads, measured alternately on the same photo). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def _top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _timed(scorer: Any, image: Any, boxes: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = scorer.score(image, boxes)
    return scores, time.perf_counter() - start


def _photos(data_root: Path, limit: int | None) -> dict[str, list[tuple[str, Path, np.ndarray | None]]]:
    from autocrop.data.fcdb import load_fcdb
    from autocrop.data.gaicd import load_gaicd

    gaicd, _ = load_gaicd(data_root / "GAICD", "test")
    fcdb, _ = load_fcdb(data_root / "FCDB", "test", with_pairs=False)
    return {
        "gaicd": [(item.name, item.path, item.boxes) for item in gaicd][:limit],
        "fcdb": [(item.name, item.path, None) for item in fcdb][:limit],
    }


def compare(cropper_onnx: Any, cropper_torch: Any, photos: list[tuple[str, Path, np.ndarray | None]]) -> dict[str, Any]:
    """Parity and timing figures of one dataset."""
    from autocrop.candidates import grid_candidates

    worst, worst_annotated, worst_name = 0.0, 0.0, ""
    top1, top3, crops_changed = [], [], []
    times: dict[str, list[float]] = {"onnx": [], "torch": []}
    for index, (name, path, annotated) in enumerate(photos):
        decoded = cropper_torch.decode(path)
        image = decoded.image
        grid = grid_candidates(image.width, image.height)
        order = ("onnx", "torch") if index % 2 == 0 else ("torch", "onnx")
        scores: dict[str, np.ndarray] = {}
        for runtime in order:
            scorer = (cropper_onnx if runtime == "onnx" else cropper_torch).scorer
            scores[runtime], seconds = _timed(scorer, image, grid)
            times[runtime].append(seconds)
        difference = float(np.abs(scores["onnx"] - scores["torch"]).max())
        if difference > worst:
            worst, worst_name = difference, name
        if _top(scores["onnx"], 1) != _top(scores["torch"], 1):
            top1.append(name)
        if _top(scores["onnx"], 3) != _top(scores["torch"], 3):
            top3.append(name)
        if annotated is not None:
            boxes = (annotated / np.float32(decoded.scale)).astype(np.float32)
            pair = [c.scorer.score(image, boxes) for c in (cropper_onnx, cropper_torch)]
            worst_annotated = max(worst_annotated, float(np.abs(pair[0] - pair[1]).max()))
        for ratio in (None, "16:9"):
            chosen = [c._analyze(decoded, c.settings_for(ratio=ratio, top=3)).crops
                      for c in (cropper_onnx, cropper_torch)]
            if [c.box for c in chosen[0]] != [c.box for c in chosen[1]]:
                crops_changed.append(f"{name} ({ratio or 'grid'})")
    summary = {
        "photos": len(photos),
        "worst_abs_diff_grid": worst,
        "worst_photo": worst_name,
        "top1_changed": top1,
        "top3_changed": top3,
        "final_crops_changed": crops_changed,
        "forward_ms": {
            runtime: {"median": 1000 * statistics.median(values),
                      "p90": 1000 * float(np.percentile(values, 90))} for runtime, values in times.items()
        },
    }
    if any(a is not None for _, _, a in photos):
        summary["worst_abs_diff_annotated"] = worst_annotated
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding GAICD/ and FCDB/")
    parser.add_argument("--model", default=None, help="a .safetensors model (default: the packaged one)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="at most N photos per dataset (default: all)")
    parser.add_argument("--report", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from autocrop import Cropper
    from autocrop.data.locate import default_data_root
    from autocrop.model import load_scorer

    torch.set_num_threads(args.threads)
    root = args.data_dir.expanduser() if args.data_dir else default_data_root()
    onnx_scorer = load_scorer(args.model, runtime="onnx", threads=args.threads)
    torch_scorer = load_scorer(args.model, runtime="torch")
    cropper_onnx, cropper_torch = Cropper(scorer=onnx_scorer), Cropper(scorer=torch_scorer)
    report: dict[str, Any] = {"model": str(torch_scorer.weights_path), "threads": args.threads, "datasets": {}}
    for dataset, photos in _photos(root, args.limit).items():
        report["datasets"][dataset] = compare(cropper_onnx, cropper_torch, photos)
        figures = report["datasets"][dataset]
        ms = figures["forward_ms"]
        print(f"{dataset}: {figures['photos']} photos, worst |onnx - torch| {figures['worst_abs_diff_grid']:.2e} "
              f"(grid), {figures.get('worst_abs_diff_annotated', float('nan')):.2e} (annotated); "
              f"top-1 changed {len(figures['top1_changed'])}, top-3 changed {len(figures['top3_changed'])}, "
              f"final crops changed {len(figures['final_crops_changed'])}; forward median onnx "
              f"{ms['onnx']['median']:.1f} ms, torch {ms['torch']['median']:.1f} ms")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
