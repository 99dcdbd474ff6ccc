#!/bin/bash
# gnntrack infer on the 20 test events, the per-edge chain (the campaign's previous filter and GNN)
# and the context chain (this campaign's) alternated RUNS times (default 2), same embedding and
# settings; run from the repository root after the campaign (results/physics_mu200_ml).
set -euo pipefail
R=results/physics_mu200_ml
D=benchmarks/ml_campaign_context_filter_20261204
mkdir -p $D/chain benchmarks/tmp/ctx/chain
declare -A FILTER=([per_edge]=benchmarks/metric_learning_margin_20261204/campaign/filter_mu200.pt [context]=$D/models/filter_context_mu200.pt)
declare -A GNN=([per_edge]=benchmarks/metric_learning_margin_20261204/campaign/gnn_ml_mu200.pt [context]=$D/models/gnn_context_mu200.pt)
for run in $(seq 1 "${RUNS:-2}"); do
  for t in per_edge context; do
    for shard in 5 6; do
      out=benchmarks/tmp/ctx/chain/tracks_${t}_${shard}_run$run.h5
      .venv/bin/gnntrack infer -c config/config.yaml -c config/physics_mu200.yaml -c config/physics_mu200_ml.yaml \
        --embedding $R/models/metric_learning.pt --filter-model ${FILTER[$t]} --gnn-model ${GNN[$t]} \
        $R/events/test/$shard.h5 -o $out > $D/chain/infer_${t}_${shard}_run$run.log 2>&1
      .venv/bin/python $D/chain_timing.py $out $D/chain/timing_${t}_${shard}_run$run.json "$t test/$shard run$run"
    done
  done
done
