"""Package a trained model as the default: copy RUN/final.safetensors (the last epoch's model) to
autocrop/weights/default.safetensors and write its card with the cross-validation and ablation
figures measured by the same trainer.

    python benchmarks/package_model.py runs/final --cv runs/cv0 runs/cv1 ... [--cv-other-seed runs/cv0_s1 ...] \
        --ablation runs/abl0_gaic ...

Figures are each run's LAST epoch on its held-out GAICD fold (see summarize_runs.py for why).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autocrop.io.fs import atomic_write_bytes
from autocrop.model.card import read_card, write_card
from autocrop.model.weights import PACKAGED_WEIGHTS, sha256_of

KEYS = ("acc1_5", "acc5", "acc1_10", "acc10", "srcc", "pcc")


def last_metrics(run: Path) -> dict:
    """The validation figures of a run's last epoch (RUN/last.json), rounded to 4 decimals."""
    progress = json.loads((run / "last.json").read_text())
    last = progress["history"][-1]
    return {"run": run.name, "epoch": last["epoch"] + 1, **{k: round(last["metrics"][k], 4) for k in KEYS}}


def mean_metrics(folds: list[dict]) -> dict:
    """Mean over runs of each metric in KEYS (rounded like the per-run figures)."""
    return {k: round(sum(f[k] for f in folds) / len(folds), 4) for k in KEYS}


def main() -> None:
    """Copy RUN/final.safetensors to the packaged default and write its card with the CV / ablation figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--cv", type=Path, nargs="+", default=[])
    parser.add_argument("--cv-other-seed", type=Path, nargs="+", action="append", default=[],
                        help="the same folds trained with another seed (repeat per seed; reported beside the main CV)")
    parser.add_argument("--ablation", type=Path, nargs="*", default=[], help="single-fold ablation runs")
    parser.add_argument("--ablation-folds", nargs="*", default=[],
                        help="ablation rows as run prefixes P: the folds are the runs P_f0 .. P_f4 that exist")
    parser.add_argument("--ablation-note", default="")
    args = parser.parse_args()
    if args.cv_other_seed and not args.cv:
        parser.error("--cv-other-seed needs --cv (the seed-0 folds it is reported beside)")

    source = args.run / "final.safetensors"
    card = read_card(source)
    if not card or card.get("sha256") != sha256_of(source):
        raise SystemExit(f"{source}: sha256 does not match its card")
    folds = [last_metrics(run) for run in args.cv]
    if folds:
        mean = mean_metrics(folds)
        card["cross_validation"] = {
            "protocol": "GAICD images of ../shared/data split into 5 fixed folds (seed 0); each fold validated "
            "by a model trained on the other 4 folds with the packaged recipe; last epoch, GAIC protocol "
            "(autocrop.bench.metrics)",
            "folds": folds,
            "mean": mean,
        }
    if args.cv_other_seed:
        seeds = []
        for runs in args.cv_other_seed:
            other = [last_metrics(run) for run in runs]
            seeds.append({"folds": other, "mean": mean_metrics(other)})
        card["cross_validation"]["other_seeds"] = seeds
        means = [card["cross_validation"]["mean"]] + [seed["mean"] for seed in seeds]
        card["cross_validation"]["mean_over_seeds"] = mean_metrics(means)
    if args.ablation:
        card["ablation"] = {"note": args.ablation_note, "rows": [last_metrics(run) for run in args.ablation]}
    if args.ablation_folds:
        rows = []
        for prefix in args.ablation_folds:
            candidates = [Path(f"{prefix}_f{f}") for f in range(5)]
            runs = [run for run in candidates if (run / "final.safetensors").is_file()]
            folds = [last_metrics(run) for run in runs]
            rows.append({"run": Path(prefix).name, "folds": [int(r.name[-1]) for r in runs],
                         **mean_metrics(folds)})
        note = args.ablation_note or "GAICD folds listed per row, last epoch, each row adds one component"
        card["ablation"] = {"note": note, "rows": rows}
    PACKAGED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(PACKAGED_WEIGHTS, source.read_bytes(), overwrite=True)
    card["weights_file"] = PACKAGED_WEIGHTS.name
    from autocrop.model.export import export_onnx  # the ONNX Runtime graph (no weights: read from the safetensors)

    graph = export_onnx(PACKAGED_WEIGHTS, PACKAGED_WEIGHTS.with_suffix(".onnx"))
    card["onnx_graph"] = {"file": graph.name, "sha256": sha256_of(graph), "size_bytes": graph.stat().st_size}
    write_card(PACKAGED_WEIGHTS, card)
    size_mb = PACKAGED_WEIGHTS.stat().st_size / 1e6
    print(f"packaged {PACKAGED_WEIGHTS} ({size_mb:.1f} MB, sha256 {card['sha256'][:12]}...)")
    if folds:
        print("cross-validation mean:", card["cross_validation"]["mean"])


if __name__ == "__main__":
    main()
