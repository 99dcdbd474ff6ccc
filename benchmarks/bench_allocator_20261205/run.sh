#!/bin/bash
# gnntrack bench of the metric-learning chain (config/physics_mu200_ml.yaml's models) with the
# allocator as gnntrack infer runs it (inference.hold_memory, default) and with glibc's defaults
# (hold_off.yaml), alternated twice; 4 events of the campaign's test/5.h5 (1 warm-up), variants
# k-d tree and scipy CC. Run from the repository root after the metric-learning campaign.
set -euo pipefail
D=benchmarks/bench_allocator_20261205
R=results/physics_mu200_ml
printf 'inference: {}\n' > /tmp/hold_on.yaml
for run in 1 2; do
  for V in off on; do
    [[ $V == off ]] && C=$D/hold_off.yaml || C=/tmp/hold_on.yaml
    .venv/bin/gnntrack bench -c config/config.yaml -c config/physics_mu200.yaml -c config/physics_mu200_ml.yaml -c $C \
      --embedding $R/models/metric_learning.pt --filter-model $R/models/filter.pt \
      --gnn-model benchmarks/ml_campaign_working_point_20261205/gnn_mu200.pt --device cpu --n-events 4 --warmup 1 \
      --variants kdtree,cc --no-plot -o $D/${V}_$run $R/events/test/5.h5
  done
done
