import json
import os
import re
import sys

from snakemake.utils import min_version, validate

from fusebench.datasets import DATASETS
from fusebench.methods import METHODS
from fusebench.metrics import CONVENTIONS, METRICS
from fusebench.staleness import drop_set_aside, folder_fingerprint, set_aside_stale
from fusebench.weights import registry as weights_registry

min_version("8.20")


validate(config, schema="../schemas/config.schema.yaml")

# The mirror can come from the config or, for a whole site, from the environment.
MIRROR = config.get("mirror") or os.environ.get("FUSEBENCH_MIRROR") or ""
WEIGHTS_MIRROR = config.get("weights_mirror") or os.environ.get("FUSEBENCH_WEIGHTS_MIRROR") or ""
# results/weights/<folder>/<file> -> registered weights name (fusebench.weights)
WEIGHTS_BY_PATH = {entry.local_path: name for name, entry in weights_registry().items()}
BENCH_DATASETS = config["datasets"]
METHOD_KEYS = list(config["methods"])
TRAINING = config["training"]
PATCH = TRAINING["patch"]


def method_entry(key):
    return config["methods"][key]


def method_class(key):
    return METHODS.get(method_entry(key).get("method", key))


def is_trained(key):
    """A learned method without official weights is trained by the workflow."""
    return method_class(key).learned and "official" not in method_entry(key)


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


def runs_on(key, task):
    per_task = isinstance(method_entry(key).get("official"), dict)
    return task in method_class(key).tasks and (not per_task or bool(official_weights(key, task)))


def methods_for(dataset):
    task = DATASETS.get(dataset).task
    return [key for key in METHOD_KEYS if runs_on(key, task)]


def modalities(dataset):
    return DATASETS.get(dataset).modalities


def flag(name, value):
    """``[name, value]``, or nothing when ``value`` is empty: an optional option for a rule's ``{params.x:q}``,
    which quotes each item (config values never reach the shell unquoted)."""
    return [name, str(value)] if value else []


def max_pairs_arg(split):
    return flag("--max-pairs", config.get("max_train_pairs" if split == "train" else "max_pairs"))


def options_json(key):
    return json.dumps(method_entry(key).get("options", {}), sort_keys=True)


def train_settings(key):
    return {**TRAINING.get("defaults", {}), **method_entry(key).get("train", {})}


def patch_size(key):
    """Methods trained on another patch size than the default say so in their `train` entry."""
    return train_settings(key).get("patch_size", PATCH["size"])


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
for _key in METHOD_KEYS:
    method_class(_key)
    for _name in {name for task in ("ivif", "mif", "mff", "mef") for name in official_weights(_key, task)}:
        if _name not in weights_registry():
            raise ValueError(
                f"methods.{_key}.official: unknown weights {_name!r}; `fusebench fetch-weights list` lists them"
            )
CONVENTIONS.get(config["metrics"]["convention"])
for _metric in config["metrics"]["names"]:
    METRICS.get(_metric)


wildcard_constraints:
    dataset="|".join(DATASETS.names()),
    split="train|test",
    method="|".join(METHOD_KEYS),
    weights_path="|".join(re.escape(path) for path in WEIGHTS_BY_PATH),
