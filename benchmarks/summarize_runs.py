"""Summarise training runs: validation metrics of each run's LAST epoch (reads RUN/last.json).

The last epoch, not the best one, is reported: picking the best epoch on the validation fold would
make the fold's figures optimistic. The packaged model is trained for a fixed number of epochs too.

    python benchmarks/summarize_runs.py runs/abl0_*          # markdown table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("acc1_5", "acc5", "acc1_10", "acc10", "srcc", "pcc", "iou", "disp")


def main(paths: list[str]) -> None:
    """Print a markdown table: one row per run folder that holds last.json."""
    print("| run | epoch | " + " | ".join(KEYS) + " |")
    print("|---|---:|" + "---:|" * len(KEYS))
    for path in paths:
        progress_file = Path(path) / "last.json"
        if not progress_file.is_file():
            continue
        last = json.loads(progress_file.read_text())["history"][-1]
        v = last["metrics"]
        cells = [f"{v[k]:.3f}" if k in v else "" for k in KEYS]
        print(f"| {Path(path).name} | {last['epoch'] + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
