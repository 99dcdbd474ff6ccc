#!/bin/bash
# Growth with pile-up of the metric-learning chain at three neighbour caps (issue #17): the
# campaign's k_max 48 and caps that bind (24, 16), r 0.155; time and memory (bench_scaling.py) and
# track efficiency (gnntrack infer + evaluate) on the same 5 events per <mu> = 50, 100, 200, 300
# (benchmarks/tmp/scaling: see benchmarks/scaling_mu_20261203 for how they were simulated).
# Time as `gnntrack infer` runs (--no-trim: the chain's allocator settings keep freed memory for
# the next event; two passes, per-event medians) and, in a separate pass, each event's own RSS rise
# (malloc_trim before every event, which adds page faults to the time).
# Run from the repository root after the metric-learning campaign (results/physics_mu200_ml).
set -euo pipefail
D=benchmarks/scaling_ml_cap_20261205
S=benchmarks/tmp/scaling
R=results/physics_mu200_ml
CFG="-c config/config.yaml -c config/physics_mu200.yaml -c config/physics_mu200_ml.yaml"
MODELS="--embedding $R/models/metric_learning.pt --filter-model $R/models/filter.pt --gnn-model $R/models/gnn.pt"
mkdir -p $S/cap
for K in ${CAPS:-48 24 16}; do
  PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py $S/mu50.h5 $S/mu100.h5 $S/mu200.h5 $S/mu300.h5 \
    $CFG $MODELS --set k_max=$K --set r_max=0.155 --threads 2 --repeats 2 --no-trim \
    -o $D/scaling_k$K.json --plot $D/scaling_k$K.png > $D/scaling_k$K.log 2>&1
  PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py $S/mu50.h5 $S/mu100.h5 $S/mu200.h5 $S/mu300.h5 \
    $CFG $MODELS --set k_max=$K --set r_max=0.155 --threads 2 --repeats 1 \
    -o $D/memory_k$K.json > $D/memory_k$K.log 2>&1
  for MU in 50 100 200 300; do
    .venv/bin/gnntrack infer $CFG $MODELS --set k_max=$K --set r_max=0.155 $S/mu$MU.h5 \
      -o $S/cap/tracks_k${K}_mu$MU.h5 > $S/cap/infer_k${K}_mu$MU.log 2>&1
    .venv/bin/gnntrack evaluate $CFG --set 'formats=[png]' --events $S/mu$MU.h5 \
      --tracks $S/cap/tracks_k${K}_mu$MU.h5 -o $S/cap/eval_k${K}_mu$MU > $S/cap/eval_k${K}_mu$MU.log 2>&1
    cp $S/cap/eval_k${K}_mu$MU/summary.json $D/summary_k${K}_mu$MU.json
  done
done
