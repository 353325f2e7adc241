#!/usr/bin/env bash
# The exact recipe of the packaged set model (autocrop/weights/set.safetensors). CPU, 1 torch thread.
#   round 1: decoder on FCDB train (minus its validation split): ground truth + 2 grid-teacher views per photo
#   round 2: the same, with round 1's validity as the soft target of unmatched queries (self-distillation)
# Both rounds share one feature cache (the frozen backbone's memory of each photo and its mirror image).
# FCDB test photos are read only by the evaluation at the end (never for choosing anything).
set -euo pipefail
export AUTOCROP_DATA_DIR="${AUTOCROP_DATA_DIR:-../shared/data}"
export OMP_WAIT_POLICY=PASSIVE   # a shared 2-core machine: no spin-waiting threads
CACHE=runs/set_features

autocrop train --arch set --data fcdb --out runs/set_r1 --cache "$CACHE" --epochs 12 --threads 1
autocrop train --arch set --data fcdb --out runs/set_r2 --cache "$CACHE" --epochs 12 --threads 1 \
    --distill-from runs/set_r1/best.safetensors

# packaging: the run with the better FCDB *validation* top-1 IoU, stored as float16 (loaded as float32);
# then evaluation only (FCDB test) of the packaged file, with the packaged grid model for comparison
python benchmarks/package_set_model.py runs/set_r1 runs/set_r2 --half
python benchmarks/set_fcdb_eval.py autocrop/weights/set.safetensors --grid
