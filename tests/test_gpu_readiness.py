"""Ready for a real GPU: what would go wrong there that a CPU does not show.

- A forward pass that no backward pass follows (inside snip_min.forward_only, as every
  evaluation runs) keeps no cache in any layer and computes the same numbers; evaluation
  runs in batches of the training batch size or of the memory budget, whichever is smaller,
  and its peak device memory is no higher than a training step's (counted by the strict
  stand-in's allocator); running out of memory there names the batch.
- The masks rank the sensitivities themselves: one ulp of the normaliser sum |g|, which a
  device's order of summation decides, changes no mask at VGG-D's size, where ranking
  s = |g| / sum |g| does change one.
- Iterative SNIP scores in float64: its mask does not depend on the rounding of the
  scoring pass (the scoring batch in another order, 1 or 2 BLAS threads).
- Recurrent steps take a fixed, small number of device operations per time step, and none
  that makes CuPy copy an input overlapping its output.
- The page-locked staging memory of the copies to the device is given back once the splits
  are there.
"""

import os

import numpy
import pytest

import data
import helpers
import models
import snip_min as sm
from extensions import compaction, criteria
from extensions.recurrent import GRU, LSTM, AsSequence
from extensions.zoo_layers import (
    AvgPool2D,
    BatchNorm,
    Concat,
    GlobalAvgPool,
    ZeroChannels,
)
from scripts.device_counts import Peak  # the meter docs/gpu.md's memory table was read with

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TESTS = os.path.join(helpers.ROOT, "tests")


def random_batch(rng, n, shape, classes=10):
    images = sm.xp.asarray(rng.standard_normal((n, *shape)), dtype=sm.xp.float32)
    return images, sm.xp.asarray(rng.integers(0, classes, n))


def random_split(rng, n, shape, classes=10):
    """A DeviceSplit of n random uint8 images of `shape` (H, W, C)."""
    channels = shape[-1]
    pixels = rng.integers(0, 256, (n, *shape), dtype=numpy.uint8)
    return sm.DeviceSplit(pixels, rng.integers(0, classes, n), [0.5] * channels, [0.25] * channels)


# ======================================================================================
# Forward-only passes keep nothing
# ======================================================================================

# (model, input shape): small inputs, every layer type that keeps a cache among them
FORWARD_ONLY_MODELS = [
    ("lenet5", (28, 28, 1)),
    ("resnet18", (8, 8, 3)),
    ("squeezenet-bypass", (32, 32, 3)),
    ("lstm-s", (6, 28, 1)),
    ("gru-s-pixels", (3, 4, 1)),
]
CACHING_LAYERS = {
    sm.Linear,
    sm.Conv2D,
    sm.MaxPool2D,
    sm.ReLU,
    sm.Flatten,
    BatchNorm,
    AvgPool2D,
    GlobalAvgPool,
    ZeroChannels,
    Concat,
    LSTM,
    GRU,
    AsSequence,
    compaction.Gather,
}


def compact_lenet300(rng):
    """A compacted LeNet-300-100 (it starts with a Gather) and an input shape."""
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    images, labels = random_batch(rng, 20, (28, 28, 1))
    sm.snip(model, images, labels, 0.99)
    return compaction.compact(model, (28, 28, 1)).network


def test_a_forward_pass_inside_forward_only_keeps_no_cache_and_computes_the_same():
    rng = numpy.random.default_rng(0)
    networks = []
    for name, shape in FORWARD_ONLY_MODELS:
        model = models.build(name)
        sm.initialise(model, "vs-h", rng)
        networks.append((model, shape))
    networks.append((compact_lenet300(rng), (28, 28, 1)))
    seen = set()
    for model, shape in networks:
        images, _ = random_batch(rng, 2, shape)
        with_caches = sm.to_host(model.forward(images, train=False))
        kept = [layer for layer in sm.layers_of(model) if layer.cache is not None]
        seen |= {type(layer) for layer in kept}
        sm.forget_caches(model)
        with sm.forward_only():
            without = sm.to_host(model.forward(images, train=False))
        left = [type(layer).__name__ for layer in sm.layers_of(model) if layer.cache is not None]
        assert kept and left == [], left
        numpy.testing.assert_array_equal(without, with_caches)
    assert seen == CACHING_LAYERS  # every layer that keeps a cache was seen keeping one


def test_forward_only_is_undone_on_leaving_the_block_even_by_an_error():
    assert sm.BACKWARD_FOLLOWS
    with pytest.raises(ZeroDivisionError):
        with sm.forward_only():
            assert not sm.BACKWARD_FOLLOWS
            with sm.forward_only():  # nested: still forward-only after the inner block
                pass
            assert not sm.BACKWARD_FOLLOWS
            1 / 0
    assert sm.BACKWARD_FOLLOWS


def test_a_backward_pass_after_a_forward_only_pass_says_what_went_wrong():
    rng = numpy.random.default_rng(1)
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    images, labels = random_batch(rng, 3, (28, 28, 1))
    with sm.forward_only():
        logits = model.forward(images, train=False)
    _, dlogits = sm.softmax_cross_entropy(logits, labels)
    with pytest.raises(RuntimeError, match=r"Linear.backward: no cache .*forward_only"):
        model.backward(dlogits)


def test_an_evaluation_keeps_no_cache_and_agrees_with_a_plain_forward_pass():
    rng = numpy.random.default_rng(2)
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", rng)
    split = random_split(rng, 30, (28, 28, 1))
    loss, error = sm.evaluate(model, split, batch_size=30)
    assert all(layer.cache is None for layer in sm.layers_of(model))
    images, labels = split.batch(slice(0, 30))
    logits = model.forward(images, train=False)
    expected_loss, _ = sm.softmax_cross_entropy(logits, labels)
    wrong = int(sm.to_host((logits.argmax(axis=1) != labels).sum()))
    assert error == pytest.approx(100.0 * wrong / 30)
    assert loss == pytest.approx(float(expected_loss), rel=1e-6)


# ======================================================================================
# Evaluation's batch: the training batch, or the memory budget, whichever is smaller
# ======================================================================================


def small_network():
    """Flatten, Linear(12, 5), ReLU, Linear(5, 3): per example its caches hold the first
    Linear's input (12 float32, 48 bytes), ReLU's mask (5 bools, 5 bytes) and the second
    Linear's input (5 float32, 20 bytes): 73 bytes (its weights are the same for any batch)."""
    network = models.name_parameters(
        sm.Sequential(sm.Flatten(), sm.Linear(12, 5), sm.ReLU(), sm.Linear(5, 3))
    )
    sm.initialise(network, "vs-h", numpy.random.default_rng(3))
    return network


@pytest.mark.parametrize(
    "batch_size, budget, expected",
    [(64, 2**30, 64), (64, 73 * 4 + 72, 4), (3, 73 * 4, 3), (64, 10, 1)],
    ids=["the batch", "the budget", "the batch again", "at least one"],
)
def test_evaluation_batches_are_the_batch_size_or_the_budget_whichever_is_smaller(
    batch_size, budget, expected
):
    network = small_network()
    split = random_split(numpy.random.default_rng(4), 50, (2, 2, 3), classes=3)
    assert sm.evaluation_batch(network, split, batch_size, budget) == expected
    seen, real_batch = [], split.batch
    split.batch = lambda index, moves=None: seen.append(index) or real_batch(index, moves)
    sm.evaluate(network, split, batch_size, budget)
    sizes = [len(range(50)[index]) for index in seen[min(2, batch_size) :]]  # after the probes
    assert sizes == [expected] * (50 // expected) + ([50 % expected] if 50 % expected else [])


def test_fit_validates_in_batches_of_its_training_batch(monkeypatch):
    rng = numpy.random.default_rng(5)
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    calls, real_evaluate = [], sm.evaluate

    def evaluate(model, split, *args, **kwargs):
        calls.append((args, kwargs))
        return real_evaluate(model, split, *args, **kwargs)

    monkeypatch.setattr(sm, "evaluate", evaluate)
    train, validation = random_split(rng, 100, (28, 28, 1)), random_split(rng, 60, (28, 28, 1))
    optimiser = sm.SGD(sm.parameters_of(model))
    state = sm.TrainingState(numpy.random.default_rng(6))
    sm.fit(
        model,
        optimiser,
        train,
        validation,
        state,
        iterations=4,
        batch_size=25,
        base_lr=0.01,
        boundaries=[],
        log=lambda line: None,
    )
    assert calls == [((25,), {})]


def test_running_out_of_memory_while_evaluating_names_the_batch(monkeypatch):
    rng = numpy.random.default_rng(7)
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    split = random_split(rng, 40, (28, 28, 1))
    layer = model.children[-1]
    real_forward = layer.forward

    def forward(x, train):
        if not sm.BACKWARD_FOLLOWS:  # the evaluation's own passes, not the budget's probes
            raise MemoryError("Out of memory allocating 4,000,000 bytes")
        return real_forward(x, train)

    monkeypatch.setattr(layer, "forward", forward)
    with pytest.raises(sm.EvaluationOutOfMemory) as raised:
        sm.evaluate(model, split, batch_size=16)
    assert raised.value.batch_size == 16 and isinstance(raised.value, MemoryError)
    assert str(raised.value) == "out of memory while evaluating batches of 16 examples"
    assert all(each.cache is None for each in sm.layers_of(model))


@pytest.mark.parametrize(
    "name, shape, batch, examples",
    [
        ("resnet18", (16, 16, 3), 2, 16),
        ("wrn-16-8", (16, 16, 3), 2, 16),
        ("vgg-d", (32, 32, 3), 2, 16),
        ("lstm-b-pixels", (8, 8, 1), 4, 32),
    ],
)
def test_evaluation_peaks_no_higher_than_a_training_step(
    stand_in, monkeypatch, name, shape, batch, examples
):
    """Through fit, as a run trains: one training step, then the validation split.

    At the issue's sizes (a batch of 128 or 100, images of 32 x 32 or 28 x 28, docs/gpu.md)
    this would take minutes on a CPU; the property holds the same way at these: a batch of
    2 (4 for the LSTM), a validation split of 16 (32) examples, 16 x 16 images for the two
    ResNets (any size passes their global average pool; VGG-D's classifier needs 32 x 32)
    and 8 x 8 pixels (64 steps) for LSTM-b. With a fixed evaluation batch of 1,000 (here: the
    whole split) and every layer's cache kept, evaluation's peak is the higher one at these
    sizes too."""
    rng = numpy.random.default_rng(8)
    model = models.build(name)
    sm.initialise(model, "vs-h", rng)
    images, labels = random_batch(rng, batch, shape)
    sm.snip(model, images, labels, 0.9)
    optimiser = sm.SGD(sm.parameters_of(model))
    # a step first, as in a run, whose first validation comes after a whole epoch: from the
    # second step on, the gradients of the last one are there when a step starts
    sm.train_step(model, optimiser, images, labels, 0.01)
    train, validation = random_split(rng, batch, shape), random_split(rng, examples, shape)
    peaks, real_step, real_evaluate = {}, sm.train_step, sm.evaluate

    def measured(key, function):
        def wrapper(*args, **kwargs):
            with Peak(sm) as peak:
                result = function(*args, **kwargs)
            peaks[key] = peak.bytes
            return result

        return wrapper

    monkeypatch.setattr(sm, "train_step", measured("training step", real_step))
    monkeypatch.setattr(sm, "evaluate", measured("evaluation", real_evaluate))
    state = sm.TrainingState(numpy.random.default_rng(9))
    sm.fit(
        model,
        optimiser,
        train,
        validation,
        state,
        iterations=1,
        batch_size=batch,
        base_lr=0.01,
        boundaries=[],
        log=lambda line: None,
    )
    assert peaks["evaluation"] <= peaks["training step"], peaks


# ======================================================================================
# The masks rank the sensitivities themselves
# ======================================================================================


def vgg_sized_scores():
    """VGG-D's gated Params (weights and biases, 15,245,130 entries) with uniform scores in
    [0, 1) drawn on the host (seed 0) and rounded once to float32, as random pruning draws
    them; and the flat float32 vector on the device."""
    model = models.build("vgg-d")
    params = sm.prunable_parameters(model)
    flat = numpy.random.default_rng(0).random(sum(p.size for p in params)).astype(numpy.float32)
    start, arrays = 0, []
    for p in params:
        arrays.append(sm.xp.asarray(flat[start : start + p.size].reshape(p.shape)))
        start += p.size
    return model, params, arrays, flat


def one_ulp_larger_normaliser(sensitivities):
    """normalised_scores with its sum one ulp larger, as another order of summation gives."""
    flat = sm.magnitudes(sensitivities)
    total = flat.sum()
    return flat / sm.xp.nextafter(total, sm.xp.asarray(numpy.inf, dtype=total.dtype))


def test_one_ulp_of_the_normaliser_changes_no_mask_at_vgg_size(monkeypatch):
    model, params, arrays, flat = vgg_sized_scores()
    m, kappa = flat.size, sm.kappa_for(0.95, flat.size)
    assert m == 15_245_130
    # at this size one ulp of the sum does change the top-k of s = |g| / sum |g| ...
    total = flat.sum()  # float32, summed on the host: the same on every backend
    above = numpy.nextafter(total, numpy.float32(numpy.inf))
    scores = sm.xp.asarray(flat)
    by_s = sm.to_host(sm.top_k_mask(scores / total, kappa))
    by_s_above = sm.to_host(sm.top_k_mask(scores / above, kappa))
    assert (by_s != by_s_above).sum() == 2  # one connection in, another out
    # ... but not the masks, which rank |g| itself: SNIP's (and random pruning's) ...
    masks = [sm.to_host(mask) for mask in sm.snip_masks(arrays, 0.95)]
    with monkeypatch.context() as patch:
        patch.setattr(sm, "normalised_scores", one_ulp_larger_normaliser)
        again = [sm.to_host(mask) for mask in sm.snip_masks(arrays, 0.95)]
    assert all((a == b).all() for a, b in zip(masks, again))
    keep = numpy.concatenate([mask.ravel() for mask in masks]) == 1
    assert keep.sum() == kappa and flat[keep].min() >= flat[~keep].max()
    # ... and magnitude pruning's, through criteria.prune_by
    kept = []
    for patched in (False, True):
        for p, array in zip(params, arrays):
            p.value, p.mask = array, None
        with monkeypatch.context() as patch:
            if patched:
                patch.setattr(sm, "normalised_scores", one_ulp_larger_normaliser)
            gated = criteria.prune_by("magnitude", model, None, None, 0.95)
        kept.append([sm.to_host(p.mask) for p in gated])
    assert all((a == b).all() for a, b in zip(*kept))
    assert all((a == b).all() for a, b in zip(kept[0], masks))


# ======================================================================================
# Iterative SNIP in float64
# ======================================================================================

ITERATIVE_ROUNDS = 10  # (the property does not depend on the rounds; 100 take a while here)


def scoring_batch_of(folder):
    """The scoring batch that snip_min.py --seed 0 draws from the tiny MNIST in folder."""
    dataset = data.load_dataset("mnist", folder, download=False, notice=lambda line: None)
    _, split_rng, score_rng, _ = sm.seed_streams(0)
    train, _, _ = sm.split_dataset(dataset, 0.1, split_rng)
    return train.batch(sm.xp.asarray(score_rng.choice(len(train), size=100, replace=False)))


def iterative_snip_mask(images, labels):
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", sm.seed_streams(0)[0])
    gated = criteria.prune_by(
        "iterative-snip", model, images, labels, 0.99, rounds=ITERATIVE_ROUNDS
    )
    gated_dtypes = {(p.value.dtype, p.mask.dtype) for p in gated}
    assert gated_dtypes == {(numpy.dtype(numpy.float32),) * 2}  # trained in float32
    return numpy.concatenate([sm.to_host(p.mask).ravel() for p in gated])


def test_iterative_snip_masks_do_not_depend_on_the_order_of_the_scoring_batch(tiny_mnist):
    # The batch reversed has the same loss gradient in exact arithmetic, summed in another
    # order: only the rounding differs, as it does between thread counts and devices. In
    # float32 the two masks of LeNet-5-Caffe at 99% share 65% of their connections here.
    images, labels = scoring_batch_of(tiny_mnist)
    forward = iterative_snip_mask(images, labels)
    reverse = sm.xp.arange(len(labels))[::-1].copy()
    backward = iterative_snip_mask(images[reverse], labels[reverse])
    assert forward.sum() == sm.kappa_for(0.99, forward.size)
    assert (forward == backward).all(), f"{int((forward != backward).sum())} entries differ"


def test_iterative_snip_scores_every_round_in_float64(monkeypatch, tiny_mnist):
    images, labels = scoring_batch_of(tiny_mnist)
    seen, real = [], sm.connection_sensitivity

    def connection_sensitivity(model, x, y, params):
        seen.append({x.dtype, *(p.value.dtype for p in sm.parameters_of(model))})
        return real(model, x, y, params)

    monkeypatch.setattr(sm, "connection_sensitivity", connection_sensitivity)
    iterative_snip_mask(images, labels)
    assert seen == [{numpy.dtype(numpy.float64)}] * ITERATIVE_ROUNDS


CHILD = """
import sys
import numpy
import snip_min as sm
import test_gpu_readiness as here
sm.use_device(sys.argv[2])
numpy.save(sys.argv[4], here.iterative_snip_mask(*here.scoring_batch_of(sys.argv[3])))
"""


def test_iterative_snip_gives_the_same_mask_on_one_and_two_blas_threads(
    tiny_mnist, tmp_path, device
):
    masks = []
    for threads in (1, 2):
        out = tmp_path / f"mask-{threads}.npy"
        variables = {name: str(threads) for name in BLAS_THREAD_VARIABLES}
        result = helpers.run_python(
            ["-c", CHILD, "--device", device, tiny_mnist, out],
            env={**variables, "PYTHONPATH": os.pathsep.join([helpers.ROOT, TESTS])},
            cwd=helpers.ROOT,
        )
        assert result.returncode == 0, result.stderr
        masks.append(numpy.load(out))
    assert (masks[0] == masks[1]).all(), f"{int((masks[0] != masks[1]).sum())} entries differ"


# ======================================================================================
# Recurrent steps: a fixed number of device operations per time step
# ======================================================================================


def launches_of_a_training_step(stand_in, layer, pixels):
    rng = numpy.random.default_rng(10)
    model = models.name_parameters(sm.Sequential(AsSequence(pixels=True), layer, sm.Linear(8, 10)))
    sm.skip_input_gradient(model)
    sm.initialise(model, "vs-h", rng)
    images, labels = random_batch(rng, 3, (pixels, 1, 1))
    sm.snip(model, images, labels, 0.5)
    optimiser = sm.SGD(sm.parameters_of(model))
    sm.train_step(model, optimiser, images, labels, 0.01)
    with stand_in.counting(launches=True) as record:
        sm.train_step(model, optimiser, images, labels, 0.01)
    copies = [event for event in record.events if event.what == "copy: input overlaps out="]
    return record.launches, copies


@pytest.mark.parametrize(
    "kind, per_step", [("lstm", 10 + 12), ("gru", 12 + 10)], ids=["lstm", "gru"]
)
def test_a_recurrent_training_step_takes_a_fixed_number_of_operations_per_time_step(
    stand_in, kind, per_step
):
    # forward + backward operations per time step (docs/recurrent.md): what grows with T
    # between 16 and 20 steps; everything else is done once per sequence
    layer = {"lstm": LSTM, "gru": GRU}[kind]
    short, short_copies = launches_of_a_training_step(stand_in, layer(1, 8), 16)
    long, long_copies = launches_of_a_training_step(stand_in, layer(1, 8), 20)
    assert (long - short) / 4 == per_step
    assert short_copies == long_copies == []  # no input overlapping an output


# ======================================================================================
# The pinned staging memory of the copies to the device
# ======================================================================================


def test_the_pinned_staging_memory_is_given_back_once_the_splits_are_on_the_device(
    stand_in, tiny_mnist
):
    dataset = data.load_dataset("mnist", tiny_mnist, download=False, notice=lambda line: None)
    sm.release_pinned_memory()
    sm.DeviceSplit(dataset.test_images, dataset.test_labels, dataset.mean, dataset.std)
    held = stand_in.pinned_host_bytes()
    assert held >= dataset.test_images.nbytes  # CuPy keeps what a copy was staged in
    sm.split_dataset(dataset, 0.1, numpy.random.default_rng(11))
    assert stand_in.pinned_host_bytes() == 0


# ======================================================================================
# scripts/device_counts.py, which measured the tables of docs/gpu.md
# ======================================================================================

COUNTS = os.path.join(helpers.ROOT, "scripts", "device_counts.py")


def counted_rows(*arguments):
    result = helpers.run_python([COUNTS, *arguments], cwd=helpers.ROOT)
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        words = line.split()
        rows.append(dict(zip(words[::2], words[1::2])))
    return rows


def test_device_counts_counts_launches_and_memory_on_the_stand_in():
    (gru,) = counted_rows("launches", "--models", "gru-s", "--batch-size", "4")
    assert gru["model"] == "gru-s" and gru["T"] == "28" and gru["overlap_copies"] == "0"
    assert int(gru["step_launches"]) > int(gru["recurrent_forward"]) + int(
        gru["recurrent_backward"]
    )
    (lenet,) = counted_rows("memory", "--models", "lenet300", "--batch-size", "8")
    assert lenet["evaluation_batch"] == "8"
    assert 0 < float(lenet["evaluation_GiB"]) <= float(lenet["training_step_GiB"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["memory", "--models", "nope"], "unknown model 'nope'"),
        (["launches"], "required: --models"),
        (["everything", "--models", "lenet300"], "invalid choice"),
    ],
)
def test_device_counts_refuses_bad_input_in_one_line(arguments, message):
    result = helpers.run_python([COUNTS, *arguments], cwd=helpers.ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
