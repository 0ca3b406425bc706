rule fetch_weights:
    output:
        "results/weights/{weights_path}",
    params:
        name=lambda wc: WEIGHTS_BY_PATH[wc.weights_path],
        mirror=f"--mirror {WEIGHTS_MIRROR}" if WEIGHTS_MIRROR else "",
    log:
        "results/logs/weights/{weights_path}.log",
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench fetch-weights {params.name} --out results/weights {params.mirror} 2> {log}"


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
    log:
        "results/logs/fuse/{dataset}_{method}.log",
    resources:
        gpu=lambda wc: TRAINING["gpu"] if method_spec(wc.method).learned else 0,
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=60,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench fuse --method {params.name} --options '{params.options}' --dataset {wildcards.dataset} "
        "--sources {input.sources} --out {output} {params.weights} --device {params.device} "
        "--protocol {params.protocol:q} 2> {log}"


rule metrics:
    input:
        sources="results/data/{dataset}/test",
        fused="results/fused/{dataset}/{method}",
    output:
        "results/metrics/{dataset}/{method}.csv",
    params:
        a=lambda wc: modalities(wc.dataset)[0],
        b=lambda wc: modalities(wc.dataset)[1],
        convention=config["metrics"]["convention"],
        names=",".join(config["metrics"]["names"]),
        backend=config["metrics"]["backend"],
        # --device only with the torch backend (the command refuses it otherwise)
        device=["--device", config["metrics"]["device"]] if config["metrics"]["backend"] == "torch" else [],
    log:
        "results/logs/metrics/{dataset}_{method}.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench metrics --convention {params.convention} --metrics {params.names} "
        "--backend {params.backend:q} {params.device:q} "
        "--sources {input.sources}/{params.a} {input.sources}/{params.b} --fused {input.fused} "
        "--out {output} 2> {log}"
