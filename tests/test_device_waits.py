"""The GPU path never makes the host wait for the device in a training step, proven on the
strict CuPy stand-in (tests/strict_cupy), which counts every such wait ("synchronisation")
and every copy from the host to the device, with the line that made it. It mirrors CuPy 14
unless told 13 (stand_in.mirroring(13)): CuPy 13.x waits at the end of every Thrust sort,
and so in the global top-k of SNIP and of every round of the iterative criteria; a
training step waits on neither.

Under `pytest --device strict` these tests run on the suite's backend; under plain `pytest`
they switch to the stand-in for their own duration (and back); on a real GPU they are
skipped, since only the stand-in can count."""

import io
import sys

import numpy
import pytest

import data
import models
import snip_min as sm
from conftest import write_tiny_mnist
from extensions import cli, criteria


@pytest.fixture(scope="module")
def mnist_6700(tmp_path_factory):
    """A generated MNIST of 6,700 training images: 61 steps of 100 an epoch after the
    validation split, so that per-epoch bookkeeping weighs as little as in real runs."""
    return write_tiny_mnist(tmp_path_factory.mktemp("mnist6700"), n_train=6_700, n_test=200)


def a_batch(model_name, rng, n):
    dataset = models.MODELS[model_name].dataset
    shape, classes = models.INPUT_SHAPE[dataset], models.NUM_CLASSES[dataset]
    images = sm.xp.asarray(rng.standard_normal((n, *shape)), dtype=sm.xp.float32)
    return images, sm.xp.asarray(rng.integers(0, classes, n))


@pytest.mark.parametrize(
    "model_name,sparsity,n",
    [
        ("lenet5", 0.99, 100),
        ("lenet300", 0.98, 100),
        ("squeezenet-bypass", 0.95, 4),
        ("lstm-s", 0.95, 8),
        ("gru-s", 0.95, 8),
    ],
)
def test_a_training_step_never_waits_for_the_device(stand_in, model_name, sparsity, n):
    rng = numpy.random.default_rng(0)
    model = models.build(model_name)
    sm.initialise(model, "vs-h", rng)
    images, labels = a_batch(model_name, rng, n)
    sm.snip(model, images, labels, sparsity)
    optimiser = sm.SGD(sm.parameters_of(model))
    sm.train_step(model, optimiser, images, labels, 0.1)  # the first step allocates buffers
    for series in (14, 13):
        with stand_in.mirroring(series), stand_in.counting() as record:
            for _ in range(3):
                sm.train_step(model, optimiser, images, labels, 0.1)
        assert record.syncs == 0 and record.transfers == 0, (series, record.summary())


def fit_events(monkeypatch, stand_in):
    """Count what the training loop makes the host wait for: every event inside fit, and
    every event inside each train_step (which must be none)."""
    counted = {"fit": None, "steps": []}
    real_fit, real_step = sm.fit, sm.train_step

    def fit(*args, **kwargs):
        with stand_in.counting() as record:
            state = real_fit(*args, **kwargs)
        counted["fit"] = record
        return state

    def train_step(*args, **kwargs):
        with stand_in.counting() as record:
            result = real_step(*args, **kwargs)
        counted["steps"].append(record)
        return result

    monkeypatch.setattr(sm, "fit", fit)
    monkeypatch.setattr(sm, "train_step", train_step)
    return counted


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that the progress bar draws."""

    def isatty(self):
        return True


@pytest.mark.parametrize("model_name", ["lenet5", "lenet300"])
@pytest.mark.parametrize("terminal", [False, True])
def test_the_main_commands_training_loop_waits_at_most_once_in_ten_steps(
    stand_in, mnist_6700, monkeypatch, tmp_path, model_name, terminal
):
    if terminal:
        monkeypatch.setattr(sys, "stderr", Terminal())
    counted = fit_events(monkeypatch, stand_in)
    iterations = 122  # two epochs of 61 steps
    args = cli.parse_arguments(
        [
            "--model",
            model_name,
            "--sparsity",
            "0.99",
            "--data-dir",
            mnist_6700,
            "--iterations",
            str(iterations),
            "--out",
            str(tmp_path),
            "--device",
            "gpu",
        ]
    )
    cli.run(args, log=lambda line: None)
    steps, loop = counted["steps"], counted["fit"]
    assert len(steps) == iterations
    assert all(step.syncs == 0 and step.transfers == 0 for step in steps), next(
        step.summary() for step in steps if step.syncs or step.transfers
    )
    # the loop's own waits: one read every READ_EVERY steps, two per epoch (its sums, and
    # validation)
    assert loop.syncs == iterations // sm.READ_EVERY + 2 * 2, loop.summary()
    assert loop.syncs / iterations <= 0.1, loop.summary()
    assert loop.transfers == 2, loop.summary()  # the shuffle, once per epoch (MNIST: no moves)
    if terminal:
        assert "epoch 2/2 [" in sys.stderr.getvalue()  # the bar was drawn


def test_the_bar_redraws_at_most_ten_times_a_second_but_always_for_a_new_epoch(monkeypatch):
    clock = iter([10.0, 10.05, 10.06, 10.09, 10.2])  # seconds, one per show
    monkeypatch.setattr(sm.time, "perf_counter", lambda: next(clock))
    stream = Terminal()
    bar = sm.Progress(stream)
    for label, text in [
        ("epoch 1/2", "a"),
        ("epoch 1/2", "b"),
        ("epoch 2/2", "c"),
        ("epoch 2/2", "d"),
        ("epoch 2/2", "e"),
    ]:
        bar.show(label, 20, 61, text)
    drawn = [text for text in "abcde" if f" {text}\x1b[K" in stream.getvalue()]
    assert drawn == ["a", "c", "e"]  # b and d come under 0.1 s after a draw; c starts an epoch
    assert sm.Progress(io.StringIO()).live is False  # not a terminal: silent


def test_test_checkpoints_add_one_wait_each_and_none_in_a_step(
    stand_in, mnist_6700, monkeypatch, tmp_path
):
    counted = fit_events(monkeypatch, stand_in)
    iterations, every = 122, 20  # checkpoints at 20, 40, ..., 120
    args = cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--data-dir",
            mnist_6700,
            "--iterations",
            str(iterations),
            "--test-every",
            str(every),
            "--out",
            str(tmp_path),
            "--device",
            "gpu",
        ]
    )
    results = cli.run(args, log=lambda line: None)
    assert len(results["test_checkpoints"]) == iterations // every == 6
    steps, loop = counted["steps"], counted["fit"]
    assert all(step.syncs == 0 and step.transfers == 0 for step in steps)
    # as without them (one read every READ_EVERY steps, two per epoch), and one per evaluation
    assert loop.syncs == iterations // sm.READ_EVERY + 2 * 2 + iterations // every, loop.summary()
    assert loop.transfers == 2, loop.summary()


def test_the_progress_bar_adds_no_wait(stand_in, mnist_6700, monkeypatch, tmp_path):
    totals = []
    for stream in (io.StringIO(), Terminal()):
        monkeypatch.setattr(sys, "stderr", stream)
        counted = fit_events(monkeypatch, stand_in)
        args = cli.parse_arguments(
            [
                "--model",
                "lenet300",
                "--sparsity",
                "0.9",
                "--data-dir",
                mnist_6700,
                "--iterations",
                "61",
                "--device",
                "gpu",
            ]
        )
        cli.run(args, log=lambda line: None)
        totals.append(counted["fit"].syncs)
    assert totals[0] == totals[1]


@pytest.mark.parametrize("model_name,n", [("lenet300", 20), ("vgg-d", 2)])
def test_snip_waits_once_whatever_the_size_of_the_network(stand_in, model_name, n):
    # on CuPy 14: once, to count the non-zero scores for the report; without a report, never
    rng = numpy.random.default_rng(1)
    model = models.build(model_name)
    sm.initialise(model, "vs-h", rng)
    images, labels = a_batch(model_name, rng, n)
    with stand_in.mirroring(14), stand_in.counting() as quiet:
        sm.snip(model, images, labels, 0.95)
    sm.initialise(model, "vs-h", numpy.random.default_rng(1))
    with stand_in.mirroring(14), stand_in.counting() as reported:
        sm.snip(model, images, labels, 0.95, report={})
    with stand_in.counting() as table:
        sm.pruning_table(model)
    assert quiet.syncs == 0 and reported.syncs == 1 and table.syncs == 1, (
        quiet.summary(),
        reported.summary(),
    )
    assert quiet.transfers == reported.transfers == table.transfers == 0


@pytest.mark.parametrize("model_name,n", [("lenet300", 20), ("vgg-d", 2)])
def test_on_cupy_13_snip_waits_once_more_in_its_top_k(stand_in, model_name, n):
    # CuPy 13's partition sorts the whole score vector (m - kappa is far above 512) with a
    # Thrust call that ends in a stream synchronisation; 14 dropped it (par_nosync)
    rng = numpy.random.default_rng(1)
    model = models.build(model_name)
    sm.initialise(model, "vs-h", rng)
    images, labels = a_batch(model_name, rng, n)
    with stand_in.mirroring(13), stand_in.counting() as quiet:
        sm.snip(model, images, labels, 0.95)
    assert quiet.syncs == 1 and quiet.transfers == 0, quiet.summary()
    assert [event.what for event in quiet.events] == ["partition(): Thrust (CuPy 13.x)"]
    assert quiet.events[0].where.startswith("snip_min.py:")


@pytest.mark.parametrize("method", criteria.ITERATIVE)
@pytest.mark.parametrize("series, waits_per_round", [(14, 0), (13, 1)])
def test_the_iterative_criteria_wait_once_a_round_on_cupy_13_only(
    stand_in, method, series, waits_per_round
):
    rng = numpy.random.default_rng(2)
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    images, labels = a_batch("lenet300", rng, 20)
    with stand_in.mirroring(series), stand_in.counting() as record:
        criteria.prune_by(method, model, images, labels, 0.98, rounds=4)
    assert record.syncs == 4 * waits_per_round and record.transfers == 0, record.summary()


def test_an_evaluation_waits_once_however_many_batches(stand_in):
    rng = numpy.random.default_rng(2)
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", rng)
    images = rng.integers(0, 256, (2_500, 28, 28, 1)).astype(numpy.uint8)
    split = sm.DeviceSplit(images, rng.integers(0, 10, 2_500), [0.1], [0.3])
    with stand_in.counting() as record:
        sm.evaluate(model, split, batch_size=1_000)  # three batches
    assert record.syncs == 1 and record.transfers == 0, record.summary()


def test_augmented_batches_never_wait_for_the_device(stand_in):
    # the epoch's moves are copied to the device once; each batch is then gathered there
    rng = numpy.random.default_rng(3)
    images = rng.integers(0, 256, (50, 12, 12, 3)).astype(numpy.uint8)
    split = sm.DeviceSplit(
        images,
        rng.integers(0, 10, 50),
        [0.5] * 3,
        [0.2] * 3,
        augment=data.Augmentation(flip=True, max_shift=2),
    )
    moves = sm.xp.asarray(split.draw_moves(rng))
    order = sm.xp.asarray(rng.permutation(50))
    with stand_in.counting() as record:
        for start in range(0, 50, 10):
            batch, _ = split.batch(order[start : start + 10], moves[:, start : start + 10])
    assert record.syncs == 0 and record.transfers == 0, record.summary()
    expected = data.flip_and_translate(
        sm.to_host(split.batch(order[40:])[0]), *sm.to_host(moves[:, 40:])
    )
    numpy.testing.assert_array_equal(sm.to_host(batch), expected)
