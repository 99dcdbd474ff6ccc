# Track candidates back to clusters, ordered from the beam spot outwards, in the CSV form the
# experiment's track fit reads (one file per event).


rule reassociate:
    input:
        events=events("test"),
        tracks=f"{RESULTS}/tracks/{{shard}}.h5",
    output:
        directory(f"{RESULTS}/athena/{{shard}}"),
    params:
        cfg=stage_config("reassociation"),
    log:
        f"{LOGS}/reassociate/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/reassociate/{{shard}}.tsv"
    threads: rule_threads("reassociate")
    resources:
        **rule_resources("reassociate"),
    conda:
        ENV
    script:
        "../scripts/reassociate.py"
