"""Throughput of ``autocrop batch`` vs. ``autocrop crop`` once per file, on 12-megapixel JPEGs.

    .venv/bin/python benchmarks/batch_speed.py                 # 100 photos, 3 batch runs, crop on 10 files
    .venv/bin/python benchmarks/batch_speed.py --count 50 --runs 1 --baseline 5   # quick look

Builds ``--count`` JPEGs of 4000x3000 px (real photos from ``../shared/data/FCDB/data`` or
``$AUTOCROP_DATA_DIR/FCDB/data``, upscaled, quality 92) in a temporary folder, then measures wall time of

* ``autocrop batch SRC --out OUT --ratio 16:9`` (fresh OUT each run; default quality), median over ``--runs``,
  with the CPU it used (user + system seconds of the whole process tree / wall seconds / cores: 100 % = every
  core busy the whole time);
* ``autocrop crop FILE --ratio 16:9 --out OUT`` once per file on the first ``--baseline`` files (one process per
  file, as a shell loop would do), reported as images/s;
* a re-run of the finished batch (resume: nothing to do, no model loaded).

The model is ``--model`` or the packaged default; when the packaged default is missing, an untrained model of the
same architecture is written (same compute, meaningless crops). Prints a table and exits 1 when a floor is missed
(>= 10 images/s, >= 3x the per-file rate). Commands run with bytecode caching on (as an installation has it; see
``crop_speed.py``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    env = os.environ.get("AUTOCROP_DATA_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def build_photos(folder: Path, count: int, size: tuple[int, int] = (4000, 3000)) -> list[Path]:
    """``count`` JPEGs of ``size`` px made from distinct real photos (landscape; portrait ones are rotated)."""
    from PIL import Image

    sources = sorted((data_root() / "FCDB" / "data").glob("*.jpg"))
    if not sources:
        sources = sorted((data_root() / "GAICD" / "images" / "test").glob("*.jpg"))
    if not sources:
        sys.exit(f"no photos under {data_root()} (set AUTOCROP_DATA_DIR)")
    made = []
    for i in range(count):
        src = sources[i % len(sources)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            if im.height > im.width:
                im = im.transpose(Image.Transpose.ROTATE_90)
            big = im.resize(size, Image.Resampling.BICUBIC)
        sub = folder / f"roll{i // 50:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"photo_{i:04d}.jpg"
        big.save(path, quality=92)
        made.append(path)
    return made


def model_file(work: Path, given: str | None) -> str | None:
    if given:
        return given
    from autocrop.model.weights import PACKAGED_WEIGHTS

    if PACKAGED_WEIGHTS.is_file():
        return None
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())  # training layout, as `autocrop train` saves it
    path = work / "untrained.safetensors"
    save_weights(path, net.state_dict(), net.config, {"name": "untrained (benchmark)", "training_images": []})
    print("note: packaged model missing; using an untrained model of the same architecture", file=sys.stderr)
    return str(path)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    return timed_cpu(cmd, env)[0]


def timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command and every process it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=10, help="files for the per-file `autocrop crop` baseline")
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    exe = str(Path(sys.executable).with_name("autocrop"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    work = Path(tempfile.mkdtemp(prefix="autocrop-batch-bench-"))
    try:
        t0 = time.perf_counter()
        photos = build_photos(work / "album", args.count)
        print(f"built {len(photos)} JPEGs of 4000x3000 in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        model = model_file(work, args.model)
        common = ["--ratio", "16:9"] + (["--model", model] if model else [])
        batch_times, batch_cpu = [], []
        for run in range(args.runs):
            out = work / f"out{run}"
            cmd = [exe, "batch", str(work / "album"), "--out", str(out), "--quiet", *common]
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            wall, cpu = timed_cpu(cmd, env)
            batch_times.append(wall)
            batch_cpu.append(cpu / wall / (os.cpu_count() or 1))
            n_out = sum(1 for p in out.rglob("*.jpg"))
            if n_out != len(photos):
                sys.exit(f"batch wrote {n_out} crops for {len(photos)} photos")
            print(f"batch run {run + 1}: {batch_times[-1]:.1f} s", file=sys.stderr)
        resume_t = timed([exe, "batch", str(work / "album"), "--out", str(work / "out0"), "--quiet", *common], env)
        base = photos[: args.baseline]
        t0 = time.perf_counter()
        for path in base:
            timed([exe, "crop", str(path), "--out", str(work / "crop_out"), *common], env)
        crop_t = time.perf_counter() - t0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    batch_med = statistics.median(batch_times)
    batch_rate = len(photos) / batch_med
    crop_rate = len(base) / crop_t if base else float("nan")
    print()
    print(f"| what (2 cores: {os.cpu_count()} visible) | images | seconds | images/s |")
    print("| --- | ---: | ---: | ---: |")
    batch_what = f"autocrop batch --ratio 16:9 (median of {args.runs})"
    print(f"| {batch_what} | {len(photos)} | {batch_med:.1f} | {batch_rate:.2f} |")
    if base:
        print(f"| autocrop crop once per file | {len(base)} | {crop_t:.1f} | {crop_rate:.2f} |")
    print(f"| batch re-run, resume (nothing to do) | {len(photos)} | {resume_t:.2f} | - |")
    runs = ", ".join(f"{t:.1f}" for t in batch_times)
    print(f"\nbatch / per-file crop: {batch_rate / crop_rate:.1f}x; batch runs: {runs} s")
    print(f"batch CPU use: {statistics.median(batch_cpu) * 100:.0f} % of {os.cpu_count()} cores (median)")
    ok = batch_rate >= 10 and (not base or batch_rate >= 3 * crop_rate)
    print("floors (>= 10 img/s, >= 3x per-file):", "met" if ok else "MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
