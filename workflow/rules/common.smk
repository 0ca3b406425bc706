import json
import os

from snakemake.utils import min_version, validate

from fusebench.datasets import DATASETS
from fusebench.methods import METHODS
from fusebench.metrics import CONVENTIONS, METRICS

min_version("8.20")


validate(config, schema="../schemas/config.schema.yaml")

# The mirror can come from the config or, for a whole site, from the environment.
MIRROR = config.get("mirror") or os.environ.get("FUSEBENCH_MIRROR") or ""
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


def methods_for(dataset):
    task = DATASETS.get(dataset).task
    return [key for key in METHOD_KEYS if task in method_class(key).tasks]


def modalities(dataset):
    return DATASETS.get(dataset).modalities


def max_pairs_arg(split):
    limit = config.get("max_train_pairs" if split == "train" else "max_pairs")
    return f"--max-pairs {limit}" if limit else ""


def options_json(key):
    return json.dumps(method_entry(key).get("options", {}), sort_keys=True)


for _dataset in BENCH_DATASETS + sorted(set(TRAINING["train_sets"].values())):
    DATASETS.get(_dataset)  # unknown names fail here with the list of known datasets
for _key in METHOD_KEYS:
    method_class(_key)
CONVENTIONS.get(config["metrics"]["convention"])
for _metric in config["metrics"]["names"]:
    METRICS.get(_metric)


wildcard_constraints:
    dataset="|".join(DATASETS.names()),
    split="train|test",
    method="|".join(METHOD_KEYS),
