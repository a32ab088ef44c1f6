"""The networks of the SNIP paper, built from the layers in snip_min.py (the LeNets'),
extensions/zoo_layers.py (batch norm, pooling, residual and concatenation blocks) and
extensions/recurrent.py.

Each model reads like its diagram. Parameter counts (conv/linear weights + biases, the
paper's convention; with batch norm's scales and shifts where the published count includes
them) are checked against the published ones by tests/test_models.py (docs/models.md).

    python models.py          a table of every model with its parameter count
    python models.py --json   the same as a JSON list
"""

import argparse
import json
import sys
from dataclasses import dataclass

import snip_min as sm
from extensions.recurrent import GRU, LSTM, AsSequence
from extensions.zoo_layers import (
    AvgPool2D,
    BatchNorm,
    Concat,
    GlobalAvgPool,
    Identity,
    Residual,
    ZeroChannels,
)
from snip_min import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential

# ---------------------------------------------------------------------------------------
# LeNets on MNIST (the authors' definitions: no batch norm)
# ---------------------------------------------------------------------------------------


def lenet300(num_classes=10):
    """LeNet-300-100: a multilayer perceptron 784-300-100-classes with ReLU. 266,610 parameters."""
    return Sequential(
        Flatten(),  # (N, 28, 28, 1) -> (N, 784)
        Linear(784, 300),
        ReLU(),
        Linear(300, 100),
        ReLU(),
        Linear(100, num_classes),
    )


def lenet5(num_classes=10):
    """LeNet-5-Caffe: two 5x5 'valid' convolutions (20, 50 filters) each followed by 2x2
    max-pooling, then fc 800-500 with ReLU and fc 500-classes. As in Caffe's and the
    authors' version, the convolutions have no ReLU. 431,080 parameters."""
    return Sequential(
        Conv2D(1, 20, 5, padding="valid"),  # (N, 28, 28, 1)  -> (N, 24, 24, 20)
        MaxPool2D(2),  #                 -> (N, 12, 12, 20)
        Conv2D(20, 50, 5, padding="valid"),  #                 -> (N, 8, 8, 50)
        MaxPool2D(2),  #                 -> (N, 4, 4, 50)
        Flatten(),  #                 -> (N, 800)
        Linear(800, 500),
        ReLU(),
        Linear(500, num_classes),
    )


# ---------------------------------------------------------------------------------------
# Building blocks. Every conv/linear layer but the last is followed by batch norm and ReLU.
# Paddings follow the TensorFlow originals ('same': output = ceil(input / stride)).
# ---------------------------------------------------------------------------------------


def conv_bn_relu(c_in, c_out, kernel, stride=1, padding="same"):
    return [Conv2D(c_in, c_out, kernel, stride, padding), BatchNorm(c_out), ReLU()]


def linear_bn_relu(d_in, d_out):
    return [Linear(d_in, d_out), BatchNorm(d_out), ReLU()]


# ---------------------------------------------------------------------------------------
# The authors' CIFAR-10 / Tiny-ImageNet models (the paper's Tables 5 and 6). For the 64x64
# Tiny-ImageNet images the first convolution's stride is doubled.
# ---------------------------------------------------------------------------------------


def alexnet(num_classes, dataset, k):
    """AlexNet-s (k=1) and AlexNet-b (k=2): five 'same' convolutions of stride 2 (the first
    stride 4 on Tiny-ImageNet), which take a 32x32 image down to 1x1, then fc layers of
    1024*k units. There is no pooling."""
    first_stride = 4 if dataset == "tiny-imagenet" else 2
    return Sequential(
        *conv_bn_relu(3, 96, 11, first_stride),
        *conv_bn_relu(96, 256, 5, 2),
        *conv_bn_relu(256, 384, 3, 2),
        *conv_bn_relu(384, 384, 3, 2),
        *conv_bn_relu(384, 256, 3, 2),  # -> (N, 1, 1, 256)
        Flatten(),
        *linear_bn_relu(256, 1024 * k),
        *linear_bn_relu(1024 * k, 1024 * k),
        Linear(1024 * k, num_classes),
    )


# (filters, kernel) of each convolution, 'M' for a 2x2 max-pool
VGG_CONVS = {
    "C": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        (256, 1),
        "M",
        (512, 3),
        (512, 3),
        (512, 1),
        "M",
        (512, 3),
        (512, 3),
        (512, 1),
        "M",
    ],
    "D": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
    ],
}


def vgg(num_classes, dataset, version):
    """VGG-C, VGG-D and VGG-like: thirteen convolutions in five pooled stages (VGG-C has
    1x1 kernels in the last conv of stages 3-5), then fc 512-512-classes (VGG-C/D) or
    512-classes (VGG-like, whose convolutions are VGG-D's)."""
    layers, c_in = [], 3
    for spec in VGG_CONVS["C" if version == "C" else "D"]:
        if spec == "M":
            layers.append(MaxPool2D(2, padding="same"))
        else:
            filters, kernel = spec
            stride = 2 if (dataset == "tiny-imagenet" and not layers) else 1
            layers += conv_bn_relu(c_in, filters, kernel, stride)
            c_in = filters
    layers += [Flatten(), *linear_bn_relu(512, 512)]  # 32x32 -> 1x1x512
    if version != "like":
        layers += linear_bn_relu(512, 512)
    layers.append(Linear(512, num_classes))
    return Sequential(*layers)


# ---------------------------------------------------------------------------------------
# The student reproduction's models (CIFAR-10), as defined in its snip/network.py
# ---------------------------------------------------------------------------------------


def basic_block(c_in, c_out, stride):
    """ResNet's basic block: two 3x3 convolutions, added to a shortcut, then ReLU. When the
    block halves the resolution, the shortcut is parameter-free: a 2x2 average pool and
    zero channels for the new width."""
    body = Sequential(
        *conv_bn_relu(c_in, c_out, 3, stride),
        Conv2D(c_out, c_out, 3, padding="same"),
        BatchNorm(c_out),
    )
    if stride == 1 and c_in == c_out:
        shortcut = Identity()
    else:
        shortcut = Sequential(AvgPool2D(stride, padding="same"), ZeroChannels(c_out - c_in))
    return [Residual(body, shortcut), ReLU()]


def resnet(num_classes, dataset, blocks):
    """ResNet-18 ([2, 2, 2, 2]) and ResNet-34 ([3, 4, 6, 3]) for 32x32 images: a 3x3 stem
    without max-pool, four stages of widths 64-128-256-512 (each but the first halving the
    resolution in its first block), global average pool, fc."""
    layers, c_in = conv_bn_relu(3, 64, 3), 64
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        for index in range(count):
            layers += basic_block(c_in, width, 2 if stage > 0 and index == 0 else 1)
            c_in = width
    return Sequential(*layers, GlobalAvgPool(), Linear(512, num_classes))


def fire(c_in, squeeze, expand):
    """SqueezeNet's fire module: a 1x1 'squeeze' convolution, then 1x1 and 3x3 'expand'
    convolutions side by side, concatenated, then ReLU."""
    return Sequential(
        *conv_bn_relu(c_in, squeeze, 1),
        Concat(
            Sequential(Conv2D(squeeze, expand, 1), BatchNorm(expand)),
            Sequential(Conv2D(squeeze, expand, 3, padding="same"), BatchNorm(expand)),
        ),
        ReLU(),
    )


SQUEEZENET_FIRES = [
    (96, 16, 64),
    (128, 16, 64),
    (128, 32, 128),
    (256, 32, 128),  # fires 2-5
    (256, 48, 192),
    (384, 48, 192),
    (384, 64, 256),
    (512, 64, 256),
]  # fires 6-9


def squeezenet(num_classes, dataset, bypass):
    """SqueezeNet: a 7x7 stride-2 stem (batch norm, no ReLU) and a 3x3 stride-2 max-pool,
    fires 2-9 with max-pools after fires 4 and 8, a 1x1 convolution to the classes and a
    global average pool. The bypass version adds identity shortcuts around fires 3, 5, 7, 9."""
    layers = [Conv2D(3, 96, 7, 2, "same"), BatchNorm(96), MaxPool2D(3, 2)]
    for number, (c_in, squeeze, expand) in enumerate(SQUEEZENET_FIRES, start=2):
        module = fire(c_in, squeeze, expand)
        layers.append(Residual(module) if bypass and number in (3, 5, 7, 9) else module)
        if number in (4, 8):
            layers.append(MaxPool2D(3, 2))
    return Sequential(*layers, Conv2D(512, num_classes, 1), GlobalAvgPool())


# (input channels, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection): GoogLeNet's table
INCEPTIONS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def inception(c_in, c1, r3, c3, r5, c5, pool_projection, k3, k5):
    """Four branches side by side, concatenated: 1x1; 1x1 then k3 x k3; 1x1 then k5 x k5;
    3x3 max-pool then 1x1."""
    return Concat(
        Sequential(*conv_bn_relu(c_in, c1, 1)),
        Sequential(*conv_bn_relu(c_in, r3, 1), *conv_bn_relu(r3, c3, k3)),
        Sequential(*conv_bn_relu(c_in, r5, 1), *conv_bn_relu(r5, c5, k5)),
        Sequential(MaxPool2D(3, 1, "same"), *conv_bn_relu(c_in, pool_projection, 1)),
    )


def googlenet(num_classes, dataset, full_kernels):
    """GoogLeNet: a 7x7 stride-2 stem, 1x1 and 3x3 convolutions, nine inception modules
    (3a-b, 4a-e, 5a-b) with stride-2 max-pools between the groups, global average pool, fc.
    The student reproduction declared the '3x3' and '5x5' branch convolutions as 1x1
    (2,754,106 parameters, the published count, our default); full_kernels=True gives them
    their true 3x3 and 5x5 sizes (5,983,802). The students also apply dropout before the
    pool; it has no parameters and is left out here."""
    k3, k5 = (3, 5) if full_kernels else (1, 1)
    pool = lambda: MaxPool2D(3, 2, "same")  # noqa: E731
    modules = {name: inception(*widths, k3, k5) for name, widths in INCEPTIONS.items()}
    return Sequential(
        *conv_bn_relu(3, 64, 7, 2),
        pool(),
        *conv_bn_relu(64, 64, 1),
        *conv_bn_relu(64, 192, 3),
        pool(),
        modules["3a"],
        modules["3b"],
        pool(),
        modules["4a"],
        modules["4b"],
        modules["4c"],
        modules["4d"],
        modules["4e"],
        pool(),
        modules["5a"],
        modules["5b"],
        GlobalAvgPool(),
        Linear(1024, num_classes),
    )


def dense_layer(c_in, growth):
    """DenseNet's layer: keep the input and append `growth` new channels computed from it by
    BN-ReLU-1x1 conv (4*growth) -BN-ReLU-3x3 conv (growth)."""
    return Concat(
        Identity(),
        Sequential(
            BatchNorm(c_in),
            ReLU(),
            Conv2D(c_in, 4 * growth, 1),
            BatchNorm(4 * growth),
            ReLU(),
            Conv2D(4 * growth, growth, 3, padding="same"),
        ),
    )


def densenet(num_classes, dataset, blocks, growth=32):
    """The student reproduction's DenseNet: batch norm and ReLU on the input, a 7x7 stride-2
    convolution to 32 channels and a 3x3 stride-2 max-pool; dense blocks of the given
    lengths, each STARTING FROM 32 channels, with transitions (BN-ReLU-1x1 conv to 32
    channels, 2x2 average pool) between them; global average pool and fc."""
    layers = [BatchNorm(3), ReLU(), Conv2D(3, growth, 7, 2, "same"), MaxPool2D(3, 2, "same")]
    for number, count in enumerate(blocks):
        channels = growth
        for _ in range(count):
            layers.append(dense_layer(channels, growth))
            channels += growth
        if number < len(blocks) - 1:
            layers += [
                BatchNorm(channels),
                ReLU(),
                Conv2D(channels, growth, 1),
                AvgPool2D(2, padding="same"),
            ]
    return Sequential(*layers, GlobalAvgPool(), Linear(channels, num_classes))


# ---------------------------------------------------------------------------------------
# Wide ResNets (the paper's Table 2): Zagoruyko & Komodakis's pre-activation blocks, no conv
# biases, a 1x1 convolution as the shortcut where the shape changes.
# ---------------------------------------------------------------------------------------


def wide_block(c_in, c_out, stride):
    """BN-ReLU-3x3 conv-BN-ReLU-3x3 conv plus a shortcut. Where the shape changes, the
    block's first BN-ReLU is shared: the 1x1 shortcut convolution sees the activated input."""
    convs = [
        Conv2D(c_in, c_out, 3, stride, padding=1, bias=False),
        BatchNorm(c_out),
        ReLU(),
        Conv2D(c_out, c_out, 3, 1, padding=1, bias=False),
    ]
    if stride == 1 and c_in == c_out:
        return Residual(Sequential(BatchNorm(c_in), ReLU(), *convs))
    shortcut = Conv2D(c_in, c_out, 1, stride, bias=False)
    return Sequential(BatchNorm(c_in), ReLU(), Residual(Sequential(*convs), shortcut))


def wide_resnet(num_classes, dataset, depth, k):
    """WRN-depth-k: a 3x3 stem of 16 channels, three groups of (depth - 4) / 6 blocks of
    widths 16k, 32k, 64k (the second and third halving the resolution), BN-ReLU, global
    average pool, fc."""
    blocks = (depth - 4) // 6
    layers, c_in = [Conv2D(3, 16, 3, padding=1, bias=False)], 16
    for group, width in enumerate((16 * k, 32 * k, 64 * k)):
        for index in range(blocks):
            layers.append(wide_block(c_in, width, 2 if group > 0 and index == 0 else 1))
            c_in = width
    return Sequential(*layers, BatchNorm(c_in), ReLU(), GlobalAvgPool(), Linear(c_in, num_classes))


# ---------------------------------------------------------------------------------------
# Recurrent networks on sequential MNIST (the paper's Table 2): each image is read as a
# sequence of its 28 rows of 28 pixels, one row per step (the -pixels variants: 784 steps
# of one pixel).
# ---------------------------------------------------------------------------------------


def recurrent_classifier(layer, hidden, num_classes, pixels=False):
    """LSTM-s/-b, GRU-s/-b: one LSTM or GRU layer of `hidden` units (128: -s, 256: -b) over
    the 28 rows, and a linear classifier on its last hidden state. LSTM-s: 81,674 parameters
    (4 gates x (28*128 + 128*128 + 128) + 128*10 + 10). pixels=True reads one pixel per step
    instead, 784 steps of one value (the -pixels models): LSTM-s 67,850 parameters."""
    return Sequential(
        AsSequence(pixels),  # (N, 28, 28, 1) -> (N, T=28, D=28), or (N, 784, 1)
        layer(1 if pixels else 28, hidden),  #                -> (N, hidden), h_T
        Linear(hidden, num_classes),
    )


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    builder: object  # function(num_classes, dataset) -> Layer
    dataset: str  # the dataset it is trained on by default
    datasets: tuple  # the datasets it is defined for (and their DROP_IN replacements)
    title: str  # the name the paper uses
    iterations: int = (
        None  # default training length on MNIST (other datasets: the paper's schedule)
    )
    counts_batch_norm: bool = False  # published count includes batch-norm scales and shifts
    # snip_min.py's default --clip-norm for it (None: no clipping), a remedy the paper does
    # not use: Experiment I (experiments/defaults.py) found LeNet-5-Caffe diverging in its
    # first 20 iterations at every sparsity below 98% under the paper's settings, and training
    # at every sparsity and seed with clipping at norm 1 (docs/choices.md)
    clip_norm: float = None


AUTHORS = ("cifar10", "tiny-imagenet")
CIFAR = ("cifar10",)

MODELS = {
    # Default MNIST schedules, the learning rate x0.1 after 50% and 75% of them: about 7
    # minutes of LeNet-5-Caffe on two CPU cores, whatever the size of the training set;
    # LeNet-300-100 steps ~20x faster, so it can afford (and needs) more iterations.
    "lenet300": ModelInfo(
        lambda n, d: lenet300(n), "mnist", ("mnist",), "LeNet-300-100", iterations=22_000
    ),
    "lenet5": ModelInfo(
        lambda n, d: lenet5(n),
        "mnist",
        ("mnist",),
        "LeNet-5-Caffe",
        iterations=12_000,
        clip_norm=1.0,
    ),
    # The recurrent nets run 28 steps per image: 10,000 iterations (46 epochs of 21,911 images)
    # take about 4-5 minutes on one core for -s, 11-14 for -b.
    "lstm-s": ModelInfo(
        lambda n, d: recurrent_classifier(LSTM, 128, n),
        "mnist",
        ("mnist",),
        "LSTM-s",
        iterations=10_000,
    ),
    "lstm-b": ModelInfo(
        lambda n, d: recurrent_classifier(LSTM, 256, n),
        "mnist",
        ("mnist",),
        "LSTM-b",
        iterations=10_000,
    ),
    "gru-s": ModelInfo(
        lambda n, d: recurrent_classifier(GRU, 128, n),
        "mnist",
        ("mnist",),
        "GRU-s",
        iterations=10_000,
    ),
    "gru-b": ModelInfo(
        lambda n, d: recurrent_classifier(GRU, 256, n),
        "mnist",
        ("mnist",),
        "GRU-b",
        iterations=10_000,
    ),
    # The same, one pixel per step: 784 steps an image, 28 times the work of the rows
    "lstm-s-pixels": ModelInfo(
        lambda n, d: recurrent_classifier(LSTM, 128, n, pixels=True),
        "mnist",
        ("mnist",),
        "LSTM-s (pixels)",
        iterations=10_000,
    ),
    "lstm-b-pixels": ModelInfo(
        lambda n, d: recurrent_classifier(LSTM, 256, n, pixels=True),
        "mnist",
        ("mnist",),
        "LSTM-b (pixels)",
        iterations=10_000,
    ),
    "gru-s-pixels": ModelInfo(
        lambda n, d: recurrent_classifier(GRU, 128, n, pixels=True),
        "mnist",
        ("mnist",),
        "GRU-s (pixels)",
        iterations=10_000,
    ),
    "gru-b-pixels": ModelInfo(
        lambda n, d: recurrent_classifier(GRU, 256, n, pixels=True),
        "mnist",
        ("mnist",),
        "GRU-b (pixels)",
        iterations=10_000,
    ),
    "alexnet-s": ModelInfo(lambda n, d: alexnet(n, d, k=1), "cifar10", AUTHORS, "AlexNet-s"),
    "alexnet-b": ModelInfo(lambda n, d: alexnet(n, d, k=2), "cifar10", AUTHORS, "AlexNet-b"),
    "vgg-c": ModelInfo(lambda n, d: vgg(n, d, "C"), "cifar10", AUTHORS, "VGG-C"),
    "vgg-d": ModelInfo(lambda n, d: vgg(n, d, "D"), "cifar10", AUTHORS, "VGG-D"),
    "vgg-like": ModelInfo(lambda n, d: vgg(n, d, "like"), "cifar10", AUTHORS, "VGG-like"),
    "resnet18": ModelInfo(lambda n, d: resnet(n, d, [2, 2, 2, 2]), "cifar10", CIFAR, "ResNet-18"),
    "resnet34": ModelInfo(lambda n, d: resnet(n, d, [3, 4, 6, 3]), "cifar10", CIFAR, "ResNet-34"),
    "squeezenet": ModelInfo(
        lambda n, d: squeezenet(n, d, bypass=False), "cifar10", CIFAR, "SqueezeNet (vanilla)"
    ),
    "squeezenet-bypass": ModelInfo(
        lambda n, d: squeezenet(n, d, bypass=True), "cifar10", CIFAR, "SqueezeNet (bypass)"
    ),
    "googlenet": ModelInfo(
        lambda n, d: googlenet(n, d, full_kernels=False),
        "cifar10",
        CIFAR,
        "GoogLeNet (as published)",
    ),
    "googlenet-full": ModelInfo(
        lambda n, d: googlenet(n, d, full_kernels=True), "cifar10", CIFAR, "GoogLeNet (3x3/5x5)"
    ),
    "densenet121": ModelInfo(
        lambda n, d: densenet(n, d, [6, 12, 24, 16]), "cifar10", CIFAR, "DenseNet-121"
    ),
    "densenet169": ModelInfo(
        lambda n, d: densenet(n, d, [6, 12, 32, 32]), "cifar10", CIFAR, "DenseNet-169"
    ),
    "densenet201": ModelInfo(
        lambda n, d: densenet(n, d, [6, 12, 48, 32]), "cifar10", CIFAR, "DenseNet-201"
    ),
    "densenet264": ModelInfo(
        lambda n, d: densenet(n, d, [6, 12, 64, 48]), "cifar10", CIFAR, "DenseNet-264"
    ),
    "wrn-16-8": ModelInfo(
        lambda n, d: wide_resnet(n, d, 16, 8), "cifar10", CIFAR, "WRN-16-8", counts_batch_norm=True
    ),
    "wrn-16-10": ModelInfo(
        lambda n, d: wide_resnet(n, d, 16, 10),
        "cifar10",
        CIFAR,
        "WRN-16-10",
        counts_batch_norm=True,
    ),
    "wrn-22-8": ModelInfo(
        lambda n, d: wide_resnet(n, d, 22, 8), "cifar10", CIFAR, "WRN-22-8", counts_batch_norm=True
    ),
}

# A drop-in replacement has the images and classes of the dataset it replaces: every model
# defined for that one takes it as it is (Fashion-MNIST's 28x28 grey images, 10 classes).
DROP_IN = {"fashion-mnist": "mnist"}

NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "tiny-imagenet": 200}
INPUT_SHAPE = {
    "mnist": (28, 28, 1),
    "fashion-mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "tiny-imagenet": (64, 64, 3),
}  # (H, W, C)

LAYER_PREFIX = {"Conv2D": "conv", "Linear": "fc", "BatchNorm": "bn", "LSTM": "lstm", "GRU": "gru"}


def name_parameters(model):
    """Name every Param '<layer type><number>.<role>' in forward order: conv1.weight, fc2.bias,
    lstm1.recurrent_weight, ... The role is the Param's kind unless it carries a role of its
    own (a recurrent layer has two weight matrices and, for a GRU, two biases)."""
    counters = {}
    for layer in sm.layers_of(model):
        if layer.params:
            prefix = LAYER_PREFIX.get(type(layer).__name__, type(layer).__name__.lower())
            counters[prefix] = counters.get(prefix, 0) + 1
            for p in layer.params:
                p.name = f"{prefix}{counters[prefix]}.{p.role or p.kind}"
    return model


def build(name, dataset=None, num_classes=None):
    """A fresh, uninitialised model (call snip_min.initialise next)."""
    if name not in MODELS:
        raise sm.UsageError(f"unknown model {name!r} (choose from {', '.join(sorted(MODELS))})")
    info = MODELS[name]
    dataset = dataset or info.dataset
    defined_for = DROP_IN.get(dataset, dataset)
    if defined_for not in info.datasets:
        takes = [
            *info.datasets,
            *(d for d, replaced in DROP_IN.items() if replaced in info.datasets),
        ]
        raise sm.UsageError(f"model {name} is defined for {', '.join(takes)}, not {dataset}")
    num_classes = num_classes or NUM_CLASSES[dataset]
    model = info.builder(num_classes, defined_for)
    return sm.skip_input_gradient(name_parameters(model))


COUNTED_KINDS = ("weight", "bias")
COUNTED_KINDS_WITH_BATCH_NORM = ("weight", "bias", "scale", "shift")


def count_parameters(model, batch_norm=False):
    """Conv/linear weights + biases, the count the paper reports; with batch_norm=True also
    the batch norms' scales and shifts (the Wide ResNets' published convention)."""
    kinds = COUNTED_KINDS_WITH_BATCH_NORM if batch_norm else COUNTED_KINDS
    return sum(p.size for p in sm.parameters_of(model) if p.kind in kinds)


def parameter_table():
    """[{'model', 'dataset', 'params'}] for every model and every dataset it is defined for,
    each count in the convention its source publishes."""
    return [
        {
            "model": name,
            "dataset": dataset,
            "params": count_parameters(build(name, dataset), info.counts_batch_norm),
        }
        for name, info in MODELS.items()
        for dataset in info.datasets
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description="List the models and their parameter counts.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    rows = parameter_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<18} {'title':<25} {'dataset':<14} {'parameters':>12}")
    for row in rows:
        info = MODELS[row["model"]]
        note = "  (with batch norm)" if info.counts_batch_norm else ""
        print(
            f"{row['model']:<18} {info.title:<25} {row['dataset']:<14} {row['params']:>12,}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
