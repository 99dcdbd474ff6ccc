# Physics evaluation of the test shards: track efficiency, fake and duplicate rates, edge
# efficiency/purity of every stage, truth-CC upper bound, timing table, plots for the report.


rule evaluate:
    input:
        events=split_events("test"),
        tracks=expand(f"{RESULTS}/tracks/{{shard}}.h5", shard=SHARDS["test"]),
        **evaluation_graphs(),
        gnn_model=MODELS["gnn"],
    output:
        summary=report(
            f"{RESULTS}/eval/summary.json",
            caption=f"{REPORT}/summary.rst",
            category="Summary",
        ),
        report=f"{RESULTS}/eval/report.md",
        plots=report(
            directory(f"{RESULTS}/eval/plots"),
            patterns=["{name}.png"],
            caption=f"{REPORT}/plots.rst",
            category="Evaluation",
        ),
    params:
        cfg=stage_config("evaluation"),
        campaign=campaign_info(),
        stages=list(evaluation_graphs()),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/evaluate.tsv"
    threads: rule_threads("evaluate")
    resources:
        **rule_resources("evaluate"),
    conda:
        ENV
    script:
        "../scripts/evaluate.py"
