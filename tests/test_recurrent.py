"""The recurrent layers: LSTM and GRU backpropagation through time against finite differences
in float64 (inputs, every Param, the initial state), the same numbers as torch.nn.LSTM /
torch.nn.GRU, the gates' blocks (parts), SNIP and masked training on a recurrent network,
gradient clipping, and the sequential-MNIST models."""

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models
import snip_min as sm
from extensions.recurrent import GRU, LSTM, AsSequence
from helpers import array, check_layer_gradients, initialised, numerical_gradient, relative_error
from snip_min import clip_gradient_norm

seeds = st.integers(0, 2**32 - 1)
LAYERS = {"lstm": LSTM, "gru": GRU}


def initial_state_names(layer):
    return ("h0", "c0") if isinstance(layer, LSTM) else ("h0",)


def check_initial_state_gradients(layer, x, rng):
    """dL/dh_0 (and dL/dc_0) of L = sum(layer(x) * R) against finite differences."""
    out = layer.forward(x, True)
    weights_of_loss = array(rng, out.shape)

    def loss():
        return (layer.forward(x, True) * weights_of_loss).sum()

    layer.forward(x, True)
    layer.backward(weights_of_loss)
    gradients = [p.grad for p in layer.params]
    gradients += [getattr(layer, name + "_grad") for name in initial_state_names(layer)]
    largest = max(
        float(sm.xp.abs(g).max()) for g in gradients
    )  # the scale rounding errors are judged on
    for name in initial_state_names(layer):
        analytic = getattr(layer, name + "_grad")
        numeric = numerical_gradient(loss, getattr(layer, name))
        assert relative_error(analytic, numeric, scale=largest) < 1e-6, name


# --- backpropagation through time against finite differences ----------------------------------


@pytest.mark.parametrize("kind", sorted(LAYERS))
@given(
    seed=seeds,
    n=st.integers(1, 3),
    steps=st.integers(1, 6),
    d_in=st.integers(1, 4),
    hidden=st.integers(1, 4),
    return_sequences=st.booleans(),
    from_initial_state=st.booleans(),
)
def test_recurrent_gradients_match_finite_differences(
    kind, seed, n, steps, d_in, hidden, return_sequences, from_initial_state
):
    # dL/dx and dL/d(every Param), through every step, with the last state or every state as
    # the output; from a zero or a random initial state (whose gradient is checked too)
    rng = numpy.random.default_rng(seed)
    layer = initialised(LAYERS[kind](d_in, hidden, return_sequences=return_sequences), rng)
    if from_initial_state:
        for name in initial_state_names(layer):
            setattr(layer, name, array(rng, (n, hidden)))
    x = array(rng, (n, steps, d_in))
    check_layer_gradients(layer, x, rng)
    if from_initial_state:
        check_initial_state_gradients(layer, x, rng)


@pytest.mark.parametrize("seed", [0, 1])
def test_stacked_recurrent_layers_differentiate_through_every_state(seed):
    # an LSTM that returns every state feeding a GRU: the sequence path of both backward passes
    rng = numpy.random.default_rng(seed)
    network = initialised(sm.Sequential(LSTM(3, 4, return_sequences=True), GRU(4, 3)), rng)
    check_layer_gradients(network, array(rng, (2, 5, 3)), rng)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_first_layer_skips_the_input_gradient_and_keeps_every_parameter_gradient(kind):
    rng = numpy.random.default_rng(0)
    full, skipping = (
        initialised(LAYERS[kind](3, 4), numpy.random.default_rng(1)) for _ in range(2)
    )
    skipping.needs_input_gradient = False
    x, dout = array(rng, (2, 5, 3)), array(rng, (2, 4))
    full.forward(x, True)
    skipping.forward(x, True)
    assert full.backward(dout) is not None and skipping.backward(dout) is None
    for p, q in zip(full.params, skipping.params):
        assert bool((p.grad == q.grad).all()), p.name


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_float32_stays_float32(kind, return_sequences):
    rng = numpy.random.default_rng(0)
    layer = initialised(
        LAYERS[kind](3, 4, return_sequences=return_sequences), rng, dtype=sm.xp.float32
    )
    x = sm.xp.asarray(rng.standard_normal((2, 5, 3)), dtype=sm.xp.float32)
    y = layer.forward(x, True)
    assert y.dtype == sm.xp.float32 and y.shape == ((2, 5, 4) if return_sequences else (2, 4))
    dx = layer.backward(sm.xp.ones_like(y))
    assert dx.dtype == sm.xp.float32 and dx.shape == x.shape
    assert all(p.grad.dtype == sm.xp.float32 and p.grad.shape == p.shape for p in layer.params)


# --- the same numbers as PyTorch -------------------------------------------------------------


def torch_twin(layer, torch):
    """torch.nn.LSTM / GRU (batch_first, float64) holding the layer's weights in PyTorch's
    layout: weight_ih (gates*H, D) = W^T, weight_hh (gates*H, H) = U^T; LSTM: bias_ih = b
    plus the forget bias on the f block, bias_hh = 0; GRU: bias_ih = b, bias_hh = [0, 0, b_hn]."""
    d_in, hidden = layer.input_weight.shape[0], layer.hidden
    module = (torch.nn.LSTM if isinstance(layer, LSTM) else torch.nn.GRU)(
        d_in, hidden, batch_first=True, dtype=torch.float64
    )
    bias_ih = sm.to_host(layer.bias.value).copy()
    bias_hh = numpy.zeros_like(bias_ih)
    if isinstance(layer, LSTM):
        bias_ih[hidden : 2 * hidden] += layer.forget_bias
    else:
        bias_hh[2 * hidden :] = sm.to_host(layer.recurrent_bias.value)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.as_tensor(sm.to_host(layer.input_weight.value).T))
        module.weight_hh_l0.copy_(torch.as_tensor(sm.to_host(layer.recurrent_weight.value).T))
        module.bias_ih_l0.copy_(torch.as_tensor(bias_ih))
        module.bias_hh_l0.copy_(torch.as_tensor(bias_hh))
    return module


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("from_initial_state", [False, True])
def test_recurrent_layers_compute_what_pytorch_computes(kind, return_sequences, from_initial_state):
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(7)
    n, steps, d_in, hidden = 3, 6, 5, 4
    layer = initialised(LAYERS[kind](d_in, hidden, return_sequences=return_sequences), rng)
    twin = torch_twin(layer, torch)
    states = {
        name: rng.standard_normal((n, hidden)) if from_initial_state else numpy.zeros((n, hidden))
        for name in initial_state_names(layer)
    }
    if from_initial_state:
        for name, value in states.items():
            setattr(layer, name, sm.xp.asarray(value))
    x = rng.standard_normal((n, steps, d_in))
    ours = layer.forward(sm.xp.asarray(x), True)
    dout = rng.standard_normal(ours.shape)
    dx = layer.backward(sm.xp.asarray(dout))

    x_theirs = torch.tensor(x, requires_grad=True)
    state_theirs = {
        name: torch.tensor(value[None], requires_grad=True) for name, value in states.items()
    }
    initial = (state_theirs["h0"], state_theirs["c0"]) if kind == "lstm" else state_theirs["h0"]
    sequence, _ = twin(x_theirs, initial)
    theirs = sequence if return_sequences else sequence[:, -1]
    assert numpy.allclose(theirs.detach().numpy(), sm.to_host(ours), rtol=1e-10, atol=1e-12)
    (theirs * torch.as_tensor(dout)).sum().backward()

    def same(their_grad, our_grad, what):
        assert numpy.allclose(their_grad, sm.to_host(our_grad), rtol=1e-9, atol=1e-12), what

    same(x_theirs.grad.numpy(), dx, "dL/dx")
    same(twin.weight_ih_l0.grad.numpy().T, layer.input_weight.grad, "input weights")
    same(twin.weight_hh_l0.grad.numpy().T, layer.recurrent_weight.grad, "recurrent weights")
    # PyTorch's bias_ih and bias_hh receive the same gradient wherever they are only summed
    same(twin.bias_ih_l0.grad.numpy(), layer.bias.grad, "bias")
    if kind == "gru":
        same(
            twin.bias_hh_l0.grad.numpy()[2 * hidden :], layer.recurrent_bias.grad, "recurrent bias"
        )
        same(
            twin.bias_hh_l0.grad.numpy()[: 2 * hidden],
            layer.bias.grad[: 2 * hidden],
            "bias_hh of r, z",
        )
    else:
        same(twin.bias_hh_l0.grad.numpy(), layer.bias.grad, "bias_hh")
    for name, tensor in state_theirs.items():
        same(tensor.grad.numpy()[0], getattr(layer, name + "_grad"), name)


# --- the gates' blocks -----------------------------------------------------------------------


@pytest.mark.parametrize("kind,gates", [("lstm", ("i", "f", "g", "o")), ("gru", ("r", "z", "n"))])
@pytest.mark.parametrize("d_in,hidden", [(1, 1), (28, 5), (3, 7)])
def test_parts_split_every_recurrent_param_into_disjoint_gate_blocks_that_cover_it(
    kind, gates, d_in, hidden
):
    layer = LAYERS[kind](d_in, hidden)
    for p in layer.params:
        labels = [label for label, _ in p.parts]
        assert labels == (["n"] if p.role == "recurrent_bias" else list(gates)), p.role
        covered = numpy.zeros(p.shape, dtype=int)
        for _, index in p.parts:
            block = covered[index]
            assert block.shape == p.shape[:-1] + (hidden,)  # all rows, one gate's H columns
            covered[index] += 1
        assert (covered == 1).all(), p.role  # disjoint, and nothing left out


def test_each_lstm_part_is_the_gate_it_is_named_after():
    # o = 0 hides the cell: h = 0. i = 0 never writes: c and h stay 0. f = 0 forgets
    # c_{t-1}: without recurrent weights, only the last step counts
    rng = numpy.random.default_rng(0)
    layer = initialised(LSTM(3, 4), rng)
    x = array(rng, (2, 5, 3))
    blocks = dict(layer.bias.parts)

    def output_with(gate, value, steps=slice(None)):
        saved = layer.bias.value.copy()
        layer.bias.value[blocks[gate]] = value
        y = layer.forward(x[:, steps], True)
        layer.bias.value = saved
        return sm.to_host(y)

    assert numpy.abs(output_with("o", -1e3)).max() == 0
    assert numpy.abs(output_with("i", -1e3)).max() == 0
    assert not numpy.allclose(output_with("f", 0.0), output_with("f", 0.0, slice(-1, None)))
    layer.recurrent_weight.value[...] = 0
    assert numpy.allclose(output_with("f", -1e3), output_with("f", -1e3, slice(-1, None)))


def test_each_gru_part_is_the_gate_it_is_named_after():
    # z = 1 keeps h_{t-1}: the state never leaves h_0 = 0; z = 0 with r = 0 makes h_t = n_t
    # computed from x_t and b_hn alone, so only the last step counts
    rng = numpy.random.default_rng(0)
    layer = initialised(GRU(3, 4), rng)
    x = array(rng, (2, 5, 3))
    blocks = dict(layer.bias.parts)
    layer.bias.value[blocks["z"]] = 1e3
    assert numpy.abs(sm.to_host(layer.forward(x, True))).max() == 0
    layer.bias.value[blocks["z"]] = -1e3
    layer.bias.value[blocks["r"]] = -1e3
    assert numpy.allclose(
        sm.to_host(layer.forward(x, True)), sm.to_host(layer.forward(x[:, -1:], True))
    )


# --- reading images as sequences -------------------------------------------------------------


@given(
    seed=seeds, n=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 3)
)
def test_as_sequence_makes_each_row_one_step_and_its_backward_restores_the_shape(seed, n, h, w, c):
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, h, w, c))
    layer = AsSequence()
    y = layer.forward(x, True)
    assert y.shape == (n, h, w * c)
    row = h - 1
    assert numpy.array_equal(sm.to_host(y[:, row]), sm.to_host(x[:, row]).reshape(n, w * c))
    check_layer_gradients(layer, x, rng)


@given(
    seed=seeds, n=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 3)
)
def test_as_sequence_of_pixels_makes_each_pixel_one_step_in_reading_order(seed, n, h, w, c):
    rng = numpy.random.default_rng(seed)
    x = array(rng, (n, h, w, c))
    layer = AsSequence(pixels=True)
    y = layer.forward(x, True)
    assert y.shape == (n, h * w, c)
    row, column = h - 1, w // 2
    assert numpy.array_equal(sm.to_host(y[:, row * w + column]), sm.to_host(x[:, row, column]))
    check_layer_gradients(layer, x, rng)


# --- SNIP and training with the masks held fixed --------------------------------------------------


def small_recurrent_network(kind):
    """Images (N, 5, 4, 1) read as 5 steps of 4 pixels, 3 hidden units, 3 classes."""
    return models.name_parameters(sm.Sequential(AsSequence(), LAYERS[kind](4, 3), sm.Linear(3, 3)))


@pytest.mark.parametrize("kind", sorted(LAYERS))
@settings(max_examples=10)
@given(seed=seeds)
def test_sensitivity_is_the_derivative_of_the_loss_with_respect_to_the_gates(kind, seed):
    rng = numpy.random.default_rng(seed)
    model = small_recurrent_network(kind)
    sm.initialise(model, "vs-h", rng, dtype=sm.xp.float64)
    for p in sm.parameters_of(model):  # non-zero biases, so their scores are exercised too
        if p.kind == "bias":
            p.value = array(rng, p.shape, 0.5)
    images, labels = array(rng, (6, 5, 4, 1)), sm.xp.asarray(rng.integers(0, 3, 6))
    params = sm.prunable_parameters(model)
    assert len(params) == len(sm.parameters_of(model))  # every recurrent Param is gated
    g = sm.connection_sensitivity(model, images, labels, params)
    largest = max(float(sm.xp.abs(each).max()) for each in g)

    def loss():
        return sm.softmax_cross_entropy(model.forward(images, train=False), labels)[0]

    for p, g_p in zip(params, g):
        # dL/dc by finite differences on the gates themselves, at c = 1 ...
        assert relative_error(g_p, numerical_gradient(loss, p.mask), scale=largest) < 1e-6, p.name
        # ... equals w * dL/dw, with dL/dw by finite differences on the weights
        assert (
            relative_error(
                g_p, sm.to_host(p.value) * numerical_gradient(loss, p.value), scale=largest
            )
            < 1e-6
        ), p.name


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("clip", [None, 0.05])
def test_pruned_recurrent_weights_stay_exactly_zero_through_training(kind, clip):
    rng = numpy.random.default_rng(3)
    model = small_recurrent_network(kind)
    model.children[1].needs_input_gradient = False
    sm.initialise(model, "vs-h", rng)

    def batch():
        return (
            sm.xp.asarray(rng.standard_normal((16, 5, 4, 1)), dtype=sm.xp.float32),
            sm.xp.asarray(rng.integers(0, 3, 16)),
        )

    gated = sm.snip(model, *batch(), 0.7)
    recurrent = [p for p in gated if p.parts is not None]
    assert {p.role for p in recurrent} >= {"input_weight", "recurrent_weight", "bias"}
    optimiser = sm.SGD(sm.parameters_of(model), momentum=0.9, weight_decay=5e-4)
    before = {id(p): sm.to_host(p.value).copy() for p in recurrent}
    for step in range(30):
        images, labels = batch()
        if clip is None:
            sm.train_step(model, optimiser, images, labels, lr=0.5)
        else:  # the training step with clipping before the update
            _, dlogits = sm.softmax_cross_entropy(model.forward(images, train=True), labels)
            model.backward(dlogits)
            clip_gradient_norm(optimiser.params, clip)
            optimiser.step(0.5)
        velocity = dict(zip(map(id, optimiser.params), optimiser.velocity))
        for p in recurrent:
            pruned = p.mask == 0
            assert bool((p.value[pruned] == 0).all()), f"{p.name} revived at step {step}"
            assert bool((velocity[id(p)][pruned] == 0).all())
    # and the kept connections did learn
    assert any(not numpy.array_equal(sm.to_host(p.value), before[id(p)]) for p in recurrent)


# --- gradient clipping -------------------------------------------------------------------------


@given(seed=seeds, max_norm=st.floats(1e-3, 1e3))
def test_clipping_scales_all_gradients_by_one_factor_to_at_most_max_norm(seed, max_norm):
    rng = numpy.random.default_rng(seed)
    params = []
    for shape in [(4, 8), (8,), (3, 3)]:
        p = sm.Param("p", shape, "weight")
        p.value, p.grad = array(rng, shape), array(rng, shape, scale=10 * rng.random())
        params.append(p)
    params[0].mask = sm.xp.asarray(rng.random(params[0].shape) < 0.5, dtype=sm.xp.float64)
    statistics = sm.Param(
        "running_mean", (8,), "running_mean"
    )  # not learned: neither counted nor scaled
    statistics.value, statistics.grad = array(rng, (8,)), array(rng, (8,))
    before = [sm.to_host(p.grad).copy() for p in params + [statistics]]
    # the global norm of dL/dw = c * grad: pruned entries count as 0
    norm = numpy.sqrt(
        sum(
            ((g * (1.0 if p.mask is None else sm.to_host(p.mask))) ** 2).sum()
            for p, g in zip(params, before)
        )
    )
    returned = clip_gradient_norm(params + [statistics], max_norm)
    assert returned.shape == ()  # a scalar on the device, never read back
    assert abs(float(returned) - norm) <= 1e-12 * norm
    factor = min(1.0, max_norm / (norm + 1e-6))
    for p, g in zip(params, before):
        assert numpy.allclose(sm.to_host(p.grad), g * factor, rtol=1e-12, atol=0)
    assert numpy.array_equal(sm.to_host(statistics.grad), before[-1])
    clipped = numpy.sqrt(
        sum(
            ((sm.to_host(p.grad) * (1.0 if p.mask is None else sm.to_host(p.mask))) ** 2).sum()
            for p in params
        )
    )
    assert clipped <= max_norm * (1 + 1e-9)


def test_a_clipped_recurrent_training_step_never_waits_for_the_device(stand_in):
    # on the strict CuPy stand-in, which counts every operation that would make the host
    # wait for a GPU
    rng = numpy.random.default_rng(0)
    model = small_recurrent_network("lstm")
    sm.initialise(model, "vs-h", rng)
    images = sm.xp.asarray(rng.standard_normal((8, 5, 4, 1)), dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, 3, 8))
    sm.snip(model, images, labels, 0.5)
    optimiser = sm.SGD(sm.parameters_of(model))
    with stand_in.counting() as record:
        _, dlogits = sm.softmax_cross_entropy(model.forward(images, train=True), labels)
        model.backward(dlogits)
        clip_gradient_norm(optimiser.params, 0.1)
        optimiser.step(0.1)
    assert record.syncs == 0, record.summary()


def test_clipping_leaves_zero_gradients_and_short_gradients_alone():
    p = sm.Param("w", (3,), "weight")
    p.value = sm.xp.ones(3)
    p.grad = sm.xp.zeros(3)
    assert float(clip_gradient_norm([p], 1.0)) == 0 and bool((p.grad == 0).all())
    p.grad = sm.xp.asarray([0.3, 0.0, -0.4])
    clip_gradient_norm([p], 1.0)
    assert sm.to_host(p.grad).tolist() == [0.3, 0.0, -0.4]


# --- the sequential-MNIST models ------------------------------------------------------------------

# one recurrent layer over 28 rows of 28 pixels (D = 28; the -pixels models: 784 steps of D = 1),
# then fc hidden -> 10:
#   LSTM: 4 (D H + H^2 + H) + 10 H + 10     GRU: 3 (D H + H^2 + H) + H + 10 H + 10
RECURRENT_COUNTS = {
    "lstm-s": 81_674,
    "lstm-b": 294_410,
    "gru-s": 61_706,
    "gru-b": 221_706,
    "lstm-s-pixels": 67_850,
    "lstm-b-pixels": 266_762,
    "gru-s-pixels": 51_338,
    "gru-b-pixels": 200_970,
}


@pytest.mark.parametrize("name,count", sorted(RECURRENT_COUNTS.items()))
def test_recurrent_models_have_the_counts_of_one_layer_over_rows(name, count):
    hidden = 128 if "-s" in name else 256
    gates = 4 if name.startswith("lstm") else 3
    extra = 0 if name.startswith("lstm") else hidden  # a GRU's b_hn
    d_in = 1 if name.endswith("-pixels") else 28
    assert count == gates * (d_in * hidden + hidden * hidden + hidden) + extra + 10 * hidden + 10
    model = models.build(name)
    assert models.count_parameters(model) == count
    assert sum(p.size for p in sm.prunable_parameters(model)) == count  # every one is gated
    assert {(row["model"], row["dataset"]): row["params"] for row in models.parameter_table()}[
        (name, "mnist")
    ] == count


@pytest.mark.parametrize("name,prefix", [("lstm-s", "lstm"), ("gru-b", "gru")])
def test_recurrent_params_are_named_by_their_role(name, prefix):
    names = [p.name for p in sm.parameters_of(models.build(name))]
    expected = [f"{prefix}1.input_weight", f"{prefix}1.recurrent_weight", f"{prefix}1.bias"]
    expected += [f"{prefix}1.recurrent_bias"] if prefix == "gru" else []
    assert names == expected + ["fc1.weight", "fc1.bias"]


@pytest.mark.parametrize("name", sorted(RECURRENT_COUNTS))
def test_recurrent_models_map_mnist_images_to_class_scores(name):
    rng = numpy.random.default_rng(0)
    model = models.build(name)
    sm.initialise(model, "vs-h", rng)
    x = sm.xp.asarray(rng.standard_normal((2, 28, 28, 1)), dtype=sm.xp.float32)
    y = model.forward(x, train=True)
    assert y.shape == (2, 10) and y.dtype == sm.xp.float32 and bool(sm.xp.isfinite(y).all())
