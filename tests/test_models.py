"""The model zoo: parameter counts equal the published ones, every model maps images to class
scores, and each family's whole network differentiates correctly (and, when PyTorch is
installed, computes what PyTorch computes)."""

import json
import os
import subprocess
import sys

import numpy
import pytest

import models
import snip_min as sm
from extensions.zoo_layers import AvgPool2D, BatchNorm, GlobalAvgPool, Residual
from helpers import array
from models import (
    basic_block,
    conv_bn_relu,
    dense_layer,
    fire,
    inception,
    linear_bn_relu,
    wide_block,
)
from snip_min import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The published counts (the paper, the student reproduction): conv/linear weights + biases
# (Wide ResNets: all parameters, batch norm included)
PUBLISHED = {
    ("lenet300", "mnist"): 266_610,
    ("lenet5", "mnist"): 431_080,
    ("alexnet-s", "cifar10"): 5_070_218,
    ("alexnet-s", "tiny-imagenet"): 5_264_968,
    ("alexnet-b", "cifar10"): 8_490_378,
    ("alexnet-b", "tiny-imagenet"): 8_879_688,
    ("vgg-c", "cifar10"): 10_526_538,
    ("vgg-c", "tiny-imagenet"): 10_624_008,
    ("vgg-d", "cifar10"): 15_245_130,
    ("vgg-d", "tiny-imagenet"): 15_342_600,
    ("vgg-like", "cifar10"): 14_982_474,
    ("vgg-like", "tiny-imagenet"): 15_079_944,
    ("resnet18", "cifar10"): 10_996_234,
    ("resnet34", "cifar10"): 21_100_682,
    ("squeezenet", "cifar10"): 740_554,
    ("squeezenet-bypass", "cifar10"): 740_554,
    ("googlenet", "cifar10"): 2_754_106,
    ("googlenet-full", "cifar10"): 5_983_802,
    ("densenet121", "cifar10"): 4_395_114,
    ("densenet169", "cifar10"): 7_836_522,
    ("densenet201", "cifar10"): 11_099_498,
    ("densenet264", "cifar10"): 18_662_762,
    ("wrn-16-8", "cifar10"): 10_961_370,
    ("wrn-16-10", "cifar10"): 17_116_634,
    ("wrn-22-8", "cifar10"): 17_158_106,
}
# The recurrent models' counts, as defined here (one layer over 28 rows of 28 pixels, a
# linear classifier; the paper's Table 2 counts were not available to check against):
# LSTM 4 gates x (28 H + H^2 + H) + 10 H + 10, GRU 3 gates x (28 H + H^2 + H) + H + 10 H + 10
DEFINED_HERE = {
    ("lstm-s", "mnist"): 81_674,
    ("lstm-b", "mnist"): 294_410,
    ("gru-s", "mnist"): 61_706,
    ("gru-b", "mnist"): 221_706,
    # one pixel per step (D = 1):
    ("lstm-s-pixels", "mnist"): 67_850,
    ("lstm-b-pixels", "mnist"): 266_762,
    ("gru-s-pixels", "mnist"): 51_338,
    ("gru-b-pixels", "mnist"): 200_970,
}
ALL_COUNTS = {**PUBLISHED, **DEFINED_HERE}


def test_every_published_count_is_reproduced_exactly():
    table = {(row["model"], row["dataset"]): row["params"] for row in models.parameter_table()}
    assert table == ALL_COUNTS


def test_models_json_lists_every_model_and_dataset():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "models.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["model"], r["dataset"]): r["params"] for r in rows} == ALL_COUNTS
    assert all(set(r) == {"model", "dataset", "params"} for r in rows)


@pytest.mark.parametrize("name,dataset", sorted(ALL_COUNTS))
def test_every_model_maps_a_batch_of_images_to_class_scores(name, dataset):
    rng = numpy.random.default_rng(0)
    model = models.build(name, dataset)
    sm.initialise(model, "vs-h", rng)
    x = sm.xp.asarray(rng.standard_normal((2,) + models.INPUT_SHAPE[dataset]), dtype=sm.xp.float32)
    y = model.forward(x, train=True)
    assert y.shape == (2, models.NUM_CLASSES[dataset]) and bool(sm.xp.isfinite(y).all())


def test_a_model_refuses_a_dataset_it_is_not_defined_for():
    with pytest.raises(sm.UsageError, match="resnet18 is defined for cifar10"):
        models.build("resnet18", "tiny-imagenet")


def test_vgg_d_at_95_percent_keeps_762257_of_15245130():
    # kappa = round((1 - 0.95) * 15,245,130) = round(762,256.50000000007) in float64
    assert sm.kappa_for(0.95, 15_245_130) == 762_257


# --- each family at a reduced width: the whole network's gradient ---------------------------

FAMILIES = {
    # name: (builder, input (H, W, C))
    "alexnet": (
        lambda: Sequential(
            *conv_bn_relu(3, 4, 5, 2),
            *conv_bn_relu(4, 5, 3, 2),
            Flatten(),
            *linear_bn_relu(20, 6),
            Linear(6, 3),
        ),
        (8, 8, 3),
    ),
    "vgg": (
        lambda: Sequential(
            *conv_bn_relu(3, 4, 3),
            *conv_bn_relu(4, 4, 1),
            MaxPool2D(2, padding="same"),
            *conv_bn_relu(4, 6, 3),
            MaxPool2D(2, padding="same"),
            Flatten(),
            *linear_bn_relu(24, 5),
            Linear(5, 3),
        ),
        (8, 8, 3),
    ),
    "resnet": (
        lambda: Sequential(
            *conv_bn_relu(3, 4, 3),
            *basic_block(4, 4, 1),
            *basic_block(4, 8, 2),
            GlobalAvgPool(),
            Linear(8, 3),
        ),
        (8, 8, 3),
    ),
    "wide-resnet": (
        lambda: Sequential(
            Conv2D(3, 4, 3, padding=1, bias=False),
            wide_block(4, 6, 1),
            wide_block(6, 6, 1),
            wide_block(6, 8, 2),
            BatchNorm(8),
            ReLU(),
            GlobalAvgPool(),
            Linear(8, 3),
        ),
        (8, 8, 3),
    ),
    "squeezenet": (
        lambda: Sequential(
            Conv2D(3, 8, 3, 2, "same"),
            BatchNorm(8),
            MaxPool2D(3, 2),
            fire(8, 2, 4),
            Residual(fire(8, 2, 4)),
            Conv2D(8, 3, 1),
            GlobalAvgPool(),
        ),
        (12, 12, 3),
    ),
    "googlenet": (
        lambda: Sequential(
            *conv_bn_relu(3, 4, 3),
            inception(4, 2, 2, 3, 1, 2, 2, 3, 5),
            MaxPool2D(3, 2, "same"),
            inception(9, 2, 2, 2, 1, 1, 1, 1, 1),
            GlobalAvgPool(),
            Linear(6, 3),
        ),
        (8, 8, 3),
    ),
    "densenet": (
        lambda: Sequential(
            BatchNorm(3),
            ReLU(),
            Conv2D(3, 4, 3, 2, "same"),
            MaxPool2D(3, 2, "same"),
            dense_layer(4, 2),
            dense_layer(6, 2),
            BatchNorm(8),
            ReLU(),
            Conv2D(8, 4, 1),
            AvgPool2D(2, padding="same"),
            dense_layer(4, 2),
            GlobalAvgPool(),
            Linear(6, 3),
        ),
        (16, 16, 3),
    ),
}


def family(name, seed):
    builder, shape = FAMILIES[name]
    rng = numpy.random.default_rng(seed)
    model = models.name_parameters(builder())
    sm.initialise(model, "vs-h", rng, dtype=sm.xp.float64)
    for p in sm.parameters_of(model):  # non-trivial biases and batch-norm affines
        if p.kind in ("bias", "scale", "shift"):
            p.value = p.value + array(rng, p.shape, 0.1)
    images = array(rng, (4,) + shape)
    labels = sm.xp.asarray(rng.integers(0, 3, 4))
    return model, images, labels, rng


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1])
def test_whole_network_directional_derivative_matches_finite_differences(name, seed):
    # (L(w + e v) - L(w - e v)) / 2e  ==  <dL/dw, v>  for a random direction v over every
    # learned parameter and the input, batch norm in training mode
    model, images, labels, rng = family(name, seed)

    def loss():
        return float(sm.softmax_cross_entropy(model.forward(images, True), labels)[0])

    _, dlogits = sm.softmax_cross_entropy(model.forward(images, True), labels)
    dx = model.backward(dlogits)
    tensors = [p for p in sm.parameters_of(model) if p.learned]
    values = [p.value for p in tensors] + [images]
    grads = [p.grad for p in tensors] + [dx]
    directions = [array(rng, v.shape) for v in values]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions))
    eps = 1e-6
    for v, d in zip(values, directions):
        v += eps * d
    plus = loss()
    for v, d in zip(values, directions):
        v -= 2 * eps * d
    minus = loss()
    numeric = (plus - minus) / (2 * eps)
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_computes_what_pytorch_computes(name):
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    model, images, labels, _ = family(name, 0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        twin, links = pytorch_twin.to_torch(model, torch)
    finally:
        torch.set_default_dtype(default)
    twin.train()
    logits = model.forward(images, train=True)
    _, dlogits = sm.softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    theirs = twin(torch.as_tensor(sm.to_host(images)))
    assert numpy.allclose(theirs.detach().numpy(), sm.to_host(logits), rtol=1e-9, atol=1e-11)
    torch.nn.functional.cross_entropy(theirs, torch.as_tensor(sm.to_host(labels))).backward()
    for p, target, layout in links:
        assert numpy.allclose(target.grad.numpy(), layout(p.grad).numpy(), rtol=1e-8, atol=1e-11), (
            p.name
        )
