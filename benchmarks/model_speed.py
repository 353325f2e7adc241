"""Per-photo cost of the two model families: decode + one forward pass, on each runtime, one thread.

    python benchmarks/model_speed.py [--model-set runs/set/final.safetensors] [--photos 40] [--repeat 3]

Grid: :meth:`Cropper.decode` + ``scorer.score`` of the photo's free-ratio candidates (the candidates are made
before the clock starts); set: :meth:`Cropper.decode` + ``scorer.propose`` (no candidates at all). FCDB photos
from ``$AUTOCROP_DATA_DIR/FCDB`` (else the packaged example photo). Prints medians in ms, one line per model
and runtime. ``--model-set`` defaults to the packaged set model, else an untrained one (speed is the same).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def untrained_set_file(folder: Path) -> Path:
    import torch

    from autocrop.model.set_config import SetModelConfig
    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_weights import save_set_weights

    torch.manual_seed(0)
    path = folder / "untrained_set.safetensors"
    save_set_weights(path, SetCropNet(SetModelConfig()).state_dict(), SetModelConfig(), {"name": "untrained"})
    return path


def measure(model: str | Path | None, runtime: str, photos: list[Path], repeat: int) -> tuple[float, float, float]:
    """(median decode ms, median forward ms, median total ms) over photos x repeat."""
    import numpy as np

    from autocrop import Cropper
    from autocrop.candidates import candidate_boxes
    from autocrop.ratios import FREE

    cropper = Cropper(model, runtime=runtime, threads=1)
    scorer = cropper.scorer
    decode, forward = [], []
    for _ in range(repeat):
        for photo in photos:
            t0 = time.perf_counter()
            decoded = cropper.decode(photo)
            t1 = time.perf_counter()
            if hasattr(scorer, "propose"):
                scorer.propose(decoded.image)
                t2 = time.perf_counter()
            else:
                boxes = candidate_boxes(decoded.info.width, decoded.info.height, (FREE,))[0]
                scaled = boxes.astype(np.float32) / np.float32(decoded.scale)
                t1b = time.perf_counter()
                scorer.score(decoded.image, scaled)
                t2 = time.perf_counter() - (t1b - t1)
            decode.append((t1 - t0) * 1000)
            forward.append((t2 - t1) * 1000)
    total = [a + b for a, b in zip(decode, forward)]
    return statistics.median(decode), statistics.median(forward), statistics.median(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-set", default=None)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    root = Path(os.environ.get("AUTOCROP_DATA_DIR", "../shared/data")) / "FCDB"
    photos = sorted(root.rglob("*.jpg"))[: args.photos]
    if not photos:
        from autocrop.examples import example_photo

        photos = [Path(example_photo())]
    with tempfile.TemporaryDirectory() as folder:
        set_model: str | Path = args.model_set or ""
        if not set_model:
            from autocrop.model.resolve import PACKAGED_SET_WEIGHTS

            set_model = PACKAGED_SET_WEIGHTS if PACKAGED_SET_WEIGHTS.is_file() else untrained_set_file(Path(folder))
        for name, model in (("grid", None), ("set", set_model)):
            for runtime in ("onnx", "torch"):
                d, f, t = measure(model, runtime, photos, args.repeat)
                print(f"{name:4s} {runtime:5s} decode {d:6.1f} ms  forward {f:6.1f} ms  total {t:6.1f} ms  "
                      f"({len(photos)} photos x {args.repeat})")


if __name__ == "__main__":
    main()
