rule download:
    input:
        download_inputs,
    output:
        directory("results/data/{dataset}/{split}"),
    params:
        mirror=flag("--mirror", MIRROR),
        limit=lambda wc: max_pairs_arg(wc.split),
        source=lambda wc: source_args(wc.dataset),
    log:
        "results/logs/download/{dataset}_{split}.log",
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench download --dataset {wildcards.dataset:q} --split {wildcards.split:q} --out {output:q} "
        "{params.mirror:q} {params.limit:q} {params.source:q} 2> {log:q}"


rule patches:
    input:
        "results/data/{dataset}/train",
    output:
        patches="results/patches/{dataset}_{size}.npy",
        meta="results/patches/{dataset}_{size}.json",
    params:
        stride=PATCH["stride"],
        min_contrast=PATCH["min_contrast"],
    log:
        "results/logs/patches/{dataset}_{size}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench patches --dataset {wildcards.dataset:q} --sources {input:q} --out {output.patches:q} "
        "--size {wildcards.size:q} --stride {params.stride:q} --min-contrast {params.min_contrast:q} 2> {log:q}"
