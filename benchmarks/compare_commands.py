"""Interleaved timing of whole commands: the way to compare two versions on a machine whose speed drifts.

    python benchmarks/compare_commands.py 25 "old=python /tmp/old/run.py small.jpg --top 3 --out o" \
                                            "new=autocrop small.jpg --top 3 --out o --overwrite"

Runs every labelled command once per round (round 0 warms the page cache and is not counted), RUNS rounds,
so each command sees the same minutes of the machine; prints the median, mean and minimum wall seconds per
label. Commands run with bytecode caching on (see ``crop_speed.py``) and must exit 0. This 2-core VM's speed
drifted by up to 35 % within an hour: sequential medians taken minutes apart are not comparable.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit() or any("=" not in case for case in argv[1:]):
        print("\n".join(__doc__.strip().splitlines()[2:4]), file=sys.stderr)
        return 2
    runs = int(argv[0])
    cases = [case.split("=", 1) for case in argv[1:]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    walls: dict[str, list[float]] = {label: [] for label, _ in cases}
    for round_ in range(runs + 1):
        for label, command in cases:
            start = time.perf_counter()
            proc = subprocess.run(shlex.split(command), capture_output=True, env=env)
            wall = time.perf_counter() - start
            if proc.returncode:
                detail = proc.stderr.decode(errors="replace")[-400:]
                print(f"{label}: exit {proc.returncode}: {detail}", file=sys.stderr)
                return 1
            if round_:
                walls[label].append(wall)
    for label, values in walls.items():
        print(f"{label:12s} median {statistics.median(values):.3f} s  mean {statistics.mean(values):.3f} s  "
              f"min {min(values):.3f} s  ({runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
