import json
import os
import re
import sys

from snakemake.utils import min_version, validate

# Everything imported here is torch-free: building the DAG (`snakemake -n`) imports no network.
from fusebench.datasets import DATASETS as REGISTERED_DATASETS, with_local
from fusebench.datasets.folders import source_files
from fusebench.methods import METHODS, OptionError
from fusebench.metrics import CONVENTIONS, METRICS
from fusebench.staleness import drop_set_aside, folder_fingerprint, set_aside_stale
from fusebench.weights import mirror_location as weights_mirror_location, registry as weights_registry

min_version("8.20")


validate(config, schema="../schemas/config.schema.yaml")

# The mirror can come from the config or, for a whole site, from the environment.
MIRROR = config.get("mirror") or os.environ.get("FUSEBENCH_MIRROR") or ""
WEIGHTS_MIRROR = config.get("weights_mirror") or os.environ.get("FUSEBENCH_WEIGHTS_MIRROR") or ""
# results/weights/<folder>/<file> -> registered weights name (fusebench.weights)
WEIGHTS_BY_PATH = {entry.local_path: name for name, entry in weights_registry().items()}
# registered datasets plus the config's own (local_datasets)
DATASETS = with_local(REGISTERED_DATASETS, config.get("local_datasets"), "config local_datasets")
BENCH_DATASETS = config["datasets"]
METHOD_KEYS = list(config["methods"])
TRAINING = config["training"]
PATCH = TRAINING["patch"]


def method_entry(key):
    return config["methods"][key]


def method_spec(key):
    """The catalogue entry (name, tasks, options, recipe) of the method of config entry `key`."""
    return METHODS.spec(method_entry(key).get("method", key))


def is_trained(key):
    """A learned method without official weights is trained by the workflow."""
    return method_spec(key).learned and "official" not in method_entry(key)


def training_key(key):
    """Entries that differ only at fusion time (e.g. the fusion strategy) share one trained model."""
    return method_entry(key).get("weights_of", key)


def train_set(dataset):
    """The dataset whose train split trains the models used on `dataset` (by task)."""
    sets = TRAINING["train_sets"]
    task = DATASETS.get(dataset).task
    return sets.get(task, sets["default"])


def official_weights(key, task):
    """Registered official weights of entry `key` for `task`: a list of names (several for a TF1 checkpoint,
    .index first), empty if the entry has none for the task (a mapping gives them per task)."""
    official = method_entry(key).get("official")
    if isinstance(official, dict):
        official = official.get(task)
    if official is None:
        return []
    return [official] if isinstance(official, str) else list(official)


def weights_present(name):
    """Whether registered weights are here without a download: fetched into results/weights, or in a local
    weights mirror (a URL mirror is taken to hold them; fetch_weights checks every file either way)."""
    entry = weights_registry()[name]
    if os.path.isfile(f"results/weights/{entry.local_path}"):
        return True
    if not WEIGHTS_MIRROR:
        return False
    location = weights_mirror_location(entry, WEIGHTS_MIRROR)
    return "://" in location or os.path.isfile(location)


def missing_weights(key, task):
    """Official weights of an `if_weights_present` entry that are not here for `task` (the entry then does not
    run on that task; the report says why). Other entries fetch what they need and miss nothing."""
    if not method_entry(key).get("if_weights_present"):
        return []
    return [name for name in official_weights(key, task) if not weights_present(name)]


def applies_to(key, task):
    per_task = isinstance(method_entry(key).get("official"), dict)
    return task in method_spec(key).tasks and (not per_task or bool(official_weights(key, task)))


def runs_on(key, task):
    return applies_to(key, task) and not missing_weights(key, task)


def skipped_entries():
    """Entries left out of datasets for want of their weights: [{key, datasets, missing}] for the report."""
    task_of = {d: DATASETS.get(d).task for d in BENCH_DATASETS}
    skipped = []
    for key in METHOD_KEYS:
        datasets = [d for d, task in task_of.items() if applies_to(key, task) and not runs_on(key, task)]
        if datasets:
            missing = sorted({n for d in datasets for n in missing_weights(key, task_of[d])})
            skipped.append({"key": key, "datasets": datasets, "missing": missing})
    return skipped


def methods_for(dataset):
    task = DATASETS.get(dataset).task
    return [key for key in METHOD_KEYS if runs_on(key, task)]


def modalities(dataset):
    return DATASETS.get(dataset).modalities


def source_args(dataset):
    """How `fusebench download` gets a dataset from outside the package: its definition, or the archive
    the user downloaded."""
    if dataset in config.get("local_datasets", {}):
        return ["--definition", json.dumps(config["local_datasets"][dataset], sort_keys=True)]
    archive = config.get("archives", {}).get(dataset)
    return ["--archive", archive] if archive else []


def download_inputs(wc):
    """A config-defined dataset's source images: changing them makes its copy run again."""
    if wc.dataset not in config.get("local_datasets", {}):
        return []
    return [str(path) for path in source_files(DATASETS.get(wc.dataset), wc.split, MIRROR or None)]


def flag(name, value):
    """``[name, value]``, or nothing when ``value`` is empty: an optional option for a rule's ``{params.x:q}``,
    which quotes each item (config values never reach the shell unquoted)."""
    return [name, str(value)] if value else []


def accel_args(settings):
    """`--precision`, `--channels-last`, `--compile` for the performance options of a config section (training,
    fusion; docs/performance.md). Only those that differ from the defaults: a config without them runs the
    commands with the parameters it always had."""
    precision = settings.get("precision", "fp32")
    return (
        flag("--precision", precision if precision != "fp32" else "")
        + (["--channels-last"] if settings.get("channels_last") else [])
        + (["--compile"] if settings.get("compile") else [])
    )


def max_pairs_arg(split):
    return flag("--max-pairs", config.get("max_train_pairs" if split == "train" else "max_pairs"))


def options_json(key):
    return json.dumps(method_entry(key).get("options", {}), sort_keys=True)


def _without_checkpointing(settings):
    return {k: v for k, v in settings.items() if k != "checkpoint_every"}


def training_recipe(key):
    """The method's paper recipe (catalogue), overridden by `training.defaults`, then by the entry's `train`:
    {steps, batch_size, patch_size, options}."""
    layers = (TRAINING.get("defaults", {}), method_entry(key).get("train", {}))
    return method_spec(key).training(*map(_without_checkpointing, layers))


def checkpoint_every(key):
    return {"checkpoint_every": 1000, **TRAINING.get("defaults", {}), **method_entry(key).get("train", {})}[
        "checkpoint_every"
    ]


def patch_size(key):
    return training_recipe(key)["patch_size"]


def train_task(dataset):
    """Training gets the task of its train set, as fusion gets the test set's (e.g. ReFusion's input order)."""
    return DATASETS.get(dataset).task


def all_metrics(wildcards):
    return [f"results/metrics/{d}/{m}.csv" for d in BENCH_DATASETS for m in methods_for(d)]


def weights_input(wc):
    official = official_weights(wc.method, DATASETS.get(wc.dataset).task)
    if official:
        return [f"results/weights/{weights_registry()[name].local_path}" for name in official]
    if is_trained(wc.method):
        return [f"results/models/{training_key(wc.method)}/{train_set(wc.dataset)}/model.pt"]
    return []


def weights_arg(wc, input):
    """A checkpoint of several files is passed by its first one; the method finds the others beside it."""
    if not input.weights:
        return []
    official = official_weights(wc.method, DATASETS.get(wc.dataset).task)
    return flag("--official" if official else "--weights", input.weights[0])


for _dataset in BENCH_DATASETS + sorted(set(TRAINING["train_sets"].values())):
    DATASETS.get(_dataset)  # unknown names fail here with the list of known datasets


def check_method_entry(key):
    """Fail at DAG build, naming the config key, for what would otherwise fail late: unknown method names,
    option keys or values (method and trainer options), weights and `weights_of` targets."""
    entry, spec = method_entry(key), method_spec(key)
    try:
        spec.check_options(entry.get("options", {}))
        for name in {name for task in ("ivif", "mif", "mff", "mef") for name in official_weights(key, task)}:
            if name not in weights_registry():
                raise ValueError(f"unknown weights {name!r}; `fusebench fetch-weights list` lists them")
            spec.with_weights(name, entry.get("options", {}))
        if entry.get("protocol") == "official" and not spec.official_protocol:
            raise ValueError(
                f"protocol official, but {spec.name} has no official test-time procedure in fusebench; "
                "use protocol fusebench"
            )
        if entry.get("if_weights_present") and "official" not in entry:
            raise ValueError("if_weights_present needs `official` weights (it skips the entry where they are absent)")
        if "train" in entry and not is_trained(key):
            raise ValueError("`train` is given but this entry is not trained (not learned, or official weights)")
        if is_trained(key):
            training_recipe(key)
        if "weights_of" in entry:
            source = entry["weights_of"]
            if source not in config["methods"] or source == key or not is_trained(source):
                trained = [k for k in METHOD_KEYS if is_trained(k) and k != key]
                raise ValueError(
                    f"weights_of: {source!r} is not another trained entry of this config; "
                    f"trained entries: {', '.join(trained) or '(none)'}"
                )
            if method_spec(source).name != spec.name:
                raise ValueError(f"weights_of: {source!r} trains {method_spec(source).name}, not {spec.name}")
    except (OptionError, ValueError) as exc:
        raise ValueError(f"config methods.{key}: {exc}") from None


for _dataset in config.get("archives", {}):
    if DATASETS.get(_dataset).kind != "archive":
        raise ValueError(f"archives.{_dataset}: {_dataset} is not an archive dataset; it takes no archive file")
for _key in METHOD_KEYS:
    check_method_entry(_key)
for _skipped in skipped_entries():
    print(
        f"fusebench: not running {_skipped['key']} on {', '.join(_skipped['datasets'])}: weights "
        f"{', '.join(_skipped['missing'])} are neither in results/weights nor in the weights mirror "
        f"(`fusebench fetch-weights NAME --out results/weights` brings them where upstream can be reached)",
        file=sys.stderr,
    )
CONVENTIONS.get(config["metrics"]["convention"])
for _metric in config["metrics"]["names"]:
    METRICS.get(_metric)


wildcard_constraints:
    dataset="|".join(DATASETS.names()),
    split="train|test",
    method="|".join(METHOD_KEYS),
    weights_path="|".join(re.escape(path) for path in WEIGHTS_BY_PATH),
