"""Package a trained set model: RUN/best.safetensors -> autocrop/weights/set.safetensors (+ set.json card).

    python benchmarks/package_set_model.py runs/set_r1 runs/set_r2 [--half] [--fcdb-test "iou 0.70 ..."]

Of several runs, the one whose best model has the highest top-1 IoU on the FCDB *validation* split is packaged
(ties: the first given); the others' validation figures are recorded in the card.

``--half`` stores the tensors as float16 (loaded as float32; the file is half the size). The card keeps
the run's card (recipe, validation on the FCDB validation split, inherited training images) and may
record FCDB test figures measured afterwards by ``set_fcdb_eval.py`` (evaluation only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autocrop.model.card import without_fields
from autocrop.model.set_scorer import load_set_scorer
from autocrop.model.set_weights import PACKAGED_SET_WEIGHTS, save_set_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--fcdb-test", help="FCDB test figures to record (text), measured by set_fcdb_eval.py")
    args = parser.parse_args()
    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_weights import load_set_weights

    candidates = [(load_set_weights(run / "best.safetensors"), run) for run in args.runs]
    (tensors, config, card), run = max(candidates, key=lambda c: c[0][2]["validation"]["iou"])
    net = SetCropNet(config)
    net.load_state_dict(tensors, strict=False)
    card = without_fields(card, ("weights_file", "sha256", "size_bytes", "history"))
    card["packaged_from"] = {
        "run": run.name, "storage": "float16" if args.half else "float32",
        "rule": "highest top-1 IoU on the FCDB validation split among the runs below",
        "runs": {r.name: {"validation": c[2]["validation"], "best_epoch": c[2].get("best_epoch"),
                          "distilled": c[2]["recipe"]["distill"]} for c, r in candidates},
    }
    if args.fcdb_test:
        card["fcdb_test"] = {"figures": args.fcdb_test,
                             "note": "measured after packaging choices were made; never used to select a model"}
    saved = save_set_weights(PACKAGED_SET_WEIGHTS, net.state_dict(), config, card, half=args.half)
    load_set_scorer(PACKAGED_SET_WEIGHTS)  # the packaged file loads strictly with its card
    print(f"{PACKAGED_SET_WEIGHTS}: {saved['size_bytes'] / 1e6:.1f} MB, sha256 {saved['sha256'][:12]}")


if __name__ == "__main__":
    main()
