# fusebench: download -> patches -> train -> fuse -> metrics -> report.
# All logic lives in the fusebench package (src/fusebench); the rules only wire files to its commands.
# Run: snakemake --cores all (config/config.yaml, the full benchmark)
#      snakemake --cores all --configfile config/test.yaml (the small end-to-end run)

# The full benchmark by default; --configfile replaces it (instead of being merged into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report/index.html",
    default_target: True


rule data:
    # DVC's `data` stage: every dataset split the benchmark reads.
    input:
        expand("results/data/{dataset}/test", dataset=BENCH_DATASETS),
        [f"results/data/{d}/train" for d in sorted(set(TRAINING["train_sets"].values()))],


rule models:
    # DVC's `train` stage: every model the benchmark trains.
    input:
        sorted(
            {
                f"results/models/{training_key(m)}/{train_set(d)}/model.pt"
                for d in BENCH_DATASETS
                for m in methods_for(d)
                if is_trained(m)
            }
        ),
