"""What face detection and the face rule cost per photo (median over N photos, one thread).

    AUTOCROP_DATA_DIR=../shared/data python benchmarks/faces_speed.py --photos 100

Photos: the first N/2 GAICD and N/2 FCDB photos (sorted by name), each decoded once as ``autocrop crop``
decodes it. Reported: the detector alone on the reduced image (preprocessing, onnxruntime with one
intra-op thread, decoding, NMS: :meth:`YuNetDetector.detect`), and ``Cropper.analyze`` for the five ratios
1:1, 16:9, 4:5, 9:16, free with faces on and off (torch with ``--threads``), medians in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from autocrop.cropper import Cropper
from autocrop.settings import CropSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("AUTOCROP_DATA_DIR", "../shared/data")))
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    half = args.photos // 2
    paths = (sorted((args.data / "GAICD" / "images").glob("*/*.jpg"))[:half]
             + sorted((args.data / "FCDB" / "data").glob("*.jpg"))[: args.photos - half])
    if not paths:
        raise SystemExit(f"no photos under {args.data}")
    cropper = Cropper(threads=args.threads)
    decoded = [cropper.decode(p) for p in paths]
    detector = cropper.detector
    detector.detect(decoded[0].image, decoded[0].scale)  # open the session outside the timing
    detect_ms = []
    for d in decoded:
        t0 = time.perf_counter()
        detector.detect(d.image, d.scale)
        detect_ms.append((time.perf_counter() - t0) * 1000)
    settings = CropSettings.build(ratio="1:1,16:9,4:5,9:16,free")
    totals: dict[str, list[float]] = {"on": [], "off": []}
    for d in decoded:
        for name, faces in (("off", False), ("on", True)):
            t0 = time.perf_counter()
            cropper.analyze(d, settings.with_(faces=faces))
            totals[name].append((time.perf_counter() - t0) * 1000)
    sizes = sorted({d.image.size for d in decoded}, key=lambda s: -s[0] * s[1])
    print(f"{len(paths)} photos; reduced images up to {sizes[0][0]}x{sizes[0][1]} px; cpus {os.cpu_count()}")
    print(f"detection: median {np.median(detect_ms):.2f} ms, p90 {np.percentile(detect_ms, 90):.2f} ms")
    for name, values in totals.items():
        print(f"analyze, 5 ratios, faces {name}: median {np.median(values):.1f} ms")
    print(f"faces on - off: median {np.median(np.subtract(totals['on'], totals['off'])):.1f} ms")


if __name__ == "__main__":
    main()
