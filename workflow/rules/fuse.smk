rule fetch_weights:
    output:
        "results/weights/{weights_path}",
    params:
        name=lambda wc: WEIGHTS_BY_PATH[wc.weights_path],
        mirror=flag("--mirror", WEIGHTS_MIRROR),
    log:
        "results/logs/weights/{weights_path}.log",
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench fetch-weights {params.name:q} --out results/weights {params.mirror:q} 2> {log:q}"


rule fuse:
    input:
        sources="results/data/{dataset}/test",
        weights=weights_input,
    output:
        directory("results/fused/{dataset}/{method}"),
    params:
        name=lambda wc: method_spec(wc.method).name,
        options=lambda wc: options_json(wc.method),
        weights=weights_arg,
        device=TRAINING["device"],
        protocol=lambda wc: method_entry(wc.method).get("protocol", "fusebench"),
        accel=lambda wc: accel_args(config.get("fusion", {})) if method_spec(wc.method).learned else [],
    log:
        "results/logs/fuse/{dataset}_{method}.log",
    # one thread per job: parallel jobs use the cores better than threads within one image's layers do
    threads: 1
    resources:
        gpu=lambda wc: TRAINING["gpu"] if method_spec(wc.method).learned else 0,
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench fuse --method {params.name:q} --options {params.options:q} --dataset {wildcards.dataset:q} "
        "--sources {input.sources:q} --out {output:q} {params.weights:q} --device {params.device:q} "
        "--protocol {params.protocol:q} {params.accel:q} --threads {threads} 2> {log:q}"


rule metrics:
    input:
        sources="results/data/{dataset}/test",
        fused="results/fused/{dataset}/{method}",
    output:
        "results/metrics/{dataset}/{method}.csv",
    params:
        sources=lambda wc, input: [f"{input.sources}/{modality}" for modality in modalities(wc.dataset)],
        convention=config["metrics"]["convention"],
        names=",".join(config["metrics"]["names"]),
        backend=config["metrics"]["backend"],
        # --device only with the torch backend (the command refuses it otherwise)
        device=["--device", config["metrics"]["device"]] if config["metrics"]["backend"] == "torch" else [],
        # not used by the command: changes when a fused image is truncated, added or removed, so Snakemake
        # scores the folder again (its own check looks only at the folder's time)
        fused_files=lambda wc: folder_fingerprint(f"results/fused/{wc.dataset}/{wc.method}"),
    log:
        "results/logs/metrics/{dataset}_{method}.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench metrics --convention {params.convention:q} --metrics {params.names:q} "
        "--backend {params.backend:q} {params.device:q} "
        "--sources {params.sources:q} --fused {input.fused:q} --out {output:q} 2> {log:q}"
