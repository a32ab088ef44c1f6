"""The layers of snip_min.py (the LeNets'): every backward pass against finite differences in
float64, and the identities the layers rely on (im2col/col2im adjoint, max-pool routing, a
stable loss). The model zoo's layers are proven in test_zoo_layers.py, the recurrent ones in
test_recurrent.py."""

import itertools

import numpy
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import snip_min as sm
from helpers import array, check_layer_gradients, initialised, numerical_gradient, relative_error

seeds = st.integers(0, 2**32 - 1)
paddings = st.one_of(
    st.sampled_from(["valid", "same"]), st.integers(0, 2), st.tuples(*[st.integers(0, 2)] * 4)
)


def reference_convolution(x, w, b, stride, pads):
    """Textbook convolution with explicit loops over output pixels, on the host."""
    x, w, b = sm.to_host(x), sm.to_host(w), sm.to_host(b)
    top, bottom, left, right = pads
    x = numpy.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, _, f = w.shape
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    y = numpy.zeros((x.shape[0], out_h, out_w, f))
    for a, c in itertools.product(range(out_h), range(out_w)):
        patch = x[
            :, a * stride : a * stride + kh, c * stride : c * stride + kw, :
        ]  # (N, KH, KW, C)
        y[:, a, c, :] = numpy.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return y


# --- linear -----------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 4),
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 5),
    bias=st.booleans(),
)
def test_linear_gradients_match_finite_differences(seed, n, d_in, d_out, bias):
    rng = numpy.random.default_rng(seed)
    layer = initialised(sm.Linear(d_in, d_out, bias=bias), rng)
    check_layer_gradients(layer, array(rng, (n, d_in)), rng)


# --- convolution ------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=paddings,
)
def test_im2col_and_col2im_are_adjoint(seed, n, h, w, c, kh, kw, stride, padding):
    # <im2col(x), y> = <x, col2im(y)> for every x and y: col2im is im2col's transpose
    pads = sm.padding_amounts(padding, h, w, kh, kw, stride)
    h_pad, w_pad = h + pads[0] + pads[1], w + pads[2] + pads[3]
    assume(h_pad >= kh and w_pad >= kw)
    out_h, out_w = (h_pad - kh) // stride + 1, (w_pad - kw) // stride + 1
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, h_pad, w_pad, c))
    y = array(rng, (n, out_h, out_w, kh, kw, c))
    col = sm.im2col(x, kh, kw, stride, out_h, out_w).reshape(y.shape)
    left = float((col * y).sum())
    back = sm.col2im(lambda i, j: y[:, :, :, i, j, :], x.shape, kh, kw, stride, x.dtype)
    right = float((x * back).sum())
    assert abs(left - right) <= 1e-10 * max(1.0, abs(left))


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    f=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=paddings,
)
def test_convolution_matches_textbook_loops(seed, n, h, w, c, f, kh, kw, stride, padding):
    pads = sm.padding_amounts(padding, h, w, kh, kw, stride)
    assume(h + pads[0] + pads[1] >= kh and w + pads[2] + pads[3] >= kw)
    rng = numpy.random.default_rng(seed)
    layer = initialised(sm.Conv2D(c, f, (kh, kw), stride=stride, padding=padding), rng)
    x = array(rng, (n, h, w, c))
    expected = reference_convolution(x, layer.weight.value, layer.bias.value, stride, pads)
    assert relative_error(layer.forward(x, True), expected) < 1e-12


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    c=st.integers(1, 3),
    f=st.integers(1, 3),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=paddings,
    bias=st.booleans(),
)
def test_convolution_gradients_match_finite_differences(
    seed, n, h, w, c, f, kh, kw, stride, padding, bias
):
    pads = sm.padding_amounts(padding, h, w, kh, kw, stride)
    assume(h + pads[0] + pads[1] >= kh and w + pads[2] + pads[3] >= kw)
    rng = numpy.random.default_rng(seed)
    layer = initialised(sm.Conv2D(c, f, (kh, kw), stride=stride, padding=padding, bias=bias), rng)
    check_layer_gradients(layer, array(rng, (n, h, w, c)), rng)


@pytest.mark.parametrize(
    "size,kernel,stride", [(5, 3, 1), (6, 3, 2), (7, 3, 2), (8, 5, 3), (4, 1, 2)]
)
def test_same_padding_gives_ceil_of_input_over_stride(size, kernel, stride):
    layer = initialised(
        sm.Conv2D(2, 3, kernel, stride=stride, padding="same"), numpy.random.default_rng(0)
    )
    y = layer.forward(sm.xp.ones((1, size, size, 2)), True)
    assert y.shape == (1, -(-size // stride), -(-size // stride), 3)


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(3, 6),
    c=st.integers(1, 3),
    f=st.integers(1, 3),
    flatten_first=st.booleans(),
)
def test_skipping_the_input_gradient_leaves_every_parameter_gradient_unchanged(
    seed, n, h, c, f, flatten_first
):
    rng = numpy.random.default_rng(seed)

    def network():
        if flatten_first:
            return sm.Sequential(sm.Flatten(), sm.Linear(h * h * c, f), sm.ReLU(), sm.Linear(f, 2))
        return sm.Sequential(
            sm.Conv2D(c, f, 3, padding="same"), sm.ReLU(), sm.Flatten(), sm.Linear(h * h * f, 2)
        )

    full, skipping = network(), sm.skip_input_gradient(network())
    initialised(full, numpy.random.default_rng(seed))
    initialised(skipping, numpy.random.default_rng(seed))
    x = array(rng, (n, h, h, c))
    dout = array(rng, (n, 2))
    full.forward(x, True)
    skipping.forward(x, True)
    assert full.backward(dout) is not None and skipping.backward(dout) is None
    for p, q in zip(sm.parameters_of(full), sm.parameters_of(skipping)):
        assert bool((p.grad == q.grad).all())


# --- pooling ------------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", 1]),
)
def test_max_pool_gradients_match_finite_differences(seed, n, h, w, c, kernel, stride, padding):
    pads = sm.padding_amounts(padding, h, w, kernel, kernel, stride)
    assume(h + pads[0] + pads[1] >= kernel and w + pads[2] + pads[3] >= kernel)
    assume(max(pads) < kernel)  # every window must hold at least one real pixel
    rng = numpy.random.default_rng(seed)
    # distinct, well separated values: no ties, and a finite step never changes the winner
    x = sm.xp.asarray(
        rng.permutation(n * h * w * c).reshape(n, h, w, c) * 0.01, dtype=sm.xp.float64
    )
    check_layer_gradients(sm.MaxPool2D(kernel, stride, padding), x, rng)


def test_max_pool_routes_each_gradient_to_the_window_maximum():
    x = sm.xp.asarray(
        [[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 7.0, 7.0], [9.0, 9.0, 1.0, 1.0], [9.0, 8.0, 1.0, 1.0]]
    ).reshape(1, 4, 4, 1)
    pool = sm.MaxPool2D(2)
    y = pool.forward(x, True)
    assert sm.to_host(y).ravel().tolist() == [5.0, 7.0, 9.0, 1.0]
    dx = sm.to_host(pool.backward(sm.xp.asarray([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)))
    # one gradient per window, at its maximum; ties go to the first position in scan order
    expected = numpy.array(
        [[0, 10, 0, 0], [0, 0, 20, 0], [30, 0, 40, 0], [0, 0, 0, 0]], dtype=float
    )
    assert numpy.array_equal(dx.reshape(4, 4), expected)


def reference_pads(padding, height, width, kernel, stride):
    """(top, bottom, left, right) as TensorFlow pads, written out here, not taken from the
    layer: 'same' makes OH = ceil(H / stride) and puts the odd row and column at the
    bottom/right; an int pads every side; 'valid' none."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding != "same":
        return (padding,) * 4

    def split(size):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        return [total // 2, total - total // 2]

    return tuple(split(height) + split(width))


def reference_max_pool(x, dout, kernel, stride, pads):
    """(y, dL/dx) by the definition, one window at a time on the host, the border padded here
    with -inf (a padded position never wins). Each window passes its dL/dy to the first
    position in scan order that holds its maximum (none if that is NaN, or -inf in padding)."""
    top, bottom, left, right = pads
    x_pad = numpy.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-numpy.inf)
    y, dx = numpy.zeros(dout.shape), numpy.zeros(x_pad.shape)
    n, out_h, out_w, c = dout.shape
    for e, a, b, ch in numpy.ndindex(n, out_h, out_w, c):
        window = x_pad[
            e, a * stride : a * stride + kernel, b * stride : b * stride + kernel, ch
        ].ravel()
        y[e, a, b, ch] = window.max()
        holders = numpy.flatnonzero(window == window.max())  # empty when the max is NaN
        if holders.size:
            i, j = divmod(int(holders[0]), kernel)
            dx[e, a * stride + i, b * stride + j, ch] += dout[e, a, b, ch]
    return y, dx[:, top : top + x.shape[1], left : left + x.shape[2]]


@given(
    seed=seeds,
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.sampled_from([None, 1, 2]),
    padding=st.sampled_from(["valid", "same", 1]),
    levels=st.sampled_from([3, 1000]),
    nan=st.booleans(),
)
def test_max_pool_backward_matches_the_definition_with_ties_and_nans(
    seed, n, h, w, c, kernel, stride, padding, levels, nan
):
    # With 3 levels ties are common, with 1000 rare; stride None (= kernel) tiles the input.
    # Half the values are negative, so a border padded with anything above -inf would win.
    pads = reference_pads(padding, h, w, kernel, stride or kernel)
    assume(h + pads[0] + pads[1] >= kernel and w + pads[2] + pads[3] >= kernel)
    rng = numpy.random.default_rng(seed)
    host = rng.integers(-levels, levels, (n, h, w, c)).astype(float)
    if nan:
        host[tuple(rng.integers(0, size) for size in host.shape)] = numpy.nan
    pool = sm.MaxPool2D(kernel, stride, padding=padding)
    y = pool.forward(sm.xp.asarray(host), True)
    dout = rng.standard_normal(y.shape)
    expected_y, expected_dx = reference_max_pool(host, dout, kernel, stride or kernel, pads)
    numpy.testing.assert_array_equal(sm.to_host(y), expected_y)  # NaN where the reference has
    dx = sm.to_host(pool.backward(sm.xp.asarray(dout)))
    # where windows overlap, a pixel's share arrives in another order: equal up to rounding
    numpy.testing.assert_allclose(dx, expected_dx, rtol=0, atol=1e-12)


def test_a_nan_window_does_not_hide_a_tie_elsewhere():
    # window 1 holds a NaN (no winner), window 2 a tie (two winners): the tie must still go
    # to its first position only
    x = sm.xp.asarray([[numpy.nan, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 2, 4, 1)
    pool = sm.MaxPool2D(2)
    y = pool.forward(x, True)
    dx = sm.to_host(pool.backward(sm.xp.ones_like(y))).reshape(2, 4)
    assert numpy.array_equal(dx, [[0, 0, 1, 0], [0, 0, 0, 0]])


@given(
    seed=seeds,
    n=st.integers(1, 3),
    rows=st.integers(1, 4),
    columns=st.integers(1, 4),
    c=st.integers(1, 3),
    k=st.integers(1, 3),
)
def test_col2im_of_windows_that_tile_the_input_is_adjoint_too(seed, n, rows, columns, c, k):
    # stride = kernel and the windows cover the image exactly: col2im writes instead of adding
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, rows * k, columns * k, c))
    y = array(rng, (n, rows, columns, k, k, c))
    col = sm.im2col(x, k, k, k, rows, columns).reshape(y.shape)
    back = sm.col2im(lambda i, j: y[:, :, :, i, j, :], x.shape, k, k, k, x.dtype)
    left, right = float((col * y).sum()), float((x * back).sum())
    assert abs(left - right) <= 1e-10 * max(1.0, abs(left))


def test_overlapping_max_pool_sums_gradients_of_a_shared_maximum():
    # 3x3 windows with stride 1 on a 4x4 image all contain the centre maximum
    x = sm.xp.zeros((1, 4, 4, 1))
    x[0, 1, 1, 0] = 10.0
    x[0, 2, 2, 0] = 5.0
    pool = sm.MaxPool2D(3, stride=1)
    y = pool.forward(x, True)
    assert sm.to_host(y).ravel().tolist() == [10.0, 10.0, 10.0, 10.0]
    dx = sm.to_host(pool.backward(sm.xp.ones((1, 2, 2, 1))))
    assert dx[0, 1, 1, 0] == 4.0 and dx.sum() == 4.0


# --- elementwise and reshaping -------------------------------------------------------------


@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_relu_gradients_match_finite_differences(seed, shape):
    rng = numpy.random.default_rng(seed)
    x = array(rng, shape)
    assume(float(sm.xp.abs(x).min()) > 1e-3)  # away from the kink at 0
    check_layer_gradients(sm.ReLU(), x, rng)


@given(
    seed=seeds, n=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 4)
)
def test_flatten_is_nhwc_order_and_its_backward_restores_the_shape(seed, n, h, w, c):
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, h, w, c))
    layer = sm.Flatten()
    y = layer.forward(x, True)
    assert y.shape == (n, h * w * c)
    assert float(y[0, 1 % (h * w * c)]) == float(x.reshape(n, -1)[0, 1 % (h * w * c)])
    check_layer_gradients(layer, x, rng)


# --- loss --------------------------------------------------------------------------------


@given(
    seed=seeds,
    n=st.integers(1, 5),
    classes=st.integers(2, 6),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_cross_entropy_gradient_matches_finite_differences(seed, n, classes, scale):
    rng = numpy.random.default_rng(seed)
    logits = array(rng, (n, classes), scale=scale)
    labels = sm.xp.asarray(rng.integers(0, classes, n))
    loss, dlogits = sm.softmax_cross_entropy(logits, labels)
    numeric = numerical_gradient(lambda: sm.softmax_cross_entropy(logits, labels)[0], logits)
    # every entry of dL/dlogits lies in [-1/N, 1/N]: judge the error on that scale
    assert relative_error(dlogits, numeric, scale=1.0 / n) < 1e-6


@given(seed=seeds, n=st.integers(1, 5), classes=st.integers(2, 6))
def test_cross_entropy_is_the_mean_negative_log_softmax(seed, n, classes):
    rng = numpy.random.default_rng(seed)
    logits = rng.standard_normal((n, classes))
    labels = rng.integers(0, classes, n)
    probabilities = numpy.exp(logits) / numpy.exp(logits).sum(axis=1, keepdims=True)
    expected = -numpy.log(probabilities[numpy.arange(n), labels]).mean()
    loss, _ = sm.softmax_cross_entropy(sm.xp.asarray(logits), sm.xp.asarray(labels))
    assert abs(float(loss) - expected) < 1e-12


def test_cross_entropy_is_finite_for_huge_logits_and_ignores_a_shift():
    logits = sm.xp.asarray([[1e4, -1e4, 0.0], [-3e4, 3e4, 2e4]])
    labels = sm.xp.asarray([1, 2])
    loss, dlogits = sm.softmax_cross_entropy(logits, labels)
    assert numpy.isfinite(float(loss)) and abs(float(loss) - (2e4 + 1e4) / 2) < 1e-9
    assert bool(sm.xp.isfinite(dlogits).all())
    shifted_loss, _ = sm.softmax_cross_entropy(logits + 123.0, labels)
    assert abs(float(shifted_loss) - float(loss)) < 1e-9


@given(
    seed=seeds,
    n=st.integers(2, 5),
    budget_examples=st.integers(1, 4),
    padding=paddings,
    stride=st.integers(1, 2),
)
def test_a_convolution_in_groups_with_col_rebuilt_equals_the_whole_batch_with_col_kept(
    seed, n, budget_examples, padding, stride
):
    rng = numpy.random.default_rng(seed)
    whole, grouped = sm.Conv2D(2, 3, 3, stride, padding), sm.Conv2D(2, 3, 3, stride, padding)
    initialised(whole, numpy.random.default_rng(seed))
    initialised(grouped, numpy.random.default_rng(seed))
    x, dout_rng = array(rng, (n, 5, 5, 2)), numpy.random.default_rng(seed + 1)
    y_whole = whole.forward(x, True)
    previous = sm.IM2COL_BUDGET_BYTES, sm.KEEP_COL_BYTES
    out_h, out_w = y_whole.shape[1:3]
    sm.IM2COL_BUDGET_BYTES = budget_examples * out_h * out_w * 3 * 3 * 2 * 8  # that many examples
    sm.KEEP_COL_BYTES = 0  # and rebuild col
    try:
        y_grouped = grouped.forward(x, True)
        assert grouped.group == min(budget_examples, n)
        dout = array(dout_rng, y_whole.shape)
        dx_whole, dx_grouped = whole.backward(dout), grouped.backward(dout)
    finally:
        sm.IM2COL_BUDGET_BYTES, sm.KEEP_COL_BYTES = previous
    assert relative_error(y_grouped, y_whole) < 1e-12
    assert relative_error(dx_grouped, dx_whole) < 1e-12
    assert relative_error(grouped.weight.grad, whole.weight.grad) < 1e-12
    check_layer_gradients(grouped, x, rng)  # budget restored: the check itself runs whole
