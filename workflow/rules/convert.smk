# ROOT ntuples (or TrackML CSV) of one shard -> the per-shard events HDF5 with truth graph.


rule convert:
    input:
        raw=convert_inputs,
        detectors=trackml_detectors(),
    output:
        events("{split}"),
    params:
        cfg=convert_config(),
    log:
        f"{LOGS}/convert/{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/convert/{{split}}_{{shard}}.tsv"
    threads: rule_threads("convert")
    resources:
        **rule_resources("convert"),
    conda:
        ENV
    script:
        "../scripts/convert.py"
