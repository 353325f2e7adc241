"""How the refinement of the chosen view (``autocrop.select.refine_boxes``) moves FCDB IoU.

    .venv/bin/python benchmarks/refine_sweep.py [--model FILE ...] [--threads 1] [--limit N]

For each model (default: the packaged one), scores the crop command's grid candidates once on the FCDB
validation images (10 % of FCDB train, never test) and on FCDB test, then reports the mean IoU / Disp of
the top-1 crop for: the unrefined best candidate, and refinement at each temperature x neighbourhood
IoU in the sweep. The constants in ``autocrop/select.py`` are to be chosen on the validation rows;
the test rows show whether the choice carries over. Needs FCDB under $AUTOCROP_DATA_DIR or ../shared/data.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from autocrop.cropper import Cropper

TEMPERATURES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
MIN_IOUS = (0.0, 0.5, 0.7)


def score_split(cropper: Cropper, items: list) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]]:
    """(boxes [N, 4], scores [N], ground truths [G, 4], (width, height)) per image, the crop command's candidates."""
    from autocrop.candidates import candidate_boxes
    from autocrop.ratios import FREE

    out = []
    for item in items:
        decoded = cropper.decode(item.path)
        width, height = decoded.info.width, decoded.info.height
        boxes = candidate_boxes(width, height, (FREE,), decoded.label)[0]
        out.append((boxes.astype(np.float64), cropper.score(decoded, boxes).astype(np.float64), np.asarray(item.gts),
                    (width, height)))
    return out


def top1_metrics(scored: list, temperature: float | None, min_iou: float) -> tuple[float, float]:
    """Mean IoU and Disp of the refined best view (``temperature`` None: the best candidate itself)."""
    from autocrop.bench.metrics import box_metrics
    from autocrop.select import refine_boxes

    chosen = []
    for boxes, scores, _, _ in scored:
        best = np.array([int(np.argmax(scores))])
        if temperature is None:
            chosen.append(boxes[best[0]])
        else:
            chosen.append(refine_boxes(boxes, scores, best, temperature=temperature, min_iou=min_iou)[0])
    result = box_metrics(chosen, [s[2] for s in scored], [s[3] for s in scored])
    return result.iou, result.disp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="*", default=[None], help="weights files (default: the packaged model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split (a quick look)")
    args = parser.parse_args()

    from autocrop.bench.datasets import load_fcdb_boxes
    from autocrop.cropper import Cropper
    from autocrop.data import resolve_data_dir
    from autocrop.train.datasets import is_fcdb_validation

    root = resolve_data_dir("fcdb", None)
    train, _ = load_fcdb_boxes(root, "train")
    test, _ = load_fcdb_boxes(root, "test")
    splits = {"validation": [i for i in train if is_fcdb_validation(i.name)][: args.limit], "test": test[: args.limit]}
    for model in args.model:
        cropper = Cropper(model, threads=args.threads)
        print(f"model {model or 'packaged default'}")
        for split, items in splits.items():
            scored = score_split(cropper, items)
            iou, disp = top1_metrics(scored, None, 0.0)
            print(f"  {split} ({len(scored)} images): unrefined IoU {iou:.4f} Disp {disp:.4f}")
            for temperature in TEMPERATURES:
                cells = []
                for min_iou in MIN_IOUS:
                    iou, disp = top1_metrics(scored, temperature, min_iou)
                    cells.append(f"IoU>={min_iou}: {iou:.4f} / {disp:.4f}")
                print(f"    T {temperature:<4}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
