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
        "fusebench report --results results --datasets {params.datasets:q} --methods {params.methods:q} "
        "--methods-for {params.methods_for:q} --modalities {params.modalities:q} --convention {params.convention:q} "
        "--title {params.title:q} --examples {params.examples:q} --out {output:q} 2> {log:q}"


onerror:
    # A failed run must not leave a report showing numbers of files that changed or were deleted since.
    aside = set_aside_stale("results/report/index.html", all_metrics(None))
    if aside:
        print(
            f"{aside}: the report was out of date (a metrics table changed or is missing); renamed from "
            "index.html until a run succeeds",
            file=sys.stderr,
        )


onsuccess:
    drop_set_aside("results/report/index.html", all_metrics(None))
