# Production inference: graph construction -> filter -> GNN -> track building for one test
# shard in one process, tensors kept on the device, every stage timed.


rule infer:
    input:
        events=events("test"),
        **inference_models(),
    output:
        f"{RESULTS}/tracks/{{shard}}.h5",
    params:
        cfg=inference_config(),
    log:
        f"{LOGS}/infer/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/infer/{{shard}}.tsv"
    threads: rule_threads("infer")
    resources:
        **rule_resources("infer"),
    conda:
        ENV
    script:
        "../scripts/infer.py"
