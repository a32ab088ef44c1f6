"""The networks of the SNIP paper, built from the layers in snip_min.py.

Each model reads like its diagram. Parameter counts (conv/linear weights + biases, the
convention of the paper and of ../PAPER.md) are checked by the tests.

    python models.py          a table of every model with its parameter count
    python models.py --json   the same as a JSON list
"""

import argparse
import json
import sys
from dataclasses import dataclass

import snip_min as sm
from snip_min import BatchNorm, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential  # noqa: F401


# ---------------------------------------------------------------------------------------
# LeNets on MNIST (the authors' definitions: no batch norm)
# ---------------------------------------------------------------------------------------

def lenet300(num_classes=10):
    """LeNet-300-100: a multilayer perceptron 784-300-100-classes with ReLU. 266,610 parameters."""
    return Sequential(
        Flatten(),                                  # (N, 28, 28, 1) -> (N, 784)
        Linear(784, 300), ReLU(),
        Linear(300, 100), ReLU(),
        Linear(100, num_classes),
    )


def lenet5(num_classes=10):
    """LeNet-5-Caffe: two 5x5 'valid' convolutions (20, 50 filters) each followed by 2x2
    max-pooling, then fc 800-500 with ReLU and fc 500-classes. As in Caffe's and the
    authors' version, the convolutions have no ReLU. 431,080 parameters."""
    return Sequential(
        Conv2D(1, 20, 5, padding="valid"),          # (N, 28, 28, 1)  -> (N, 24, 24, 20)
        MaxPool2D(2),                               #                 -> (N, 12, 12, 20)
        Conv2D(20, 50, 5, padding="valid"),         #                 -> (N, 8, 8, 50)
        MaxPool2D(2),                               #                 -> (N, 4, 4, 50)
        Flatten(),                                  #                 -> (N, 800)
        Linear(800, 500), ReLU(),
        Linear(500, num_classes),
    )


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    builder: object        # function(num_classes) -> Layer
    dataset: str           # the dataset it is trained on by default
    datasets: tuple        # the datasets it is defined for
    title: str             # the name the paper uses
    epochs: int            # default training length: a good result in minutes on 2 CPU cores


MODELS = {
    # LeNet-300-100 steps ~20x faster than LeNet-5, so it can afford (and needs) more epochs
    "lenet300": ModelInfo(lenet300, "mnist", ("mnist",), "LeNet-300-100", epochs=100),
    "lenet5": ModelInfo(lenet5, "mnist", ("mnist",), "LeNet-5-Caffe", epochs=20),
}

NUM_CLASSES = {"mnist": 10}
INPUT_SHAPE = {"mnist": (28, 28, 1)}    # (H, W, C) of one image

LAYER_PREFIX = {"Conv2D": "conv", "Linear": "fc", "BatchNorm": "bn"}


def name_parameters(model):
    """Name every Param '<layer type><number>.<kind>' in forward order: conv1.weight, fc2.bias, ..."""
    counters = {}
    for layer in sm.layers_of(model):
        if layer.params:
            prefix = LAYER_PREFIX.get(type(layer).__name__, type(layer).__name__.lower())
            counters[prefix] = counters.get(prefix, 0) + 1
            for p in layer.params:
                p.name = f"{prefix}{counters[prefix]}.{p.kind}"
    return model


def build(name, dataset=None, num_classes=None):
    """A fresh, uninitialised model (call snip_min.initialise next)."""
    if name not in MODELS:
        raise sm.UsageError(f"unknown model {name!r} (choose from {', '.join(sorted(MODELS))})")
    info = MODELS[name]
    dataset = dataset or info.dataset
    if dataset not in info.datasets:
        raise sm.UsageError(f"model {name} is defined for {', '.join(info.datasets)}, not {dataset}")
    num_classes = num_classes or NUM_CLASSES[dataset]
    model = info.builder(num_classes=num_classes)
    return sm.skip_input_gradient(name_parameters(model))


def count_parameters(model):
    """Conv/linear weights + biases: the count the paper reports."""
    return sum(p.size for p in sm.parameters_of(model) if p.kind in ("weight", "bias"))


def parameter_table():
    """[{'model', 'dataset', 'params'}] for every model and every dataset it is defined for."""
    return [{"model": name, "dataset": dataset, "params": count_parameters(build(name, dataset))}
            for name, info in MODELS.items() for dataset in info.datasets]


def main(argv=None):
    parser = argparse.ArgumentParser(description="List the models and their parameter counts.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    rows = parameter_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<12} {'title':<16} {'dataset':<14} {'parameters':>12}")
    for row in rows:
        title = MODELS[row["model"]].title
        print(f"{row['model']:<12} {title:<16} {row['dataset']:<14} {row['params']:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
