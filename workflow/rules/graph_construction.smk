# Graph construction: a data-driven module map or a learned embedding + radius search,
# chosen by graph_construction.method.


rule build_module_map:
    input:
        events=module_map_events(),
    output:
        MODULE_MAP,
    params:
        cfg=stage_config("module_map"),
    log:
        f"{LOGS}/build_module_map.log",
    benchmark:
        f"{BENCHMARKS}/build_module_map.tsv"
    threads: rule_threads("build_module_map")
    resources:
        **rule_resources("build_module_map"),
    conda:
        ENV
    script:
        "../scripts/build_module_map.py"


rule train_metric_learning:
    input:
        train=split_events("train"),
        val=split_events("val"),
    output:
        MODELS["metric_learning"],
    params:
        cfg=stage_config("metric_learning"),
    log:
        f"{LOGS}/train_metric_learning.log",
    benchmark:
        f"{BENCHMARKS}/train_metric_learning.tsv"
    threads: rule_threads("train_metric_learning")
    resources:
        **rule_resources("train_metric_learning"),
    conda:
        ENV
    script:
        "../scripts/train_metric_learning.py"


rule build_graphs:
    input:
        events=events("{split}"),
        **graph_builder_inputs(),
    output:
        graphs("{split}"),
    params:
        cfg=stage_config("graph_construction"),
    log:
        f"{LOGS}/build_graphs/{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/build_graphs/{{split}}_{{shard}}.tsv"
    threads: rule_threads("build_graphs")
    resources:
        **rule_resources("build_graphs"),
    conda:
        ENV
    script:
        "../scripts/build_graphs.py"
