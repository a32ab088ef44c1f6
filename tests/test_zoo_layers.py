"""The layers of zoo_layers.py against central finite differences in float64: batch norm in
both modes (and its statistics), average pooling ('same' averages real pixels only), global
average pooling, appended zero channels, residual and concatenation blocks, and a
Sequential network with batch norm inside."""

import numpy
from hypothesis import assume, given
from hypothesis import strategies as st

import snip_min as sm
from extensions import zoo_layers
from helpers import array, check_layer_gradients, initialised, relative_error

seeds = st.integers(0, 2**32 - 1)


# --- batch normalisation -------------------------------------------------------------------


@given(
    seed=seeds,
    shape=st.sampled_from([(4, 3), (2, 3, 3, 2), (3, 2, 1, 4), (1, 2, 2, 3), (5, 1)]),
    train=st.booleans(),
)
def test_batch_norm_gradients_match_finite_differences(seed, shape, train):
    rng = numpy.random.default_rng(seed)
    layer = initialised(zoo_layers.BatchNorm(shape[-1]), rng)
    check_layer_gradients(layer, array(rng, shape, scale=2.0), rng, train=train)


def test_batch_norm_training_mode_normalises_with_batch_statistics():
    rng = numpy.random.default_rng(1)
    layer = zoo_layers.BatchNorm(3)
    sm.initialise(layer, dtype=sm.xp.float64)
    x = array(rng, (8, 5, 5, 3)) * 4.0 + 7.0
    y = sm.to_host(layer.forward(x, train=True))
    assert numpy.allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    assert numpy.allclose(y.var(axis=(0, 1, 2)), 1, atol=1e-3)
    # running statistics moved 10% of the way from (0, 1) towards the batch's mean, unbiased
    # variance
    xh = sm.to_host(x).reshape(-1, 3)
    assert numpy.allclose(sm.to_host(layer.running_mean.value), 0.1 * xh.mean(0))
    assert numpy.allclose(sm.to_host(layer.running_var.value), 0.9 + 0.1 * xh.var(0, ddof=1))


def test_batch_norm_evaluation_mode_uses_running_statistics():
    layer = zoo_layers.BatchNorm(2)
    sm.initialise(layer, dtype=sm.xp.float64)
    layer.running_mean.value = sm.xp.asarray([1.0, -2.0])
    layer.running_var.value = sm.xp.asarray([4.0, 0.25])
    layer.scale.value = sm.xp.asarray([2.0, 1.0])
    layer.shift.value = sm.xp.asarray([0.5, 0.0])
    x = sm.xp.asarray([[3.0, -1.0], [1.0, -2.0]])
    y = sm.to_host(layer.forward(x, train=False))
    eps = layer.eps
    expected = numpy.array(
        [[2 * 2 / numpy.sqrt(4 + eps) + 0.5, 1 / numpy.sqrt(0.25 + eps)], [0.5, 0.0]]
    )
    assert numpy.allclose(y, expected)
    assert sm.to_host(layer.running_mean.value).tolist() == [1.0, -2.0]  # untouched in evaluation


# --- containers -------------------------------------------------------------------------------


@given(seed=seeds)
def test_sequential_network_gradients_match_finite_differences(seed):
    rng = numpy.random.default_rng(seed)
    net = sm.Sequential(
        sm.Conv2D(2, 3, 3, padding="same"),
        zoo_layers.BatchNorm(3),
        sm.ReLU(),
        sm.MaxPool2D(2),
        sm.Flatten(),
        sm.Linear(12, 4),
    )
    initialised(net, rng)
    check_layer_gradients(net, array(rng, (3, 4, 4, 2)), rng, tolerance=1e-5)


# --- the model zoo's layers -------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
)
def test_average_pool_gradients_match_finite_differences(seed, n, h, w, c, kernel, stride, padding):
    pads = sm.padding_amounts(padding, h, w, kernel, kernel, stride)
    assume(h + pads[0] + pads[1] >= kernel and w + pads[2] + pads[3] >= kernel)
    assume(max(pads) < kernel)
    rng = numpy.random.default_rng(seed)
    check_layer_gradients(
        zoo_layers.AvgPool2D(kernel, stride, padding), array(rng, (n, h, w, c)), rng
    )


def test_same_average_pool_averages_only_real_pixels():
    # 3x3 image, 2x2 windows, stride 2, 'same': the last row/column of windows hangs over
    x = sm.xp.arange(9, dtype=sm.xp.float64).reshape(1, 3, 3, 1)
    y = sm.to_host(zoo_layers.AvgPool2D(2, padding="same").forward(x, True)).reshape(2, 2)
    assert y.tolist() == [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]]


@given(
    seed=seeds, n=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 4)
)
def test_global_average_pool_gradients_match_finite_differences(seed, n, h, w, c):
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, h, w, c))
    layer = zoo_layers.GlobalAvgPool()
    assert relative_error(layer.forward(x, True), sm.to_host(x).mean(axis=(1, 2))) < 1e-12
    check_layer_gradients(layer, x, rng)


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 4), extra=st.integers(0, 4))
def test_zero_channels_appends_zeros_and_passes_gradients_to_the_real_ones(seed, n, c, extra):
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, 3, 2, c))
    y = sm.to_host(zoo_layers.ZeroChannels(extra).forward(x, True))
    assert y.shape == (n, 3, 2, c + extra) and (y[..., c:] == 0).all()
    check_layer_gradients(zoo_layers.ZeroChannels(extra), x, rng)


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 3), downsample=st.booleans())
def test_residual_block_gradients_match_finite_differences(seed, n, c, downsample):
    rng = numpy.random.default_rng(seed)
    stride, c_out = (2, 2 * c) if downsample else (1, c)
    body = sm.Sequential(
        sm.Conv2D(c, c_out, 3, stride, "same"),
        zoo_layers.BatchNorm(c_out),
        sm.ReLU(),
        sm.Conv2D(c_out, c_out, 3, 1, "same"),
    )
    shortcut = (
        sm.Sequential(zoo_layers.AvgPool2D(2, padding="same"), zoo_layers.ZeroChannels(c_out - c))
        if downsample
        else None
    )
    block = initialised(zoo_layers.Residual(body, shortcut), rng)
    check_layer_gradients(block, array(rng, (n, 4, 4, c)), rng, tolerance=1e-5)


@given(seed=seeds, n=st.integers(1, 3), c=st.integers(1, 3))
def test_concatenation_gradients_match_finite_differences(seed, n, c):
    rng = numpy.random.default_rng(seed)
    block = zoo_layers.Concat(
        zoo_layers.Identity(),
        sm.Sequential(sm.Conv2D(c, 2, 1), sm.ReLU()),
        sm.Sequential(sm.MaxPool2D(3, 1, "same"), sm.Conv2D(c, 3, 3, padding="same")),
    )
    initialised(block, rng)
    x = array(rng, (n, 4, 3, c))
    assert block.forward(x, True).shape == (n, 4, 3, c + 5)
    check_layer_gradients(block, x, rng, tolerance=1e-5)
