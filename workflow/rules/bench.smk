# Per-stage inference timing (data loading, embedding, build edges, filtering, GNN, labelling)
# on the test shards; steps.bench switches it on.


rule bench:
    input:
        events=split_events("test"),
        **inference_models(),
    output:
        json=f"{RESULTS}/bench/bench.json",
        table=f"{RESULTS}/bench/bench.md",
    params:
        cfg=stage_config("bench"),
        inference=inference_config(),
    log:
        f"{LOGS}/bench.log",
    benchmark:
        f"{BENCHMARKS}/bench.tsv"
    threads: rule_threads("bench")
    resources:
        **rule_resources("bench"),
    conda:
        ENV
    script:
        "../scripts/bench.py"
