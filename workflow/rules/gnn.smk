# GNN edge classifier (interaction network): training, the working point (its edge cut, chosen
# on the validation events with the campaign's track building), and scoring of the test graphs
# for the edge-level evaluation (and of the training and validation graphs when the HGNN track
# builder trains on them, workflow/rules/hgnn.smk).


rule train_gnn:
    input:
        train_events=split_events("train"),
        train_graphs=[gnn_input_graphs("train", s) for s in SHARDS["train"]],
        val_events=split_events("val"),
        val_graphs=[gnn_input_graphs("val", s) for s in SHARDS["val"]],
    output:
        TRAINED_GNN,
    params:
        cfg=gnn_training_config(),
    log:
        f"{LOGS}/train_gnn.log",
    benchmark:
        f"{BENCHMARKS}/train_gnn.tsv"
    threads: rule_threads("train_gnn")
    resources:
        **rule_resources("train_gnn"),
    conda:
        ENV
    script:
        "../scripts/train_gnn.py"


rule gnn_working_point:
    input:
        model=TRAINED_GNN,
        val_events=split_events("val"),
        val_graphs=[gnn_input_graphs("val", s) for s in SHARDS["val"]],
    output:
        MODELS["gnn"],
    params:
        cfg=stage_config("gnn"),
        track_building=stage_config("inference")["track_building"],
    log:
        f"{LOGS}/gnn_working_point.log",
    benchmark:
        f"{BENCHMARKS}/gnn_working_point.tsv"
    threads: rule_threads("gnn_working_point")
    resources:
        **rule_resources("gnn_working_point"),
    conda:
        ENV
    script:
        "../scripts/gnn_working_point.py"


rule score_gnn:
    input:
        events=events("{split}"),
        graphs=gnn_input_graphs("{split}"),
        model=MODELS["gnn"],
    output:
        scored("{split}"),
    log:
        f"{LOGS}/score_gnn/{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/score_gnn/{{split}}_{{shard}}.tsv"
    threads: rule_threads("score_gnn")
    resources:
        **rule_resources("score_gnn"),
    conda:
        ENV
    script:
        "../scripts/score_gnn.py"
