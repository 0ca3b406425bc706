rule report:
    input:
        all_metrics,
    output:
        report("results/report/index.html", caption="../report/index.rst", category="Report"),
    params:
        datasets=",".join(BENCH_DATASETS),
        methods=",".join(METHOD_KEYS),
        methods_for=";".join(f"{d}={','.join(methods_for(d))}" for d in BENCH_DATASETS),
        modalities=";".join(f"{d}={','.join(modalities(d))}" for d in BENCH_DATASETS),
        convention=config["metrics"]["convention"],
        title=config["report"]["title"],
        examples=config["report"]["examples"],
    log:
        "results/logs/report.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench report --results results --datasets {params.datasets} --methods {params.methods} "
        "--methods-for '{params.methods_for}' --modalities {params.modalities:q} --convention {params.convention} "
        "--title '{params.title}' --examples {params.examples} --out {output} 2> {log}"
