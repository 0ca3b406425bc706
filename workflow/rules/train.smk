rule train:
    input:
        lambda wc: f"results/patches/{wc.dataset}_{patch_size(wc.method)}.npy",
    output:
        # checkpoint.pt and loss.csv live beside model.pt but are not declared outputs, so Snakemake
        # keeps them when a killed job is retried: the retry resumes from the last checkpoint.
        "results/models/{method}/{dataset}/model.pt",
    params:
        name=lambda wc: method_spec(wc.method).name,
        task=lambda wc: train_task(wc.dataset),
        options=lambda wc: options_json(wc.method),
        train_options=lambda wc: json.dumps(training_recipe(wc.method)["options"], sort_keys=True),
        steps=lambda wc: training_recipe(wc.method)["steps"],
        batch_size=lambda wc: training_recipe(wc.method)["batch_size"],
        checkpoint_every=lambda wc: checkpoint_every(wc.method),
        seed=TRAINING["seed"],
        device=TRAINING["device"],
        accel=accel_args(TRAINING),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        "results/logs/train/{method}_{dataset}.log",
    threads: TRAINING["threads"]
    resources:
        gpu=TRAINING["gpu"],
        mem_mb=lambda wc, attempt: TRAINING["mem_mb"] * attempt,
        runtime=lambda wc, attempt: TRAINING["runtime_minutes"] * attempt,
    conda:
        "../../envs/fusebench.yaml"
    shell:
        "fusebench train --method {params.name:q} --task {params.task:q} --options {params.options:q} "
        "--train-options {params.train_options:q} --patches {input:q} --out {params.out:q} "
        "--steps {params.steps:q} --batch-size {params.batch_size:q} --seed {params.seed:q} "
        "--checkpoint-every {params.checkpoint_every:q} --device {params.device:q} {params.accel:q} "
        "--threads {threads} 2> {log:q}"
