"""SNIP itself: the sensitivity is dL/dc, the ranking is global and exact, ties are
deterministic, and training never revives a pruned connection."""

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import models
import snip_min as sm
from extensions import zoo_layers
from helpers import array, assert_close_unless_kink, numerical_gradient, relative_error

seeds = st.integers(0, 2**32 - 1)


def small_network():
    """A little convnet with every kind of layer SNIP has to see through."""
    return models.name_parameters(
        sm.Sequential(
            sm.Conv2D(1, 3, 3, padding="same"),
            zoo_layers.BatchNorm(3),
            sm.ReLU(),
            sm.MaxPool2D(2),
            sm.Conv2D(3, 4, 2),
            sm.Flatten(),
            sm.Linear(4, 5),
            sm.ReLU(),
            sm.Linear(5, 3),
        )
    )


def random_batch(rng, n=6, shape=(4, 4, 1), classes=3):
    return array(rng, (n,) + shape), sm.xp.asarray(rng.integers(0, classes, n))


def loss_of(model, images, labels):
    return sm.softmax_cross_entropy(model.forward(images, train=False), labels)[0]


# --- the sensitivity ------------------------------------------------------------------------


@given(seed=seeds)
def test_sensitivity_is_the_derivative_of_the_loss_with_respect_to_the_gates(seed):
    rng = numpy.random.default_rng(seed)
    model = small_network()
    sm.initialise(model, "vs-h", rng, dtype=sm.xp.float64)
    for p in sm.parameters_of(model):  # non-zero biases, so their scores are exercised too
        if p.kind == "bias":
            p.value = array(rng, p.shape, 0.1)
    images, labels = random_batch(rng)
    params = sm.prunable_parameters(model)
    g = sm.connection_sensitivity(model, images, labels, params)
    largest = max(float(sm.xp.abs(each).max()) for each in g)

    def loss():
        return loss_of(model, images, labels)

    for p, g_p in zip(params, g):
        # dL/dc by finite differences on the gates themselves, at c = 1
        assert_close_unless_kink(
            g_p, numerical_gradient(loss, p.mask), loss, p.mask, largest, 1e-6, p.name
        )
        # ... equals w * dL/dw, with dL/dw by finite differences on the weights
        assert_close_unless_kink(
            g_p,
            sm.to_host(p.value) * numerical_gradient(loss, p.value),
            loss,
            p.value,
            largest,
            1e-6,
            p.name,
        )


def test_zero_initialised_biases_have_zero_sensitivity_and_are_pruned_first():
    rng = numpy.random.default_rng(0)
    model = models.build("lenet300")
    sm.initialise(model, "vs-x", rng)
    images, labels = random_batch(rng, 20, (28, 28, 1), 10)
    params = sm.snip(model, images.astype(sm.xp.float32), labels, 0.5)
    for p in params:
        if p.kind == "bias":
            assert float(p.mask.sum()) == 0, p.name


@given(seed=seeds, alpha=st.floats(1e-3, 1e3))
def test_scores_and_masks_are_invariant_to_scaling_the_loss(seed, alpha):
    rng = numpy.random.default_rng(seed)
    g = [array(rng, (5, 4)), array(rng, (7,)), array(rng, (2, 3, 2))]
    # scaling L by alpha scales every g = dL/dc by alpha
    s, s_scaled = sm.normalised_scores(g), sm.normalised_scores([alpha * each for each in g])
    assert relative_error(s, s_scaled) < 1e-12
    assert abs(float(s.sum()) - 1.0) < 1e-12
    for sparsity in (0.3, 0.8):
        for m1, m2 in zip(
            sm.snip_masks(g, sparsity), sm.snip_masks([alpha * e for e in g], sparsity)
        ):
            assert bool((m1 == m2).all())


# --- the global top-k -------------------------------------------------------------------------


@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    sparsity=st.floats(0, 0.999),
    seed=seeds,
)
def test_exactly_kappa_connections_are_kept(sizes, sparsity, seed):
    rng = numpy.random.default_rng(seed)
    g = [array(rng, (size,)) for size in sizes]
    masks = sm.snip_masks(g, sparsity)
    m = sum(sizes)
    assert sum(int(mask.sum()) for mask in masks) == int(round((1 - sparsity) * m))
    # and they are the largest: every kept |g| >= every pruned |g|
    scores = numpy.concatenate([numpy.abs(sm.to_host(each)) for each in g])
    kept = numpy.concatenate([sm.to_host(mask) for mask in masks]).astype(bool)
    if kept.any() and (~kept).any():
        assert scores[kept].min() >= scores[~kept].max()


@given(values=st.lists(st.integers(0, 4), min_size=1, max_size=60), data=st.data())
def test_ties_are_broken_towards_the_lowest_index(values, data):
    kappa = data.draw(st.integers(0, len(values)))
    scores = sm.xp.asarray(values, dtype=sm.xp.float64)
    keep = sm.to_host(sm.top_k_mask(scores, kappa))
    # reference: a stable sort by decreasing score keeps equal scores in index order
    expected = numpy.zeros(len(values), bool)
    expected[numpy.argsort(-numpy.asarray(values), kind="stable")[:kappa]] = True
    assert numpy.array_equal(keep, expected)
    assert numpy.array_equal(sm.to_host(sm.top_k_mask(scores, kappa)), keep)  # and repeatably so


def test_sparsity_zero_keeps_everything_even_zero_scores():
    g = [sm.xp.zeros((3, 3)), sm.xp.asarray([0.0, 1.0, -2.0])]
    assert all(bool((mask == 1).all()) for mask in sm.snip_masks(g, 0.0))


def test_all_zero_scores_still_keep_exactly_kappa_by_index():
    masks = sm.snip_masks([sm.xp.zeros(10)], 0.7)
    assert sm.to_host(masks[0]).tolist() == [1, 1, 1] + [0] * 7


@pytest.mark.parametrize(
    "name,sparsity,kept",
    [
        ("lenet5", 0.99, 4_311),
        ("lenet300", 0.98, 5_332),
        ("lenet300", 0.95, 13_331),
        ("lenet5", 0.98, 8_622),
    ],
)
def test_lenets_keep_round_one_minus_sparsity_times_m(name, sparsity, kept):
    # kappa = round((1 - s) * m) in float64: (1 - 0.95) * 266,610 = 13,330.50000000001 -> 13,331
    rng = numpy.random.default_rng(1)
    model = models.build(name)
    sm.initialise(model, "vs-x", rng)
    images, labels = random_batch(rng, 50, (28, 28, 1), 10)
    sm.snip(model, images.astype(sm.xp.float32), labels, sparsity)
    assert sum(row[2] for row in sm.pruning_table(model)) == kept


@pytest.mark.parametrize(
    "prune,gated_kinds", [("weights+biases", {"weight", "bias"}), ("weights", {"weight"})]
)
def test_prune_choice_decides_which_parameters_get_gates(prune, gated_kinds):
    model = models.build("lenet5")
    sm.initialise(model)
    params = sm.prunable_parameters(model, prune)
    assert {p.kind for p in params} == gated_kinds
    m = sum(p.size for p in params)
    assert m == (431_080 if prune == "weights+biases" else 431_080 - (20 + 50 + 500 + 10))


# --- training with the mask held fixed ----------------------------------------------------------


def test_pruned_parameters_stay_exactly_zero_through_training():
    rng = numpy.random.default_rng(3)
    model = small_network()
    sm.initialise(model, "vs-h", rng)
    images, labels = random_batch(rng, 16)
    images = images.astype(sm.xp.float32)
    gated = sm.snip(model, images, labels, 0.7)
    initial = [sm.to_host(p.value).copy() for p in gated]
    optimiser = sm.SGD(sm.parameters_of(model), momentum=0.9, weight_decay=5e-4)
    pulled = set()  # the gated Params whose pruned entries the loss pulled on
    for step in range(60):
        images, labels = random_batch(rng, 16)
        sm.train_step(model, optimiser, images.astype(sm.xp.float32), labels, lr=0.5)
        velocity = dict(zip(map(id, optimiser.params), optimiser.velocity))
        for p in gated:
            pruned = p.mask == 0
            assert bool((p.value[pruned] == 0).all()), f"{p.name} revived at step {step}"
            assert bool((velocity[id(p)][pruned] == 0).all())
            if bool((p.grad[pruned] != 0).any()):  # dL/d(w * c) there: only c holds them at 0
                pulled.add(p.name)
    assert pulled, "no pruned entry ever had a gradient: the test would prove nothing"
    # and the kept connections did learn: every kept weight moved away from its initial value
    # (one that no example reaches still decays), and the largest moves are far from rounding
    for p, w in zip(gated, initial):
        if p.kind == "weight":
            kept = sm.to_host(p.mask) == 1
            moved = numpy.abs(sm.to_host(p.value) - w)[kept]
            assert (moved > 0).all() and moved.max() > 1e-3 * numpy.abs(w).max(), p.name


# --- initialisation ---------------------------------------------------------------------------

INIT_SHAPES = {"linear": (400, 300), "conv": (5, 5, 20, 50)}  # fan_in 400 and 500


@pytest.mark.parametrize("shape", INIT_SHAPES.values(), ids=INIT_SHAPES.keys())
@pytest.mark.parametrize("init", sm.INITIALISATIONS)
def test_every_initialisation_draws_the_spread_it_promises(init, shape):
    """The standard deviation of 120,000+ draws against each formula (their relative standard
    error is about 0.2%), the truncations' bounds, and one seed giving one array."""
    fan_in = math.prod(shape[:-1])
    fan_out = math.prod(shape[:-2]) * shape[-1]
    expected = {
        "vs-x": math.sqrt(2 / (fan_in + fan_out)),
        "vs-h": math.sqrt(2 / fan_in),
        "rn": 0.1,
        "tn": 0.1 * sm.TRUNCATED_STD,
        "lecun": math.sqrt(1 / fan_in),
    }[init]
    w = sm.draw_weight(shape, init, numpy.random.default_rng(0))
    assert w.shape == shape
    assert abs(w.mean()) < 0.01 * expected
    assert w.std() == pytest.approx(expected, rel=0.01)
    bound = {"tn": 0.2, "lecun": 2 * math.sqrt(1 / fan_in) / sm.TRUNCATED_STD}.get(init)
    if bound is not None:
        assert numpy.abs(w).max() <= bound
        assert numpy.abs(w).max() > 0.99 * bound  # cut at the bound, not narrower
    else:
        assert numpy.abs(w).max() > 4 * expected  # a normal's tails are not cut
    assert numpy.array_equal(w, sm.draw_weight(shape, init, numpy.random.default_rng(0)))


def test_truncation_constant_is_the_standard_deviation_of_a_normal_cut_at_two():
    """Var of N(0, 1) restricted to [-2, 2] is 1 - 2 * 2 phi(2) / (2 Phi(2) - 1)."""
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)  # the density at 2
    mass = math.erf(2 / math.sqrt(2))  # P(|z| <= 2) = 2 Phi(2) - 1
    assert sm.TRUNCATED_STD == pytest.approx(math.sqrt(1 - 4 * phi / mass), rel=1e-15)


def test_lecun_is_half_the_variance_of_vs_h_and_initialise_gives_zero_biases():
    model = models.build("lenet5")
    sm.initialise(model, "lecun", numpy.random.default_rng(3))
    for p in sm.parameters_of(model):
        value = sm.to_host(p.value)
        if p.kind == "bias":
            assert not value.any()
        else:
            fan_in = math.prod(p.shape[:-1])
            assert value.std() == pytest.approx(
                math.sqrt(1 / fan_in), rel=0.15
            )  # conv1: only 500 draws


# --- the schedule and the training loop ----------------------------------------------------


def test_the_warm_up_climbs_linearly_to_the_rate_and_then_steps_down():
    # iteration i < warmup runs at (i + 1) / warmup of the step-decay rate, worked by hand
    rates = [sm.learning_rate(i, 0.1, [6, 8], warmup=4) for i in range(10)]
    expected = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert [sm.learning_rate(i, 0.1, [6, 8]) for i in range(4)] == [0.1] * 4  # none by default


def test_a_stop_request_ends_training_after_the_step_even_without_a_checkpoint(monkeypatch):
    rng = numpy.random.default_rng(0)
    model = models.build("lenet300", "mnist")
    sm.initialise(model, "vs-h", rng)
    images = rng.integers(0, 256, (40, 28, 28, 1), dtype=numpy.uint8)
    train = sm.DeviceSplit(images, rng.integers(0, 10, 40), [0.5], [0.25])
    state = sm.TrainingState(numpy.random.default_rng(1))
    monkeypatch.setattr(sm, "STOP_REQUESTED", True)
    with pytest.raises(sm.Interrupted, match="stopped at iteration 1"):
        sm.fit(
            model, sm.SGD(sm.parameters_of(model)), train, train, state,
            iterations=10, batch_size=10, base_lr=0.01, boundaries=[], log=lambda line: None,
        )  # fmt: skip
    assert state.iteration == 1


def test_a_network_that_skips_its_input_gradient_keeps_no_cache_after_backward():
    rng = numpy.random.default_rng(0)
    model = models.build("lenet300", "mnist")  # Flatten, then the first Linear skips dL/dx
    sm.initialise(model, "vs-h", rng)
    logits = model.forward(sm.xp.asarray(rng.standard_normal((3, 28, 28, 1))), train=True)
    assert model.backward(sm.xp.ones_like(logits)) is None
    assert [type(layer).__name__ for layer in sm.layers_of(model) if layer.cache is not None] == []
