# Trained models -> ONNX and TorchScript for C++ inference, each checked against PyTorch on a
# sample test event.


rule export:
    input:
        **trained_models(),
        sample_events=events("test", SHARDS["test"][0]),
        sample_graphs=graphs("test", SHARDS["test"][0]),
    output:
        export_outputs(),
    log:
        f"{LOGS}/export.log",
    benchmark:
        f"{BENCHMARKS}/export.tsv"
    threads: rule_threads("export")
    resources:
        **rule_resources("export"),
    conda:
        ENV
    script:
        "../scripts/export.py"
