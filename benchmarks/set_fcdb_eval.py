"""Evaluate a set model on FCDB *test* (evaluation only: never used to choose a model or a setting).

    python benchmarks/set_fcdb_eval.py runs/set/best.safetensors [--limit N] [--grid]

Prints top-1 IoU / Disp (the best-validity crop, in whole pixels of the photo), the diversity of the top-3
(mean pairwise IoU of the top 3 after non-maximum suppression at IoU 0.7; lower = more varied) and the
time of decode + one forward per photo. ``--grid`` measures the packaged grid model the same way
(``Cropper.analyze(top=3)``: its top-1 crop and the diversity of its 3 crops; decode + score of the
grid candidates). One torch thread (the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def pairwise_mean_iou(boxes: np.ndarray) -> float:
    """Mean IoU over the pairs of ``boxes`` [K, 4] (1.0 for a single box)."""
    from autocrop.geometry import box_iou

    if len(boxes) < 2:
        return 1.0
    iou = box_iou(boxes, boxes)
    return float(iou[np.triu_indices(len(boxes), 1)].mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--grid", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from autocrop import Cropper
    from autocrop.bench.datasets import load_bench_dataset
    from autocrop.bench.metrics import box_metrics
    from autocrop.candidates import candidate_boxes
    from autocrop.data.locate import resolve_data_dir
    from autocrop.model.set_scorer import diverse, load_set_scorer
    from autocrop.ratios import FREE

    items, missing = load_bench_dataset("fcdb", resolve_data_dir("fcdb"), "test")
    items = items[: args.limit] if args.limit else items
    scorer = load_set_scorer(args.model)
    cropper = Cropper(runtime="torch", threads=1)
    chosen, gts, sizes, spread, ms = [], [], [], [], []
    g_chosen, g_spread, g_ms = [], [], []
    for item in items:
        t0 = time.perf_counter()
        decoded = cropper.decode(item.path)
        boxes, validity = scorer.propose(decoded.image)
        ms.append((time.perf_counter() - t0) * 1000)
        w, h = decoded.info.width, decoded.info.height
        full = boxes / np.asarray([decoded.image.width, decoded.image.height] * 2) * np.asarray([w, h, w, h])
        full = np.round(full)
        chosen.append(full[0])
        spread.append(pairwise_mean_iou(full[diverse(full, validity, 3, 0.7)]))
        gts.append(item.gts)
        sizes.append((w, h))
        if args.grid:
            t0 = time.perf_counter()
            decoded = cropper.decode(item.path)
            cropper.score(decoded, candidate_boxes(w, h, (FREE,), decoded.label)[0])
            g_ms.append((time.perf_counter() - t0) * 1000)
            result = cropper.analyze(decoded, top=3)
            grid_boxes = np.asarray([c.box for c in result.crops], np.float64)
            g_chosen.append(grid_boxes[0])
            g_spread.append(pairwise_mean_iou(grid_boxes))
    m = box_metrics(chosen, gts, sizes)
    print(f"set  {args.model}: FCDB test n={m.n_images} (missing {missing}) IoU {m.iou:.4f} Disp {m.disp:.4f} "
          f"top3 mean pairwise IoU {np.mean(spread):.3f}  decode+forward median {np.median(ms):.1f} ms")
    if args.grid:
        g = box_metrics(g_chosen, gts, sizes)
        print(f"grid packaged (torch): IoU {g.iou:.4f} Disp {g.disp:.4f} top3 mean pairwise IoU "
              f"{np.mean(g_spread):.3f}  decode+score median {np.median(g_ms):.1f} ms")


if __name__ == "__main__":
    main()
