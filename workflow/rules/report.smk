from fusebench.atomic import write_text_atomic


include: "report_common.smk"


use rule metrics as convention_metrics with:
    output:
        "results/metrics-by-convention/{convention}/{dataset}/{method}.csv",
    log:
        "results/logs/metrics/{convention}/{dataset}_{method}.log",
    params:
        convention=lambda wc: wc.convention,


rule report_plan:
    output:
        "results/summary/plan.json",
    log:
        "results/logs/report_plan.log",
    localrule: True
    params:
        plan=report_plan(),
    run:
        # the plan is data, not a command line: written as it is, no shell quoting involved
        write_text_atomic(output[0], params.plan)


rule summarize:
    input:
        plan="results/summary/plan.json",
        metrics=all_metrics,
        conventions=convention_metrics,
    output:
        expand("results/summary/{dataset}.csv", dataset=BENCH_DATASETS),
        expand("results/summary/{table}.csv", table=SUMMARY_TABLES),
        "results/summary/provenance.json",
    log:
        "results/logs/summarize.log",
    conda:
        "../../envs/fusebench.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "fusebench summarize --plan {input.plan:q} --results results --out results/summary 2> {log:q}"


rule report:
    input:
        plan="results/summary/plan.json",
        summary=rules.summarize.output,
    output:
        report("results/report/index.html", caption="../report/index.rst", category="Report"),
    log:
        "results/logs/report.log",
    conda:
        "../../envs/fusebench.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "fusebench report --plan {input.plan:q} --results results --summary results/summary "
        "--out {output:q} 2> {log:q}"


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
