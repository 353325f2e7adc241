#!/usr/bin/env bash
# Re-run the training experiments of the README (model card): FCDB pre-training, the 5-fold ablation,
# 5-fold cross-validation of the packaged recipe (seeds 0, 1 and 2), and the packaged model itself.
# Outputs under runs/. About 4.5 h on 2 CPU cores.  Usage: bash benchmarks/train_recipe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Every value is spelled out, so the script does not depend on the defaults of `autocrop train`
# (which are the packaged recipe, P below: 12 epochs, gaicd-repeat 1, 128 crops, rank-gain-weight 0).
T="autocrop train --threads 2 --epochs 8 --gaicd-repeat 1 --crops-per-image 128"
P="autocrop train --threads 2 --epochs 12 --gaicd-repeat 1 --crops-per-image 128"  # the packaged recipe
FULL="--splitter --spatial --pairwise --rank-gain-weight 3 --listwise-weight 1"
PACKAGED="--splitter --spatial --pairwise --rank-gain-weight 0 --listwise-weight 1 --init runs/fcdb_pre/best.safetensors"
# stage 1 (FCDB pre-training) kept the previous release's defaults: 64 crops per step, ranking gain weight 3
# (gaicd-repeat and the ranking gain do not act on FCDB images; given so the card's recipe is that of stage 1)
autocrop train --data fcdb --epochs 1 --crops-per-image 64 --gaicd-repeat 3 --rank-gain-weight 3 --out runs/fcdb_pre
for F in 0 1 2 3 4; do
  $T --data gaicd --fold $F --out runs/ab1gaic_f$F --no-splitter --no-spatial --no-pairwise --rank-gain-weight 0 --listwise-weight 0
  $T --data gaicd --fold $F --out runs/ab2vrn_f$F --splitter --no-spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 0
  $T --data gaicd --fold $F --out runs/ab3lvrn_f$F --splitter --no-spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 1
  $T --data gaicd --fold $F --out runs/ab4spatial_f$F --splitter --spatial --no-pairwise --rank-gain-weight 3 --listwise-weight 1
  $T --data gaicd --fold $F --out runs/ab5pairwise_f$F $FULL
  $T --data gaicd --fold $F --out runs/ab6fcdb_f$F $FULL --init runs/fcdb_pre/best.safetensors
  $P --data gaicd --fold $F --out runs/ab7e12_f$F $FULL --init runs/fcdb_pre/best.safetensors
  $P --data gaicd --fold $F --out runs/cv_f$F $PACKAGED
  $P --data gaicd --fold $F --out runs/cvs1_f$F $PACKAGED --seed 1
  $P --data gaicd --fold $F --out runs/cvs2_f$F $PACKAGED --seed 2
done
$P --data gaicd --out runs/final $PACKAGED
python benchmarks/summarize_runs.py runs/ab*_f* runs/cv*
python benchmarks/package_model.py runs/final --cv runs/cv_f0 runs/cv_f1 runs/cv_f2 runs/cv_f3 runs/cv_f4 \
  --cv-other-seed runs/cvs1_f0 runs/cvs1_f1 runs/cvs1_f2 runs/cvs1_f3 runs/cvs1_f4 \
  --cv-other-seed runs/cvs2_f0 runs/cvs2_f1 runs/cvs2_f2 runs/cvs2_f3 runs/cvs2_f4 \
  --ablation-folds runs/ab1gaic runs/ab2vrn runs/ab3lvrn runs/ab4spatial runs/ab5pairwise runs/ab6fcdb runs/ab7e12 runs/cv
