#!/usr/bin/env bash
# Everything this project checks on a GPU, in one call that fits the device tool's 10-minute
# limit: the CUDA equivalence tests, every variant of `gnntrack bench` for the module-map and
# metric-learning chains (+ per-stage floors), the module-map chain with the default campaign's
# trained GNN and map, the metric-learning chain with the <mu> = 200 metric-learning campaign's
# trained embedding, context filter and GNN (config/physics_mu200_ml.yaml), and a GNN training
# curve on the same events. Results are stored under
# benchmarks/gpu_<card>_<date>/ with the card's name and the date.
#
# Installs nothing: it runs on the GPU node's own python3 (torch + h5py + scipy + yaml +
# matplotlib + pytest) with this checkout's src/ on PYTHONPATH. faiss-gpu / cuGraph are used when
# importable; otherwise their columns say so (faiss skipped; CC on torch FastSV).
#
# Inputs (events are not simulated here: the node lacks pythia8/uproot), made on any CPU with
#   python benchmarks/bench_inference.py prepare --mu 200 --slim -o benchmarks/tmp/inputs
#   mkdir -p benchmarks/tmp/gpu_inputs && cp benchmarks/tmp/inputs/{test_slim.h5,module_map.h5,\
#     embedding.pt,filter.pt,gnn.pt,inference.yaml} benchmarks/tmp/gpu_inputs/
#   mkdir -p benchmarks/tmp/gpu_trained && cp results/default/module_map/module_map.h5 \
#     results/default/models/gnn.pt benchmarks/tmp/gpu_trained/      # optional (trained chain)
# (3 events at <mu>=200 are 25 MB; carry benchmarks/tmp/gpu_inputs and benchmarks/tmp/gpu_trained.)
#
# Usage: benchmarks/gpu_bench.sh [INPUT_DIR] [N_EVENTS]
#   env: PYTHON (default python3), METHODS (default "module_map metric_learning"),
#        TRAINED (default: a copy of models/reference/physics_mu200, else
#        benchmarks/tmp/gpu_trained; skipped if absent), TRAINED_ML (a folder with the
#        metric-learning chain's embedding.pt, filter.pt, gnn.pt, inference.yaml; default: the
#        campaign's models committed under benchmarks/, with config/physics_mu200_ml.yaml's
#        inference settings; skipped if absent), TRAIN_SECONDS (default
#        120; 0 skips the training curve), EVENT_COMPRESSION (lzf | none | gzip: how the timed
#        events are stored, default lzf as convert writes them), BUDGET (default 520 s for everything), OUT (if set, README.md and a tarball of the results
#        are copied there for retrieval)
set -uo pipefail
cd "$(dirname "$0")/.."
INPUTS=${1:-benchmarks/tmp/gpu_inputs}
N_EVENTS=${2:-3}
PY=${PYTHON:-python3}
METHODS=${METHODS:-module_map metric_learning}
# the trained chain: by default the shipped <mu> = 200 reference models (copied, so that the
# bench's inference.yaml is not written into the bundle)
if [[ -z "${TRAINED:-}" && -f models/reference/physics_mu200/gnn.pt ]]; then
  TRAINED="${TMPDIR:-/tmp}/gnntrack_trained_reference"
  mkdir -p "$TRAINED" && cp models/reference/physics_mu200/{gnn.pt,module_map.h5} "$TRAINED/"
fi
TRAINED=${TRAINED:-benchmarks/tmp/gpu_trained}
# the trained metric-learning chain: the models of config/physics_mu200_ml.yaml's campaign as its
# records committed them, and that campaign's inference settings where they differ from the
# defaults (r_max, k_max, track building)
ML_EMBEDDING=benchmarks/metric_learning_margin_20261204/campaign/embedding_E_mu200.pt
ML_FILTER=benchmarks/ml_campaign_context_filter_20261204/models/filter_context_mu200.pt
ML_GNN=benchmarks/ml_campaign_working_point_20261205/gnn_mu200.pt
if [[ -z "${TRAINED_ML:-}" && -f $ML_EMBEDDING && -f $ML_FILTER && -f $ML_GNN ]]; then
  TRAINED_ML="${TMPDIR:-/tmp}/gnntrack_trained_ml"
  mkdir -p "$TRAINED_ML" && cp $ML_EMBEDDING "$TRAINED_ML/embedding.pt" && cp $ML_FILTER "$TRAINED_ML/filter.pt" \
    && cp $ML_GNN "$TRAINED_ML/gnn.pt"
  PYTHONPATH="$PWD/src" "${PYTHON:-python3}" - "$TRAINED_ML/inference.yaml" <<'EOF' || TRAINED_ML=
import sys

import yaml

from gnntrack.campaign import load_campaign
from gnntrack.cli import stage_config
from gnntrack.config import to_dict
from gnntrack.inference import InferenceConfig

files = ["config/config.yaml", "config/physics_mu200.yaml", "config/physics_mu200_ml.yaml"]
cfg = to_dict(stage_config("inference", load_campaign(files), []))
base = to_dict(InferenceConfig())
changed = {k: v for k, v in cfg.items() if base.get(k) != v}
with open(sys.argv[1], "w") as fh:
    yaml.safe_dump({"calibrated": False, "campaign": files, "inference": changed}, fh, sort_keys=False)
EOF
fi
TRAIN_SECONDS=${TRAIN_SECONDS:-120}
BUDGET=${BUDGET:-520}  # seconds for the whole script; each step's timeout is capped by what is left
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_bench.sh: no NVIDIA GPU visible (nvidia-smi failed)" >&2
  exit 1
fi
for f in module_map.h5 embedding.pt filter.pt gnn.pt inference.yaml; do
  [[ -f "$INPUTS/$f" ]] || { echo "gpu_bench.sh: missing $INPUTS/$f (see the header of this script)" >&2; exit 2; }
done
EVENTS="$INPUTS/test.h5"
[[ -f "$EVENTS" ]] || EVENTS="$INPUTS/test_slim.h5"
[[ -f "$EVENTS" ]] || { echo "gpu_bench.sh: no test events in $INPUTS" >&2; exit 2; }
# The carried file is gzip (small); reading it is mostly gunzip. Time the events as a campaign
# writes them (convert.compression, lzf by default): repack once here (~2 s, not timed).
if [[ "${EVENT_COMPRESSION:-lzf}" != gzip ]]; then
  REPACKED="${TMPDIR:-/tmp}/gnntrack_events_${EVENT_COMPRESSION:-lzf}.h5"
  "$PY" benchmarks/bench_inference.py repack "$EVENTS" "$REPACKED" --compression "${EVENT_COMPRESSION:-lzf}" \
    && EVENTS="$REPACKED"
fi

"$PY" - <<'EOF' || exit 3
import importlib.util, sys
need = ["torch", "h5py", "numpy", "scipy", "yaml", "matplotlib"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_bench.sh: python lacks {missing}")
import torch
assert torch.cuda.is_available(), "torch does not see CUDA"
opt = {m: importlib.util.find_spec(m) is not None for m in ("faiss", "cugraph", "onnxruntime", "mplhep", "pytest")}
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0), "| optional:", opt)
EOF

CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 | tr -c 'A-Za-z0-9\n' '_' | sed 's/_*$//')
DATE=$(date -u +%Y%m%d)
DEST="benchmarks/gpu_${CARD}_${DATE}"
mkdir -p "$DEST"
nvidia-smi > "$DEST/nvidia-smi.txt"
T0=$SECONDS
stamp() { echo "[$((SECONDS - T0)) s] $*"; }
# cap <seconds>: that, or what is left of the budget (less 15 s for the report), at least 1
cap() { local left=$((BUDGET - (SECONDS - T0) - 15)); ((left < $1)) && echo $((left > 1 ? left : 1)) || echo "$1"; }

stamp "CUDA equivalence tests"
timeout "$(cap 90)" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_equivalence.py \
  tests/test_tracks_components.py tests/test_inference_timing.py 2>&1 | tee "$DEST/cuda_tests.txt" | tail -n 25

for METHOD in $METHODS; do
  stamp "bench $METHOD (fresh production-size models)"
  # one process per chain: every variant, baseline included, measured in the same run
  timeout "$(cap 170)" "$PY" benchmarks/bench_inference.py run --inputs "$INPUTS" --events "$EVENTS" --method "$METHOD" \
    --n-events "$N_EVENTS" --warmup 1 --device cuda -o "$DEST/$METHOD" || echo "bench of $METHOD failed" >&2
  timeout "$(cap 60)" "$PY" benchmarks/bench_inference.py profile --inputs "$INPUTS" --events "$EVENTS" --method "$METHOD" \
    --n-events "$N_EVENTS" --warmup 1 --ops --device cuda -o "$DEST/$METHOD" || echo "profile of $METHOD failed" >&2
done

if [[ -f "$TRAINED/gnn.pt" && -f "$TRAINED/module_map.h5" ]]; then
  stamp "bench module_map with the trained GNN and map ($TRAINED)"
  [[ -f "$TRAINED/inference.yaml" ]] || printf 'calibrated: false\ninference: {}\n' > "$TRAINED/inference.yaml"
  timeout "$(cap 80)" "$PY" benchmarks/bench_inference.py run --inputs "$TRAINED" --events "$EVENTS" --method module_map \
    --n-events "$N_EVENTS" --warmup 1 --device cuda -o "$DEST/module_map_trained" || echo "trained bench failed" >&2
fi
if [[ -n "${TRAINED_ML:-}" && -f "$TRAINED_ML/gnn.pt" && -f "$TRAINED_ML/inference.yaml" ]]; then
  stamp "bench metric_learning with the trained embedding, filter and GNN ($TRAINED_ML)"
  timeout "$(cap 90)" "$PY" benchmarks/bench_inference.py run --inputs "$TRAINED_ML" --events "$EVENTS" \
    --method metric_learning --n-events "$N_EVENTS" --warmup 1 --device cuda -o "$DEST/metric_learning_trained" \
    || echo "trained metric-learning bench failed" >&2
fi
if [[ -f "$TRAINED/gnn.pt" && -f "$TRAINED/module_map.h5" ]]; then
  if [[ "$TRAIN_SECONDS" != 0 ]]; then
    LEFT=$(cap 100000)
    ((TRAIN_SECONDS > LEFT - 45)) && TRAIN_SECONDS=$((LEFT > 75 ? LEFT - 45 : 30))
    stamp "GNN training curve (${TRAIN_SECONDS} s)"
    timeout "$(cap $((TRAIN_SECONDS + 45)))" "$PY" benchmarks/bench_gnn_training.py --events "$EVENTS" \
      --module-map "$TRAINED/module_map.h5" --epochs 500 --time-limit "$TRAIN_SECONDS" --device cuda \
      -o "$DEST/training" || echo "training curve failed" >&2
    rm -f "$DEST"/training/*.h5 "$DEST"/training/gnn.pt.last "$DEST"/training/gnn.pt.best
  fi
fi
stamp "done"

{
  echo "# GPU benchmark: $CARD, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command: \`benchmarks/gpu_bench.sh $INPUTS $N_EVENTS\`; events: $EVENTS; calibration: $(head -n1 "$INPUTS/inference.yaml")"
  echo
  echo "## CUDA equivalence tests"
  echo
  echo '```'
  tail -n 5 "$DEST/cuda_tests.txt"
  echo '```'
  for METHOD in $METHODS module_map_trained metric_learning_trained; do
    [[ -d "$DEST/$METHOD" ]] || continue
    echo
    echo "## $METHOD"
    echo
    if [[ -f "$DEST/$METHOD/bench.md" ]]; then cat "$DEST/$METHOD/bench.md"; else echo "(bench failed)"; fi
    if [[ -f "$DEST/$METHOD/profile.md" ]]; then echo; echo "Floors:"; echo; cat "$DEST/$METHOD/profile.md"; fi
  done
  if [[ -f "$DEST/training/training.md" ]]; then
    echo
    echo "## GNN training curve"
    echo
    cat "$DEST/training/training.md"
  fi
} > "$DEST/README.md"
echo "results in $DEST"
cat "$DEST/README.md"

if [[ -n "${OUT:-}" ]]; then
  cp "$DEST/README.md" "$OUT/gpu_bench_${CARD}_${DATE}.md"
  tar czf "$OUT/gpu_bench_${CARD}_${DATE}.tar.gz" "$DEST"
fi
