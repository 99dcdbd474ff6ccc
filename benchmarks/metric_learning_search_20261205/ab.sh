#!/bin/bash
# The k-d tree radius search and the metric-learning inference chain, the code before this
# record's change (OLD_SRC: the src/ of a git worktree of its parent commit) and this code
# alternated, same events and models; run from the repository root after the metric-learning
# campaign (results/physics_mu200_ml, config/physics_mu200_ml.yaml).
#   git worktree add /tmp/old <parent commit>; OLD_SRC=/tmp/old/src bash benchmarks/metric_learning_search_20261205/ab.sh
set -euo pipefail
: "${OLD_SRC:?set OLD_SRC to the parent commit's src/}"
D=benchmarks/metric_learning_search_20261205
R=results/physics_mu200_ml
E=benchmarks/metric_learning_margin_20261204/campaign/embedding_E_mu200.pt
mkdir -p $D/search $D/chain benchmarks/tmp/search
declare -A SRC=([old]=$OLD_SRC [new]=src)
search() {  # code threads run
  PYTHONPATH=${SRC[$1]} .venv/bin/python benchmarks/bench_neighbours.py --model $E \
    --events $R/events/test/5.h5 --n-events 5 --r 0.155 --k-max 48 --repeats 3 --threads "$2" \
    --device cpu --backends kdtree --output $D/search/E_r0.155_k48_$1_$2thread_run$3.json \
    > $D/search/E_r0.155_k48_$1_$2thread_run$3.log 2>&1
}
for run in 1 2; do for code in old new; do search $code 2 $run; done; done
for code in old new; do search $code 1 1; done
for run in 1 2; do
  for code in old new; do
    out=benchmarks/tmp/search/tracks_${code}_run$run.h5
    PYTHONPATH=${SRC[$code]} .venv/bin/gnntrack infer -c config/config.yaml -c config/physics_mu200.yaml \
      -c config/physics_mu200_ml.yaml --embedding $R/models/metric_learning.pt \
      --filter-model $R/models/filter.pt --gnn-model $R/models/gnn.pt $R/events/test/5.h5 -o $out \
      > $D/chain/infer_${code}_run$run.log 2>&1
    .venv/bin/python benchmarks/ml_campaign_context_filter_20261204/chain_timing.py $out \
      $D/chain/timing_${code}_run$run.json "$code run$run"
  done
done
