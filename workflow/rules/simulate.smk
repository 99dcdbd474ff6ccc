# Built-in simulation: Pythia8 hard scatter + pile-up through the ITk-like detector -> one
# GNN4ITk ROOT ntuple per shard. Replaced by real inputs when input.source is root or trackml.
# The module-map sample (map_sample) is particle-gun events through the same detector.


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


rule simulate_map_sample:
    input:
        detector=stage_config("simulation").get("detector", []),
    output:
        map_sample_raw(),
    params:
        cfg=map_sample_simulation_config(),
    log:
        f"{LOGS}/simulate_map_sample/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/simulate_map_sample/{{shard}}.tsv"
    threads: rule_threads("simulate_map_sample")
    resources:
        **rule_resources("simulate_map_sample"),
    conda:
        ENV
    script:
        "../scripts/simulate.py"
