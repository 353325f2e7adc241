#!/usr/bin/env bash
# Re-run the training experiments of the README (model card): FCDB pre-training, the fold-0 ablation,
# 5-fold cross-validation of the packaged recipe, and the packaged model itself. Outputs under runs/.
# About 1 h on 2 CPU cores.  Usage: bash benchmarks/train_recipe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T="autocrop train --threads 2 --epochs 8 --gaicd-repeat 1"
FULL="--splitter --spatial --pairwise --rank-gain-weight 3 --listwise-weight 1"
autocrop train --data fcdb --epochs 1 --out runs/fcdb_pre
$T --data gaicd --fold 0 --out runs/abl0_gaic --no-splitter --no-spatial --no-pairwise --rank-gain-weight 0 --listwise-weight 0
$T --data gaicd --fold 0 --out runs/abl0_vrn --splitter --no-spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 0
$T --data gaicd --fold 0 --out runs/abl0_lvrn --splitter --no-spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 1
$T --data gaicd --fold 0 --out runs/abl0_spatial --splitter --spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 1
$T --data gaicd --fold 0 --out runs/abl0_pairwise $FULL
for F in 0 1 2 3 4; do
  $T --data gaicd --fold $F --out runs/cv$F $FULL --init runs/fcdb_pre/best.safetensors
done
$T --data gaicd --out runs/final $FULL --init runs/fcdb_pre/best.safetensors
python benchmarks/summarize_runs.py runs/abl0_* runs/cv*
python benchmarks/package_model.py runs/final --cv runs/cv0 runs/cv1 runs/cv2 runs/cv3 runs/cv4 \
  --ablation runs/abl0_gaic runs/abl0_vrn runs/abl0_lvrn runs/abl0_spatial runs/abl0_pairwise runs/cv0
