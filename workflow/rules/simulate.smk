# Built-in simulation: Pythia8 hard scatter + pile-up through the ITk-like detector -> one
# GNN4ITk ROOT ntuple per shard. Replaced by real inputs when input.source is root or trackml.


rule simulate:
    input:
        detector=stage_config("simulation").get("detector", []),
    output:
        f"data/sim/{CAMPAIGN}/{{shard}}.root",
    params:
        cfg=stage_config("simulation"),
    log:
        f"{LOGS}/simulate/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/simulate/{{shard}}.tsv"
    threads: rule_threads("simulate")
    resources:
        **rule_resources("simulate"),
    conda:
        ENV
    script:
        "../scripts/simulate.py"
