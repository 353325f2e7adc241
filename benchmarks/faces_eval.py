"""How often top-1 crops cut a face or leave the main face out, before (faces off) and after (faces on).

    AUTOCROP_DATA_DIR=../shared/data python benchmarks/faces_eval.py --threads 1 --json /tmp/faces_eval.json

Every photo of GAICD (``images/*/*.jpg``) and FCDB (``data/*.jpg``, train and test) is decoded once, as
``autocrop crop`` does; the packaged detector runs on it (its time is recorded: median over the first 100
photos and over all). For each photo with at least one face, and each ratio of 1:1, 16:9, 4:5, 9:16 and
free, the candidates of ``autocrop crop`` (grid / exact-ratio views, plus the rule's extra views) are scored
in one forward pass, and the top-1 crop is chosen twice with :func:`autocrop.faces.apply.choose`:

* before: faces off, from the grid views only (what autocrop did before the rule);
* after: faces on, from every view (what ``autocrop crop`` now writes).

Both are judged with the rule's own geometry (:mod:`autocrop.faces.rules`: grown faces, 5 % tolerance; a face
larger than the largest crop of the ratio by its core, :func:`autocrop.faces.rules.for_ratio`; ``too large``
counts the photos where that happens):
``cut`` = the crop cuts at least one face; ``main out`` = a main face exists and is not wholly inside.
Floors (after): ``avoidable`` = it cuts although some view of that ratio holds the main face (if any) and
cuts none (the rule's floor); ``any clean`` = it cuts although some view cuts none, even one that leaves the
main face out (the rule prefers the main face: see :mod:`autocrop.faces.rules`); ``fits+out`` = the main
face is out although some view holds it and cuts no face. ``fits geometrically`` counts photos
whose grown main face is no larger than the largest crop of the ratio (a view may still have to cut another
face to hold it). ``score drop`` = model score of the before crop's view minus the after crop's, in standard
deviations of that ratio's scores (median over the photos whose choice changed).

Not a timed test: a measurement for docs/faces.md. Runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from autocrop.candidates import candidate_boxes
from autocrop.cropper import Cropper
from autocrop.faces import rules
from autocrop.faces.apply import choose, photo_subject, with_extra_candidates
from autocrop.settings import CropSettings

RATIOS = ("1:1", "16:9", "4:5", "9:16", "free")


def photos(root: Path) -> list[Path]:
    """Every GAICD and FCDB photo under ``root`` (sorted per dataset)."""
    return sorted((root / "GAICD" / "images").glob("*/*.jpg")) + sorted((root / "FCDB" / "data").glob("*.jpg"))


def judge(box: np.ndarray, subject: rules.Subject) -> tuple[bool, bool]:
    """(cuts a face, leaves the main face out) for one crop."""
    inside, cut = rules.face_states(np.asarray(box, dtype=np.float64).reshape(1, 4), subject)
    return bool(cut.any()), bool(subject.main >= 0 and not inside[0, subject.main])


def evaluate(paths: list[Path], cropper: Cropper, limit: int | None) -> dict:
    settings = CropSettings.build(ratio=",".join(RATIOS))
    off = settings.with_(faces=False)
    counters = ("photos", "with_main", "before_cut", "after_cut", "before_main_out", "after_main_out",
                "avoidable_cut_main_in", "avoidable_cut", "main_out_fits", "fits_geometrically",
                "main_out_fits_geometrically", "changed", "warnings", "too_large")
    stats: dict[str, dict] = {r: {**dict.fromkeys(counters, 0), "score_drop": []} for r in RATIOS}
    detect_ms: list[float] = []
    candidates_before: list[int] = []
    candidates_after: list[int] = []
    with_faces = 0
    for n, path in enumerate(paths[:limit]):
        decoded = cropper.decode(path)
        t0 = time.perf_counter()
        faces = cropper.detector.detect(decoded.image, decoded.scale)
        detect_ms.append((time.perf_counter() - t0) * 1000)
        if not faces:
            continue
        with_faces += 1
        width, height = decoded.info.width, decoded.info.height
        subject = photo_subject(faces, width, height, settings, decoded.label)
        assert subject is not None
        grid, groups = candidate_boxes(width, height, settings.ratios, decoded.label)
        exact = [spec.resolve(width, height) for spec in settings.ratios]
        boxes, all_groups = with_extra_candidates(grid, groups, subject, exact, list(RATIOS), decoded.label)
        scores = cropper.score(decoded, boxes)
        candidates_before.append(grid.shape[0])
        candidates_after.append(boxes.shape[0])
        whole = subject
        for index, name in enumerate(RATIOS):
            s = stats[name]
            subject = rules.for_ratio(whole, exact[index])  # a face too large for the ratio: judged by its core
            s["too_large"] += int(not np.array_equal(subject.faces, whole.faces))
            members = np.flatnonzero(all_groups == index)
            old = members[members < grid.shape[0]]
            before = choose(boxes[old], scores[old], off, exact[index], width, height, None, top=1)[0]
            after = choose(boxes[members], scores[members], settings, exact[index], width, height, subject, top=1)[0]
            b_cut, b_out = judge(before.box, subject)
            a_cut, a_out = judge(after.box, subject)
            inside, cut = rules.face_states(boxes[members], subject)
            clean = ~cut.any(axis=1)
            s["photos"] += 1
            s["before_cut"] += b_cut
            s["after_cut"] += a_cut
            s["avoidable_cut"] += a_cut and bool(clean.any())
            holds = inside[:, subject.main] if subject.main >= 0 else np.ones(len(members), dtype=bool)
            s["avoidable_cut_main_in"] += a_cut and bool((clean & holds).any())
            s["warnings"] += bool(after.problems)
            if subject.main >= 0:
                s["with_main"] += 1
                s["before_main_out"] += b_out
                s["after_main_out"] += a_out
                s["main_out_fits"] += a_out and bool((clean & inside[:, subject.main]).any())
                fits = _fits(subject.faces[subject.main], width, height, exact[index])
                s["fits_geometrically"] += fits
                s["main_out_fits_geometrically"] += a_out and fits
            if not np.array_equal(before.box, after.box):
                s["changed"] += 1
                spread = float(scores[members].std()) or 1.0
                s["score_drop"].append((scores[old][before.index] - scores[members][after.index]) / spread)
        if (n + 1) % 100 == 0:
            print(f"{n + 1} photos, {with_faces} with faces", file=sys.stderr)
    return {"photos": min(len(paths), limit or len(paths)), "with_faces": with_faces,
            "detect_ms_median_first_100": round(float(np.median(detect_ms[:100])), 2),
            "detect_ms_median": round(float(np.median(detect_ms)), 2),
            "detect_ms_p90": round(float(np.percentile(detect_ms, 90)), 2),
            "candidates_median_before": int(np.median(candidates_before)) if candidates_before else 0,
            "candidates_median_after": int(np.median(candidates_after)) if candidates_after else 0,
            "ratios": {r: {**{k: v for k, v in s.items() if k != "score_drop"},
                           "score_drop_median_sd": round(float(np.median(s["score_drop"])), 3)
                           if s["score_drop"] else None} for r, s in stats.items()}}


def _fits(face: np.ndarray, width: int, height: int, ratio: tuple[int, int] | None) -> bool:
    """Whether a grown face is no larger than the largest crop of ``ratio`` (free: the photo)."""
    fw, fh = face[2] - face[0], face[3] - face[1]
    if ratio is None:
        return True
    a, b = ratio
    k = min(width // a, height // b)
    return bool(fw <= k * a and fh <= k * b)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    -"


def print_table(report: dict) -> None:
    print(f"{report['photos']} photos, {report['with_faces']} with faces; detection median "
          f"{report['detect_ms_median_first_100']} ms (first 100), {report['detect_ms_median']} ms (all), "
          f"p90 {report['detect_ms_p90']} ms; candidates per photo with faces (all ratios): "
          f"{report['candidates_median_before']} -> {report['candidates_median_after']}")
    head = ("ratio", "cut before", "cut after", "avoidable", "any clean", "main out before", "main out after",
            "fits+out", "geom fits+out", "too large", "changed", "warnings", "score drop sd")
    print(" | ".join(head))
    for name, s in report["ratios"].items():
        n, m = s["photos"], s["with_main"]
        print(" | ".join([name, _pct(s["before_cut"], n), _pct(s["after_cut"], n), str(s["avoidable_cut_main_in"]),
                          str(s["avoidable_cut"]),
                          _pct(s["before_main_out"], m), _pct(s["after_main_out"], m), str(s["main_out_fits"]),
                          f"{s['main_out_fits_geometrically']}/{s['fits_geometrically']}", str(s["too_large"]),
                          str(s["changed"]), str(s["warnings"]),
                          str(s["score_drop_median_sd"])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("AUTOCROP_DATA_DIR", "../shared/data")))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    paths = photos(args.data)
    if not paths:
        raise SystemExit(f"no GAICD/FCDB photos under {args.data}")
    cropper = Cropper(threads=args.threads)
    report = evaluate(paths, cropper, args.limit)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
