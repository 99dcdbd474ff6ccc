#!/bin/bash
# inference.filter_chunk 1 M (the previous default) against 500 k, alternated twice, on the
# <mu> = 200 and 300 events of run.sh (k_max 48, the campaign's chain), time as gnntrack infer runs.
set -euo pipefail
D=benchmarks/scaling_ml_cap_20261205/filter_chunk
S=benchmarks/tmp/scaling
R=results/physics_mu200_ml
for round in 1 2; do
  for FC in 1000000 500000; do
    PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py $S/mu200.h5 $S/mu300.h5 \
      -c config/config.yaml -c config/physics_mu200.yaml -c config/physics_mu200_ml.yaml \
      --embedding $R/models/metric_learning.pt --filter-model $R/models/filter.pt --gnn-model $R/models/gnn.pt \
      --set filter_chunk=$FC --threads 2 --repeats 1 --no-trim \
      -o $D/chunk${FC}_round$round.json > $D/chunk${FC}_round$round.log 2>&1
  done
done
