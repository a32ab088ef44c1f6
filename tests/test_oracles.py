"""Independent oracles for what the other tests could only check against the implementation
itself: each expected value is written here by hand or computed by another program, never by
snip_min's own helpers.

- 'same' padding: TensorFlow's rule, worked by hand for each case, and convolution, max- and
  average pooling against loops over a border padded here.
- SGD: steps worked by hand, and against torch.optim.SGD(momentum=0.9, weight_decay=5e-4);
  batch norm's scale and shift are not decayed.
- The training loop: each epoch's order is a fresh permutation from the run's own stream;
  the learning rate at and around each boundary, by hand and as the loop applies it.
- Evaluation: 1,500 images in batches of 1,000 (and of 7, and 2,000) give what one batch of
  1,500 gives on the host, in float64, batch norm on its running statistics.
- The iterative criteria never revive a pruned connection, whatever its score and inverted.
- GraSP's scores, and the Hessian-vector product where a max-pool's branch changes within
  the difference step, against closed forms (the PyTorch cross-checks, skipped without
  PyTorch, say the same).
- The validation split: its examples and the training split's are disjoint and cover the
  training set.
"""

import itertools

import numpy
import pytest

import data
import models
import snip_min as sm
from extensions import criteria, zoo_layers

# --- 'same' padding: TensorFlow's rule -----------------------------------------------------
#
# TensorFlow's 'same': OH = ceil(H / stride) and the padding needed for it,
# total = max((OH - 1) * stride + KH - H, 0), split with total // 2 rows on top and the rest,
# the odd one, at the bottom (likewise columns: left, then right). Each case below is that
# arithmetic done by hand: (H, W, KH, KW, stride) -> (top, bottom, left, right).
SAME_PADDING = {
    (4, 7, 3, 3, 2): (0, 1, 1, 1),  # OH 2: 1*2 + 3 - 4 = 1;  OW 4: 3*2 + 3 - 7 = 2
    (7, 4, 3, 3, 2): (1, 1, 0, 1),
    (8, 8, 5, 5, 3): (1, 2, 1, 2),  # OH 3: 2*3 + 5 - 8 = 3
    (5, 6, 4, 2, 1): (1, 2, 0, 1),  # stride 1: total = K - 1
    (5, 5, 2, 2, 2): (0, 1, 0, 1),  # OH 3: 2*2 + 2 - 5 = 1
    (6, 6, 2, 2, 2): (0, 0, 0, 0),  # OH 3: 2*2 + 2 - 6 = 0
    (4, 4, 1, 1, 2): (0, 0, 0, 0),  # 1*2 + 1 - 4 = -1: none
    (28, 28, 5, 5, 1): (2, 2, 2, 2),  # LeNet-5's 'same' 5x5
    (56, 56, 7, 7, 2): (2, 3, 2, 3),  # OH 28: 27*2 + 7 - 56 = 5
    (32, 31, 3, 3, 2): (0, 1, 1, 1),  # OW 16: 15*2 + 3 - 31 = 2
    (3, 3, 5, 5, 2): (2, 2, 2, 2),  # OH 2: 1*2 + 5 - 3 = 4, a kernel larger than the input
}


@pytest.mark.parametrize("shape, pads", SAME_PADDING.items(), ids=str)
def test_same_padding_is_tensorflows_with_the_odd_row_and_column_at_the_bottom_right(shape, pads):
    height, width, kernel_h, kernel_w, stride = shape
    assert sm.padding_amounts("same", height, width, kernel_h, kernel_w, stride) == pads


def padded_on_the_host(x, pads, value):
    """x (N, H, W, C) on the host with (top, bottom, left, right) rows and columns of value."""
    top, bottom, left, right = pads
    return numpy.pad(
        x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="constant", constant_values=value
    )


def windows(x_pad, kernel_h, kernel_w, stride):
    """Every window of a padded host array, by loops: yields (oh, ow, x_pad's (N, KH, KW, C))."""
    out_h = (x_pad.shape[1] - kernel_h) // stride + 1
    out_w = (x_pad.shape[2] - kernel_w) // stride + 1
    for oh, ow in itertools.product(range(out_h), range(out_w)):
        rows, columns = oh * stride, ow * stride
        yield oh, ow, x_pad[:, rows : rows + kernel_h, columns : columns + kernel_w, :]


SQUARE = [(shape, pads) for shape, pads in SAME_PADDING.items() if shape[2] == shape[3]]
SMALL = [(shape, pads) for shape, pads in SQUARE if shape[0] <= 8 and shape[1] <= 8]


@pytest.mark.parametrize("shape, pads", SMALL, ids=str)
def test_same_convolution_and_pooling_match_loops_over_a_border_padded_by_hand(shape, pads):
    height, width, kernel, _, stride = shape
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, height, width, 3))  # negative values too: max-pool must see -inf
    out_h, out_w = -(-height // stride), -(-width // stride)

    conv = sm.Conv2D(3, 2, kernel, stride=stride, padding="same")
    conv.weight.value = sm.xp.asarray(rng.standard_normal(conv.weight.shape))
    conv.bias.value = sm.xp.asarray(rng.standard_normal(2))
    expected = numpy.zeros((2, out_h, out_w, 2))
    w, b = sm.to_host(conv.weight.value), sm.to_host(conv.bias.value)
    for oh, ow, window in windows(padded_on_the_host(x, pads, 0.0), kernel, kernel, stride):
        expected[:, oh, ow, :] = numpy.tensordot(window, w, axes=([1, 2, 3], [0, 1, 2])) + b
    got = sm.to_host(conv.forward(sm.xp.asarray(x), train=False))
    numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)

    expected = numpy.zeros((2, out_h, out_w, 3))
    for oh, ow, window in windows(padded_on_the_host(x, pads, -numpy.inf), kernel, kernel, stride):
        expected[:, oh, ow, :] = window.max(axis=(1, 2))
    pool = sm.MaxPool2D(kernel, stride, padding="same")
    numpy.testing.assert_array_equal(sm.to_host(pool.forward(sm.xp.asarray(x), True)), expected)

    # average pooling averages the real pixels of each window only (TensorFlow's rule)
    real = padded_on_the_host(numpy.ones((1, height, width, 1)), pads, 0.0)
    summed = padded_on_the_host(x, pads, 0.0)
    for (oh, ow, window), (_, _, count) in zip(
        windows(summed, kernel, kernel, stride), windows(real, kernel, kernel, stride)
    ):
        expected[:, oh, ow, :] = window.sum(axis=(1, 2)) / count.sum()
    pool = zoo_layers.AvgPool2D(kernel, stride, padding="same")
    got = sm.to_host(pool.forward(sm.xp.asarray(x), True))
    numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --- SGD: PyTorch's form, v <- momentum * v + (dL/dw + decay * w), w <- w - lr * v ----------


def one_param(kind, values, grad, mask=None):
    """A float64 Param of `kind` with these values, gradient dL/d(w * c) and mask."""
    p = sm.Param(kind, (len(values),), kind)
    p.value = sm.xp.asarray(values, dtype=sm.xp.float64)
    p.grad = sm.xp.asarray(grad, dtype=sm.xp.float64)
    p.mask = None if mask is None else sm.xp.asarray(mask, dtype=sm.xp.float64)
    return p


def test_sgd_steps_are_the_values_worked_by_hand():
    # lr 0.1, momentum 0.9. Entry 0: w = 1, dL/dw = 1 at every step, no decay:
    #   v1 = 1,          w1 = 1 - 0.1 = 0.9
    #   v2 = 0.9 + 1,    w2 = 0.9 - 0.19 = 0.71
    #   v3 = 1.71 + 1,   w3 = 0.71 - 0.271 = 0.439
    # Entry 1: pruned (c = 0, w = 0) with dL/d(w * c) = 5: stays exactly 0.
    p = one_param("weight", [1.0, 0.0], [1.0, 5.0], mask=[1.0, 0.0])
    optimiser = sm.SGD([p], momentum=0.9, weight_decay=0.0)
    values = []
    for _ in range(3):
        optimiser.step(0.1)
        values.append(sm.to_host(p.value).tolist())
    assert [v[0] for v in values] == pytest.approx([0.9, 0.71, 0.439], rel=1e-12)
    assert [v[1] for v in values] == [0.0, 0.0, 0.0]
    # decay 0.5 and no gradient, w = 1: v1 = 0.5, w1 = 0.95; v2 = 0.45 + 0.475, w2 = 0.8575
    p = one_param("bias", [1.0], [0.0])
    optimiser = sm.SGD([p], momentum=0.9, weight_decay=0.5)
    optimiser.step(0.1)
    optimiser.step(0.1)
    assert sm.to_host(p.value).tolist() == pytest.approx([0.8575], rel=1e-12)


def test_a_step_with_zero_gradient_leaves_batch_norm_unchanged_and_decays_weights():
    norm = zoo_layers.BatchNorm(3)
    norm.scale.value = sm.xp.asarray([1.0, 0.5, 2.0], dtype=sm.xp.float32)
    norm.shift.value = sm.xp.asarray([0.3, -0.2, 0.1], dtype=sm.xp.float32)
    for p in norm.params:
        p.grad = sm.xp.zeros(3, dtype=sm.xp.float32)
    weight = one_param("weight", [2.0, -4.0], [0.0, 0.0])
    optimiser = sm.SGD(norm.params + [weight], momentum=0.9, weight_decay=5e-4)
    assert norm.running_mean not in optimiser.params  # statistics are not learned
    before = [sm.to_host(p.value).copy() for p in (norm.scale, norm.shift)]
    optimiser.step(0.1)
    assert (sm.to_host(norm.scale.value) == before[0]).all()  # exactly: not decayed
    assert (sm.to_host(norm.shift.value) == before[1]).all()
    # a weight with no gradient is decayed: w - 0.1 * 5e-4 * w
    assert sm.to_host(weight.value).tolist() == pytest.approx([1.9999, -3.9998], rel=1e-12)


def test_sgd_matches_torch_sgd_with_momentum_and_weight_decay_step_by_step():
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(4)
    mask = (rng.random(12) < 0.6).astype(float)
    ours = {
        "weight": one_param("weight", rng.standard_normal(12) * mask, numpy.zeros(12), mask),
        "bias": one_param("bias", rng.standard_normal(3), numpy.zeros(3)),
        "scale": one_param("scale", 1 + rng.random(3), numpy.zeros(3)),
        "shift": one_param("shift", rng.standard_normal(3), numpy.zeros(3)),
    }
    theirs = {
        name: torch.tensor(sm.to_host(p.value), dtype=torch.float64, requires_grad=True)
        for name, p in ours.items()
    }
    optimiser = sm.SGD(list(ours.values()), momentum=0.9, weight_decay=5e-4)
    reference = torch.optim.SGD(
        [
            {"params": [theirs["weight"], theirs["bias"]]},
            {"params": [theirs["scale"], theirs["shift"]], "weight_decay": 0.0},  # batch norm
        ],
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
    )
    for lr in (0.1, 0.1, 0.05, 0.05, 0.01, 0.3):
        for name, p in ours.items():
            grad = rng.standard_normal(p.shape)  # dL/d(w * c)
            p.grad = sm.xp.asarray(grad)
            dw = grad if p.mask is None else grad * sm.to_host(p.mask)  # dL/dw = c * dL/d(w * c)
            theirs[name].grad = torch.tensor(dw, dtype=torch.float64)
        for group in reference.param_groups:
            group["lr"] = lr
        optimiser.step(lr)
        reference.step()
        for name, p in ours.items():
            expected = theirs[name].detach().numpy()
            numpy.testing.assert_allclose(sm.to_host(p.value), expected, rtol=1e-12, atol=1e-15)
    assert (sm.to_host(ours["weight"].value)[mask == 0] == 0).all()


# --- the training loop: each epoch's order, and the learning rate it applies ----------------


class RecordingSGD(sm.SGD):
    """SGD that records the learning rate of every step."""

    def __init__(self, params):
        super().__init__(params)
        self.rates = []

    def step(self, lr):
        self.rates.append(lr)
        super().step(lr)


def tiny_split(rng, count, shape=(2, 2, 1)):
    """A DeviceSplit of `count` random uint8 images and labels of 3 classes."""
    images = rng.integers(0, 256, (count,) + shape).astype(numpy.uint8)
    return sm.DeviceSplit(images, rng.integers(0, 3, count), [0.5], [0.25])


def test_every_epoch_trains_on_a_fresh_permutation_from_the_runs_stream_at_the_scheduled_rate():
    rng = numpy.random.default_rng(0)
    model = sm.Sequential(sm.Flatten(), sm.Linear(4, 3))
    sm.initialise(model, "vs-h", rng)
    train, validation = tiny_split(rng, 40), tiny_split(rng, 5)
    read, fed = train.batch, []

    def batch(index, moves=None):  # records which examples each step trains on
        fed.append(sm.to_host(index).tolist())
        return read(index, moves)

    train.batch = batch
    optimiser = RecordingSGD(sm.parameters_of(model))
    state = sm.fit(
        model, optimiser, train, validation, sm.TrainingState(numpy.random.default_rng(7)),
        iterations=12, batch_size=10, base_lr=0.1, boundaries=[3, 7], log=lambda line: None,
    )  # fmt: skip
    stream = numpy.random.default_rng(7)  # the run's stream, drawn as the loop should draw it
    expected = [stream.permutation(40).tolist() for _ in range(3)]
    epochs = [sum(fed[e * 4 : (e + 1) * 4], []) for e in range(3)]  # 4 steps of 10 an epoch
    assert len(fed) == 12 and epochs == expected
    assert all(sorted(order) == list(range(40)) for order in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    # boundaries 3 and 7: iterations 0-2 at 0.1, 3-6 at 0.01, 7-11 at 0.001
    assert optimiser.rates == pytest.approx([0.1] * 3 + [0.01] * 4 + [0.001] * 5, rel=1e-12)
    # each epoch's record shows the rate of its last step (iterations 3, 7 and 11)
    assert [h["lr"] for h in state.history] == pytest.approx([0.01, 0.001, 0.001], rel=1e-12)


def test_the_learning_rate_at_and_around_each_boundary_is_worked_by_hand():
    boundaries = [25_000, 50_000, 75_000]
    expected = {0: 0.1, 24_999: 0.1, 25_000: 0.01, 25_001: 0.01, 49_999: 0.01}
    expected.update({50_000: 0.001, 50_001: 0.001, 74_999: 0.001, 75_000: 1e-4, 99_999: 1e-4})
    for iteration, rate in expected.items():
        assert sm.learning_rate(iteration, 0.1, boundaries) == pytest.approx(rate, rel=1e-12)
    # a warm-up over a boundary: iteration i < 20 runs at (i + 1) / 20 of the step-decay rate
    warm = {0: 0.1 / 20, 9: 0.1 * 10 / 20, 10: 0.01 * 11 / 20, 19: 0.01, 20: 0.01, 30: 0.001}
    for iteration, rate in warm.items():
        assert sm.learning_rate(iteration, 0.1, [10, 30], warmup=20) == pytest.approx(rate, 1e-12)


# --- evaluation: batches weighted by their size ---------------------------------------------


def test_evaluating_1500_images_in_batches_equals_one_batch_of_1500_on_the_host():
    rng = numpy.random.default_rng(5)
    linear, norm = sm.Linear(16, 10), zoo_layers.BatchNorm(10)
    model = sm.Sequential(sm.Flatten(), linear, norm)
    sm.initialise(model, "vs-h", rng)
    norm.running_mean.value = sm.xp.asarray(rng.standard_normal(10), dtype=sm.xp.float32)
    norm.running_var.value = sm.xp.asarray(0.5 + rng.random(10), dtype=sm.xp.float32)
    norm.scale.value = sm.xp.asarray(0.5 + rng.random(10), dtype=sm.xp.float32)
    images = rng.integers(0, 256, (1_500, 4, 4, 1)).astype(numpy.uint8)
    labels = rng.integers(0, 10, 1_500)
    split = sm.DeviceSplit(images, labels, [0.4], [0.3])

    # the oracle: the whole set as one batch, in float64 on the host, batch norm on its
    # running statistics
    x = (images.reshape(1_500, 16) / 255 - 0.4) / 0.3
    z = x @ sm.to_host(linear.weight.value) + sm.to_host(linear.bias.value)
    mean, var = sm.to_host(norm.running_mean.value), sm.to_host(norm.running_var.value)
    logits = (z - mean) / numpy.sqrt(var + norm.eps) * sm.to_host(norm.scale.value)
    logits += sm.to_host(norm.shift.value)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[numpy.arange(1_500), labels].mean()
    error = 100 * (logits.argmax(axis=1) != labels).mean()

    statistics = [sm.to_host(p.value).copy() for p in (norm.running_mean, norm.running_var)]
    for batch_size in (1_000, 7, 1_500, 2_000):  # 1,000 + 500; 214 of 7 and one of 2
        got_loss, got_error = sm.evaluate(model, split, batch_size=batch_size)
        assert got_loss == pytest.approx(loss, rel=1e-5), batch_size
        assert got_error == pytest.approx(error, abs=1e-9), batch_size
    assert sm.evaluate(model, split) == sm.evaluate(model, split, batch_size=1_000)
    after = [sm.to_host(p.value) for p in (norm.running_mean, norm.running_var)]
    assert all((a == b).all() for a, b in zip(statistics, after))  # evaluation learns nothing


# --- the iterative criteria never revive a pruned connection --------------------------------


def flat_host(arrays):
    return numpy.concatenate([sm.to_host(a).ravel() for a in arrays])


def two_params(rng):
    """Two gated-to-be weights with no zeros, so that value 0 means pruned."""
    params = [sm.Param("weight", (30, 20), "weight"), sm.Param("weight", (50,), "weight")]
    for p in params:
        p.value = sm.xp.asarray(rng.choice([-1, 1], p.shape) * (0.1 + rng.random(p.shape)))
    return params


@pytest.mark.parametrize("invert", [False, True], ids=["kept", "inverted"])
@pytest.mark.parametrize("score_kind", ["fresh draws", "|w|"])
def test_iterate_never_revives_a_pruned_connection_whatever_it_scores(invert, score_kind):
    # "fresh draws": every round scores every entry anew, pruned ones as high as any;
    # "|w|": pruned entries score 0, the lowest, which is what an inverted round keeps
    rng = numpy.random.default_rng(1)
    params = two_params(rng)
    alive_each_round = []

    def score():
        alive_each_round.append(flat_host([p.value for p in params]) != 0)
        if score_kind == "|w|":
            return [sm.xp.abs(p.value) for p in params]
        return [sm.xp.asarray(0.1 + rng.random(p.shape)) for p in params]

    masks, _ = criteria.iterate(params, score, 0.95, 6, invert)
    alive_each_round.append(flat_host(masks) != 0)
    counts = [int(alive.sum()) for alive in alive_each_round]
    assert counts[-1] == sm.kappa_for(0.95, 650) and counts == sorted(counts, reverse=True)
    for before, after in zip(alive_each_round, alive_each_round[1:]):
        assert not (after & ~before).any(), "a pruned connection came back"


@pytest.mark.parametrize("method", criteria.ITERATIVE)
@pytest.mark.parametrize("invert", [False, True], ids=["kept", "inverted"])
def test_prune_by_an_iterative_method_keeps_each_round_within_the_last(monkeypatch, method, invert):
    rng = numpy.random.default_rng(2)
    model = models.name_parameters(
        sm.Sequential(sm.Flatten(), sm.Linear(16, 12), sm.ReLU(), sm.Linear(12, 4))
    )
    sm.initialise(model, "vs-h", rng)
    images = sm.xp.asarray(rng.standard_normal((8, 4, 4, 1)), dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, 4, 8))
    rounds, chosen = [], criteria.select

    def select(scores, kappa, invert=False, alive=None, ties=None):
        keep = chosen(scores, kappa, invert, alive, ties)
        rounds.append(sm.to_host(keep))
        return keep

    monkeypatch.setattr(criteria, "select", select)
    gated = criteria.prune_by(method, model, images, labels, 0.9, rounds=5, invert=invert)
    assert len(rounds) == 5
    for before, after in zip(rounds, rounds[1:]):
        assert not (after & ~before).any(), "a pruned connection came back"
    assert (flat_host([p.mask for p in gated]) == rounds[-1]).all()


# --- GraSP without PyTorch: closed forms of the Hessian ------------------------------------


def softmax_rows(logits):
    """softmax of each row of a host (N, classes) array, in float64."""
    shifted = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_grasp_scores_are_w_times_h_g_in_closed_form_for_a_linear_network():
    # logits l = (x W + b) / T, L = mean_n CE(l_n): g = dL/dW = X^T (P - Y) / (N T), and the
    # Hessian of CE in l is S_n = diag(p_n) - p_n p_n^T, so along W's direction G
    # (H G)[d, k] = sum_n x_nd (S_n G^T x_n)_k / (N T^2). GraSP keeps the largest W * (H g).
    rng = numpy.random.default_rng(6)
    model = models.name_parameters(sm.Sequential(sm.Flatten(), sm.Linear(12, 5)))
    sm.initialise(model, "vs-h", rng)
    model.children[1].bias.value = sm.xp.asarray(rng.standard_normal(5), dtype=sm.xp.float32)
    images = sm.xp.asarray(rng.standard_normal((9, 2, 2, 3)) * 30, dtype=sm.xp.float32)
    labels = sm.xp.asarray(rng.integers(0, 5, 9))
    params = sm.prunable_parameters(model)
    t, x, y = criteria.GRASP_TEMPERATURE, sm.to_host(images).reshape(9, 12), sm.to_host(labels)
    w, b = (sm.to_host(p.value).astype(numpy.float64) for p in params)
    p = softmax_rows((x @ w + b) / t)
    g = x.T @ (p - numpy.eye(5)[y]) / (9 * t)  # (12, 5)
    v = x @ g  # (9, 5): G^T x_n for every n
    u = p * v - p * (p * v).sum(axis=1, keepdims=True)  # S_n (G^T x_n)
    expected = w * (x.T @ u) / (9 * t * t)
    assert (expected > 0).any() and (expected < 0).any()  # signed: a wrong sign would show
    ours = criteria.grasp_scores(model, images, labels, params)
    scale = numpy.abs(expected).max()
    assert numpy.abs(sm.to_host(ours[0]) - expected).max() <= 1e-6 * scale
    assert (sm.to_host(ours[1]) == 0).all()  # biases score 0
    gated = criteria.prune_by("grasp", model, images, labels, 0.75)
    keep = sm.to_host(gated[0].mask) == 1
    assert keep.sum() > 0 and expected[keep].min() >= expected[~keep].max() - 1e-6 * scale


@pytest.mark.parametrize("gap", [0.5, 1.5, -0.5, -1.5])
def test_a_max_pool_branch_within_the_step_gives_the_closed_form_hessian_at_w(gap):
    # A 1x1 convolution (w1, w2, bias b) of a 2x2 image whose top row is (1, 0) and (0, 1) in
    # the two channels: the top window's two largest inputs are z1 = w1 + b and z2 = w2 + b,
    # the bottom row far below. Then z = max, logits l = z a + c, L = CE(l, 1). Along v the
    # two cross at t = gap * h, inside the difference step h; the Hessian wanted is that of
    # the branch at t = 0, where z = w_k + b (k = 1 if gap > 0): with p = softmax(l),
    # d = p - e_1, S = diag(p) - p p^T and, along v, dz = v_wk + v_b, dl = a dz + z v_a + v_c:
    #   (H v)_wk = (H v)_b = a . S dl + d . v_a,   (H v)_(other w) = 0,
    #   (H v)_a = z S dl + dz d,                   (H v)_c = S dl
    net = sm.Sequential(sm.Conv2D(2, 1, 1), sm.MaxPool2D(2), sm.Flatten(), sm.Linear(1, 3))
    rng = numpy.random.default_rng(0)
    weights = numpy.array([0.7, 0.7])
    b, a, c = 0.2, rng.standard_normal(3), rng.standard_normal(3)
    v_w, v_b, v_a, v_c = numpy.array([-1.0, 1.0]), 0.3, numpy.array([0.2, -0.1, 0.4]), rng.random(3)
    step = (  # the step hessian_vector_product takes: |step * v| = HESSIAN_STEP |w|
        criteria.HESSIAN_STEP
        * numpy.sqrt((weights**2).sum() + b * b + (a**2).sum() + (c**2).sum())
        / numpy.sqrt((v_w**2).sum() + v_b * v_b + (v_a**2).sum() + (v_c**2).sum())
    )
    weights[0] += 2 * gap * step  # z1 - z2 = 2 gap h - 2 t: they cross at t = gap h
    values = [weights.reshape(1, 1, 2, 1), numpy.array([b]), a.reshape(1, 3), c]
    directions = [v_w.reshape(1, 1, 2, 1), numpy.array([v_b]), v_a.reshape(1, 3), v_c]
    params = sm.parameters_of(net)
    for param, value in zip(params, values):
        param.value, param.mask = sm.xp.asarray(value), sm.xp.ones_like(sm.xp.asarray(value))
    x = sm.xp.asarray([[[[1.0, 0.0], [0.0, 1.0]], [[-5.0, -5.0], [-5.0, -5.0]]]])  # (1, 2, 2, 2)
    ours = criteria.hessian_vector_product(
        net, x, sm.xp.asarray([1]), params, [sm.xp.asarray(d) for d in directions], 1.0
    )
    k = 0 if gap > 0 else 1
    z = weights[k] + b
    p = softmax_rows((z * a + c)[None])[0]
    d, s = p - numpy.eye(3)[1], numpy.diag(p) - numpy.outer(p, p)
    dz = v_w[k] + v_b
    dl = a * dz + z * v_a + v_c
    hv_w = numpy.zeros(2)
    hv_w[k] = a @ s @ dl + d @ v_a
    expected = [hv_w, numpy.array([hv_w[k]]), z * (s @ dl) + dz * d, s @ dl]
    scale = max(numpy.abs(e).max() for e in expected)  # the differences' rounding: ~1e-8
    for mine, theirs in zip(ours, expected):
        assert numpy.abs(sm.to_host(mine).ravel() - theirs).max() <= 1e-6 * scale


# --- the validation split ------------------------------------------------------------------


def indexed_dataset(count):
    """A Dataset whose training image k carries k in its first two pixels (and label k % 10)."""
    index = numpy.arange(count)
    images = numpy.random.default_rng(0).integers(0, 256, (count, 28, 28, 1)).astype(numpy.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = index // 256, index % 256
    test_images = numpy.zeros((20, 28, 28, 1), dtype=numpy.uint8)
    return data.Dataset(
        "mnist", images, index % 10, test_images, numpy.arange(20) % 10, 10,
        numpy.float32([0.5]), numpy.float32([0.25]), None, f"MNIST, {count} training images",
    )  # fmt: skip


def indices_of(split):
    """The training-set indices of a split's examples, read from their first two pixels."""
    images = sm.to_host(split.images)
    return images[:, 0, 0, 0].astype(int) * 256 + images[:, 0, 1, 0]


@pytest.mark.parametrize("count, fraction", [(300, 0.1), (1_001, 0.25), (50, 0.0)])
def test_validation_and_training_indices_are_disjoint_and_cover_the_training_set(count, fraction):
    dataset = indexed_dataset(count)
    train, validation, test = sm.split_dataset(dataset, fraction, numpy.random.default_rng(3))
    held, trained = indices_of(validation), indices_of(train)
    assert len(held) == round(fraction * count) and len(trained) == count - len(held)
    assert not set(held) & set(trained)  # disjoint: no validation image is trained on
    assert sorted(list(held) + list(trained)) == list(range(count))  # every image in one split
    assert (sm.to_host(train.labels) == trained % 10).all()  # labels travel with their images
    assert (sm.to_host(validation.labels) == held % 10).all()
    assert len(test) == 20 and not sm.to_host(test.images).any()  # the test set as it was
    if len(held):  # drawn at random, not the first or the last images
        assert sorted(held) not in (list(range(len(held))), list(range(count - len(held), count)))
        other = indices_of(sm.split_dataset(dataset, fraction, numpy.random.default_rng(4))[1])
        assert set(other) != set(held)  # another stream, another split
