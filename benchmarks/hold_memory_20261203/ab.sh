# A/B of inference.hold_memory with the reference models, one torch thread, alternating
cd /work/main
for rep in 1 2; do
  for MU in 200 300; do
    for hold in true false; do
      [ $rep = 2 ] && [ $hold = true ] && continue  # second pass: false first
      tag=mu${MU}_hold${hold}_rep$rep
      OMP_NUM_THREADS=1 PYTHONPATH=src /usr/bin/time -f "%e wall %U user %S sys %M maxrss_kB" -o benchmarks/tmp/hold/$tag.time \
        .venv/bin/python -m gnntrack infer --reference models/reference/physics_mu200 --device cpu --set hold_memory=$hold \
        benchmarks/tmp/scaling/mu$MU.h5 -o benchmarks/tmp/hold/tracks_$tag.h5 > benchmarks/tmp/hold/$tag.log 2>&1
    done
    if [ $rep = 2 ]; then
      tag=mu${MU}_holdtrue_rep2
      OMP_NUM_THREADS=1 PYTHONPATH=src /usr/bin/time -f "%e wall %U user %S sys %M maxrss_kB" -o benchmarks/tmp/hold/$tag.time \
        .venv/bin/python -m gnntrack infer --reference models/reference/physics_mu200 --device cpu --set hold_memory=true \
        benchmarks/tmp/scaling/mu$MU.h5 -o benchmarks/tmp/hold/tracks_$tag.h5 > benchmarks/tmp/hold/$tag.log 2>&1
    fi
  done
done
echo DONE
