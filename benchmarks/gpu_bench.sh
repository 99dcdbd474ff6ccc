#!/usr/bin/env bash
# Inference benchmark on a GPU: every variant of `gnntrack bench`, for the module map and the
# metric-learning chains, stored under benchmarks/ with the card name and the date.
#
# Installs nothing: it runs on the GPU node's own python3 (torch + h5py + scipy + yaml +
# matplotlib) with this checkout's src/ on PYTHONPATH. faiss-gpu / cuGraph are used when
# importable; otherwise their columns say so (faiss skipped; CC on torch FastSV).
#
# Inputs (events are not simulated here: the node may lack pythia8/uproot), made on any CPU with
#   python benchmarks/bench_inference.py prepare --mu 200 --slim -o benchmarks/tmp/inputs
#   mkdir -p benchmarks/tmp/gpu_inputs && cp benchmarks/tmp/inputs/{test_slim.h5,module_map.h5,\
#     embedding.pt,filter.pt,gnn.pt,inference.yaml} benchmarks/tmp/gpu_inputs/
# (3 events at <mu>=200 are ~35 MB; carry benchmarks/tmp/gpu_inputs to the GPU node.)
#
# Both chains together stay under the device tool's 10-minute limit per command (timeouts below).
# Usage: benchmarks/gpu_bench.sh [INPUT_DIR] [N_EVENTS]
#   env: PYTHON (default python3), METHODS (default "module_map metric_learning"), OUT (if set,
#        the tables/JSON/plots are also copied there, flat, for retrieval)
set -euo pipefail
cd "$(dirname "$0")/.."
INPUTS=${1:-benchmarks/tmp/gpu_inputs}
N_EVENTS=${2:-3}
PY=${PYTHON:-python3}
METHODS=${METHODS:-module_map metric_learning}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_bench.sh: no NVIDIA GPU visible (nvidia-smi failed)" >&2
  exit 1
fi
for f in module_map.h5 embedding.pt filter.pt gnn.pt inference.yaml; do
  [[ -f "$INPUTS/$f" ]] || { echo "gpu_bench.sh: missing $INPUTS/$f (see the header of this script)" >&2; exit 2; }
done
[[ -f "$INPUTS/test.h5" || -f "$INPUTS/test_slim.h5" ]] || { echo "gpu_bench.sh: no test events in $INPUTS" >&2; exit 2; }

"$PY" - <<'EOF'
import importlib.util, sys
need = ["torch", "h5py", "numpy", "scipy", "yaml", "matplotlib"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_bench.sh: python lacks {missing}")
import torch
assert torch.cuda.is_available(), "torch does not see CUDA"
opt = {m: importlib.util.find_spec(m) is not None for m in ("faiss", "cugraph", "onnxruntime", "mplhep")}
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0), "| optional:", opt)
EOF

CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 | tr -c 'A-Za-z0-9\n' '_' | sed 's/_*$//')
DATE=$(date -u +%Y%m%d)
DEST="benchmarks/gpu_${CARD}_${DATE}"
mkdir -p "$DEST"
nvidia-smi > "$DEST/nvidia-smi.txt"

for METHOD in $METHODS; do
  echo "=== $METHOD on $CARD ==="
  # one process per method: every variant, baseline included, measured in the same run
  timeout 240 "$PY" benchmarks/bench_inference.py run --inputs "$INPUTS" --method "$METHOD" \
    --n-events "$N_EVENTS" --warmup 1 --device cuda -o "$DEST/$METHOD" || echo "bench of $METHOD failed" >&2
  timeout 90 "$PY" benchmarks/bench_inference.py profile --inputs "$INPUTS" --method "$METHOD" \
    --n-events "$N_EVENTS" --warmup 1 --ops --device cuda -o "$DEST/$METHOD" || echo "profile of $METHOD failed" >&2
done

{
  echo "# GPU inference benchmark: $CARD, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Inputs: $INPUTS ($(cat "$INPUTS/inference.yaml" | head -n1)); command: benchmarks/gpu_bench.sh"
  for METHOD in $METHODS; do
    echo
    echo "## $METHOD"
    echo
    if [[ -f "$DEST/$METHOD/bench.md" ]]; then cat "$DEST/$METHOD/bench.md"; else echo "(bench failed)"; fi
    if [[ -f "$DEST/$METHOD/profile.md" ]]; then echo; echo "Floors:"; echo; cat "$DEST/$METHOD/profile.md"; fi
  done
} > "$DEST/README.md"
echo "results in $DEST"
cat "$DEST/README.md"

if [[ -n "${OUT:-}" ]]; then
  cp "$DEST/README.md" "$OUT/gpu_bench_${CARD}_${DATE}.md"
  for METHOD in $METHODS; do
    [[ -f "$DEST/$METHOD/bench.json" ]] && cp "$DEST/$METHOD/bench.json" "$OUT/${METHOD}_bench.json"
    [[ -f "$DEST/$METHOD/bench.png" ]] && cp "$DEST/$METHOD/bench.png" "$OUT/${METHOD}_bench.png"
  done
fi
