# Helpers of the summary and report rules (report.smk): the run's plan and the convention sensitivity runs.
import hashlib

# Conventions the fused images are also scored under (the report's convention sensitivity section).
SENSITIVITY = config["metrics"].get("sensitivity", {})
EXTRA_CONVENTIONS = [c for c in SENSITIVITY.get("conventions", []) if c != config["metrics"]["convention"]]
SENSITIVITY_DATASETS = SENSITIVITY.get("datasets", BENCH_DATASETS)
for _convention in EXTRA_CONVENTIONS:
    CONVENTIONS.get(_convention)  # unknown names fail here with the list of known conventions
for _dataset in SENSITIVITY_DATASETS:
    if _dataset not in BENCH_DATASETS:
        raise ValueError(f"metrics.sensitivity.datasets: {_dataset!r} is not in `datasets` ({BENCH_DATASETS})")
SUMMARY_TABLES = ["ranks", "overall", "significance", "conventions", "efficiency"]


def extra_conventions(dataset):
    return EXTRA_CONVENTIONS if dataset in SENSITIVITY_DATASETS else []


def run_weights(dataset, key):
    """The weights a method entry fused `dataset` with: registered official names or the trained model folder."""
    official = official_weights(key, DATASETS.get(dataset).task)
    if official:
        return {"official": official}
    if is_trained(key):
        return {"model": f"{training_key(key)}/{train_set(dataset)}"}
    return {}


def report_plan():
    """What this run benchmarks, as JSON for `fusebench summarize` and `fusebench report` (fusebench.report.plan)."""
    plan = {
        "title": config["report"]["title"],
        "examples": config["report"]["examples"],
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "convention": config["metrics"]["convention"],
        "datasets": [
            {
                "name": d,
                "task": DATASETS.get(d).task,
                "modalities": list(modalities(d)),
                "methods": methods_for(d),
                "conventions": extra_conventions(d),
            }
            for d in BENCH_DATASETS
        ],
        "methods": [{"key": k, "method": method_spec(k).name, "learned": method_spec(k).learned} for k in METHOD_KEYS],
        "weights": {d: {m: run_weights(d, m) for m in methods_for(d) if run_weights(d, m)} for d in BENCH_DATASETS},
        "skipped": skipped_entries(),
    }
    return json.dumps(plan, indent=2, sort_keys=True) + "\n"


def convention_metrics(wildcards):
    return [
        f"results/metrics-by-convention/{c}/{d}/{m}.csv"
        for d in BENCH_DATASETS
        for c in extra_conventions(d)
        for m in methods_for(d)
    ]
