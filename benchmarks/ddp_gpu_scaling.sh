#!/usr/bin/env bash
# GPU scaling of data-parallel GNN training: events/s on 1, 2, 4, ... GPUs of one node (NCCL).
#
#   benchmarks/ddp_gpu_scaling.sh [OUT_DIR]        # on a node with several GPUs, from the repository root
#
# Runs benchmarks/bench_ddp.py with graphs about the size of a <mu> = 200 event after graph
# building and filtering (preset "gpu": 300k nodes, 1.5M edges, hidden 128, 8 iterations), the
# same global batch for every rank count (the largest count: strong scaling), one GPU per rank,
# NCCL. Inside a SLURM allocation (salloc/sbatch with --gpus=N --ntasks-per-gpu=1) the ranks are
# started as an srun step, elsewhere as local processes. Writes OUT_DIR/ddp.md (table) and
# OUT_DIR/ddp.json. Lower --nodes/--edges below if a rank runs out of GPU memory.
set -euo pipefail
out=${1:-benchmarks/ddp_gpu_$(date +%Y%m%d)}
python=${PYTHON:-python}
n_gpus=$("$python" -c 'import torch; print(torch.cuda.device_count())')
if [ "$n_gpus" -lt 2 ]; then
    echo "needs at least 2 CUDA devices, found $n_gpus" >&2
    exit 2
fi
ranks=()
for n in 1 2 4 8 16; do
    [ "$n" -le "$n_gpus" ] && ranks+=("$n")
done
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out.gpus.txt" || true
"$python" benchmarks/bench_ddp.py --device cuda --backend nccl --preset gpu \
    --ranks "${ranks[@]}" --items 32 --epochs 3 --warmup 1 --threads 4 -o "$out"
mv "$out.gpus.txt" "$out/gpus.txt" 2>/dev/null || true
