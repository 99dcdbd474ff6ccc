# HGNN track builder (inference.track_building.method: hgnn): trained on the GNN-scored training
# and validation graphs; infer (and bench) take its model file when the method is selected.


rule train_hgnn:
    input:
        train_events=split_events("train"),
        train_graphs=[scored("train", s) for s in SHARDS["train"]],
        val_events=split_events("val"),
        val_graphs=[scored("val", s) for s in SHARDS["val"]],
    output:
        MODELS["hgnn"],
    params:
        cfg=hgnn_training_config(),
    log:
        f"{LOGS}/train_hgnn.log",
    benchmark:
        f"{BENCHMARKS}/train_hgnn.tsv"
    threads: rule_threads("train_hgnn")
    resources:
        **rule_resources("train_hgnn"),
    conda:
        ENV
    script:
        "../scripts/train_hgnn.py"
