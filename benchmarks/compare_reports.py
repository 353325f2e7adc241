"""Compare two ``autocrop bench --report`` files: are the figures and every per-image result identical?

    python benchmarks/compare_reports.py before.json after.json [more pairs...]

Prints, per pair, whether ``results`` are identical and how many ``per_image`` entries match, and exits 1
when anything differs (a redesign that claims "no behaviour change" shows 100 % here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def compare(before: Path, after: Path) -> bool:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    same = a["results"] == b["results"]
    old = {p["name"]: p for p in a["per_image"]}
    new = {p["name"]: p for p in b["per_image"]}
    differing = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    model = {k: round(v, 4) for k, v in b["results"]["model"].items() if isinstance(v, float)}
    print(f"{before.name} vs {after.name}: results identical {same}; per-image identical "
          f"{len(old) - len(differing)}/{len(old)}; model {model}")
    for name in differing[:5]:
        print(f"  {name}: {old.get(name)} -> {new.get(name)}")
    return same and not differing


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    pairs = zip(argv[0::2], argv[1::2])
    return 0 if all([compare(Path(x), Path(y)) for x, y in pairs]) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
