# Optional edge filter (MLP edge classifier) between graph construction and the GNN;
# steps.filter switches it on (usual after metric learning, whose graphs are large).


rule train_filter:
    input:
        train_events=split_events("train"),
        train_graphs=[graphs("train", s) for s in SHARDS["train"]],
        val_events=split_events("val"),
        val_graphs=[graphs("val", s) for s in SHARDS["val"]],
    output:
        MODELS["filter"],
    params:
        cfg=stage_config("filter"),
    log:
        f"{LOGS}/train_filter.log",
    benchmark:
        f"{BENCHMARKS}/train_filter.tsv"
    threads: rule_threads("train_filter")
    resources:
        **rule_resources("train_filter"),
    conda:
        ENV
    script:
        "../scripts/train_filter.py"


rule apply_filter:
    input:
        events=events("{split}"),
        graphs=graphs("{split}"),
        model=MODELS["filter"],
    output:
        filtered("{split}"),
    params:
        cfg=stage_config("filter"),
    log:
        f"{LOGS}/apply_filter/{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/apply_filter/{{split}}_{{shard}}.tsv"
    threads: rule_threads("apply_filter")
    resources:
        **rule_resources("apply_filter"),
    conda:
        ENV
    script:
        "../scripts/apply_filter.py"
