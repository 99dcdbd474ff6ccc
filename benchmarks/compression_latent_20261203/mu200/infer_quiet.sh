# <mu>=200 physics test events (20), gnntrack infer with 2 torch threads: reference GNN with
# hold_memory false / true, and the latent-pruned GNN with hold_memory true; order rotated per shard
cd /work/main
P=benchmarks/tmp/comp200/latent50.pt
run() {  # tag shard hold gnn
  OMP_NUM_THREADS=2 PYTHONPATH=src /usr/bin/time -f "%e wall %U user %S sys %M maxrss_kB" -o benchmarks/tmp/final/$1_$2.time \
    .venv/bin/python -m gnntrack infer --reference models/reference/physics_mu200 --device cpu --set hold_memory=$3 $4 \
    results/physics_mu200/events/test/$2.h5 -o benchmarks/tmp/final/tracks_$1_$2.h5 > benchmarks/tmp/final/$1_$2.log 2>&1
}
run ref_free 5 false ""; run ref_hold 5 true ""; run pruned_hold 5 true "--gnn-model $P"
run pruned_hold 6 true "--gnn-model $P"; run ref_hold 6 true ""; run ref_free 6 false ""
echo DONE
