"""Dead units and compaction (compaction.py): which units are alive, on hand-built
masks with known answers; the compact network computes and trains exactly like the masked
one; expanding and compacting again round-trip; what cannot be compacted is refused."""

import json

import numpy
import pytest

import models
import snip_min as sm
from extensions import checkpoints, cli, compaction, recurrent, zoo_layers
from helpers import check_layer_gradients, initialised
from test_cli import assert_refused, run_cli
from test_reliability import checkpoint_arrays, quiet, stop_at

MNIST = models.INPUT_SHAPE["mnist"]


# --- building networks with chosen masks ------------------------------------------------------


def mask_keeping(shape, *entries):
    """A 0/1 host array of `shape` that keeps only the listed index tuples."""
    mask = numpy.zeros(shape)
    for entry in entries:
        mask[entry] = 1
    return mask


def gated_network(masks, *layers, seed=0, dtype=None):
    """Sequential(*layers), named, with random values (biases too) and the given masks:
    {param name: 0/1 host array}; a weight or bias not named keeps everything."""
    model = initialised(
        models.name_parameters(sm.Sequential(*layers)), numpy.random.default_rng(seed), dtype
    )
    params = sm.prunable_parameters(model)
    sm.apply_masks(
        params,
        [
            sm.xp.asarray(masks.get(p.name, numpy.ones(p.shape)), dtype=p.value.dtype)
            for p in params
        ],
    )
    return model


def linear_chain(dtype=None):
    """4 inputs -> fc1 (5) -> fc2 (4) -> fc3 (3 scores), with ReLUs. Kept:
        fc1: in0 -> u0, in1 -> u2, in2 -> u4, and u3's bias (no other fc1 bias)
        fc2: u0 -> v0, u1 -> v0, u1 -> v3, u3 -> v1, u4 -> v2 (no bias)
        fc3: v0 -> s0, v1 -> s1, v3 -> s2 (no bias)
    so u1 has no input, u2 no output, u3 only its bias; v3's only input is u1 (dead), v2 has
    no output, so u4 feeds only a dead unit and in2 only u4; nothing reads in3."""
    masks = {
        "fc1.weight": mask_keeping((4, 5), (0, 0), (1, 2), (2, 4)),
        "fc1.bias": mask_keeping((5,), 3),
        "fc2.weight": mask_keeping((5, 4), (0, 0), (1, 0), (1, 3), (3, 1), (4, 2)),
        "fc2.bias": numpy.zeros(4),
        "fc3.weight": mask_keeping((4, 3), (0, 0), (1, 1), (3, 2)),
        "fc3.bias": numpy.zeros(3),
    }
    return gated_network(
        masks, sm.Linear(4, 5), sm.ReLU(), sm.Linear(5, 4), sm.ReLU(), sm.Linear(4, 3), dtype=dtype
    )


def conv_chain(dtype=None):
    """(6, 6, 1) -> conv1 3x3 valid (4 channels) -> 2x2 max-pool -> flatten (2*2*4 = 16) -> fc1 (2).
    Channel 0: ordinary. Channel 1: fc1 reads none of its 4 flattened positions. Channel 2:
    no kept weight and no bias. Channel 3: only its bias. fc1 reads 3 positions of channel 0
    (feature (h*2 + w)*4 + c), one of channel 2 and one of channel 3."""
    conv = numpy.ones((3, 3, 1, 4))
    conv[..., 2] = 0
    conv[..., 3] = 0
    fc = mask_keeping((16, 2), (0, 0), (4, 1), (8, 0), (2, 1), (7, 0))
    masks = {"conv1.weight": conv, "conv1.bias": mask_keeping((4,), 3), "fc1.weight": fc}
    return gated_network(
        masks, sm.Conv2D(1, 4, 3), sm.MaxPool2D(2), sm.Flatten(), sm.Linear(16, 2), dtype=dtype
    )


def padded_conv_chain(dtype=None):
    """(3, 3, 1) -> conv1 3x3 'same' (2 channels, no bias) -> flatten (18) -> fc1 (2).
    Channel 0 keeps only the top-left tap, so its top row and left column see only padding
    (no signal), and fc1 reads only its top row: it has signal and is read, but never at the
    same position. Channel 1 keeps the centre tap and fc1 reads all of it."""
    conv = mask_keeping((3, 3, 1, 2), (0, 0, 0, 0), (1, 1, 0, 1))
    fc = numpy.zeros((18, 2))
    fc[[0, 2, 4], :] = 1  # channel 0 at (0, 0), (0, 1), (0, 2)
    fc[1::2, :] = 1  # every position of channel 1
    return gated_network(
        {"conv1.weight": conv, "fc1.weight": fc},
        sm.Conv2D(1, 2, 3, padding="same", bias=False),
        sm.Flatten(),
        sm.Linear(18, 2),
        dtype=dtype,
    )


def snipped(name, sparsity, dtype=None, seed=0):
    """models.build(name) with SNIP's masks, scored on one random batch."""
    rng = numpy.random.default_rng(seed)
    model = models.build(name)
    sm.initialise(model, "vs-h", rng, dtype=dtype)
    images = sm.xp.asarray(
        rng.standard_normal((100,) + MNIST), dtype=model.children[-1].weight.value.dtype
    )
    sm.snip(model, images, sm.xp.asarray(rng.integers(0, 10, 100)), sparsity)
    return model


def copy_of(model, name):
    """An independent copy of models.build(name) `model`: its values and masks in new arrays."""
    twin = models.build(name)
    for p, q in zip(sm.parameters_of(model), sm.parameters_of(twin)):
        q.value = p.value.copy()
        q.mask = None if p.mask is None else p.mask.copy()
    return twin


def host(array):
    return sm.to_host(array).astype(numpy.float64)


# --- alive units: hand-built masks with known answers ----------------------------------------


def test_alive_units_of_a_linear_chain_follow_signal_forward_and_read_backward():
    alive = compaction.alive_units(linear_chain(), (4,))
    # u0 alive; u1 no input; u2 no output; u3 alive on its bias alone; u4 feeds only v2,
    # which has no output
    assert alive["fc1"].tolist() == [True, False, False, True, False]
    # v0, v1 alive; v2 no output; v3's only input comes from u1, which has no signal
    assert alive["fc2"].tolist() == [True, True, False, False]
    # s2's only input is v3: a constant 0 score (kept by compaction all the same)
    assert alive["fc3"].tolist() == [True, True, False]
    # in1 feeds only u2 (no output), in2 only u4 (dead), in3 nothing
    assert alive["input"].tolist() == [True, False, False, False]


def test_local_alive_units_judge_each_layer_on_its_own():
    alive = compaction.alive_units(linear_chain(), (4,), transitive=False)
    assert alive["fc1"].tolist() == [True, False, False, True, True]  # u4 has an output, to v2
    assert alive["fc2"].tolist() == [True, True, False, True]  # v3 has an input, from u1
    assert alive["fc3"].tolist() == [True, True, True]  # s2 has an input, from v3
    assert alive["input"].tolist() == [True, True, True, False]  # a kept weight out of each


def test_a_conv_channel_is_dead_without_a_read_position_or_without_input():
    alive = compaction.alive_units(conv_chain(), (6, 6, 1))
    # channel 1: all of its flattened positions unread; channel 2: no weight, no bias;
    # channel 3: its bias is its signal, and fc1 reads one of its positions
    assert alive["conv1"].tolist() == [True, False, False, True]
    assert alive["fc1"].tolist() == [True, True]
    # channel 0's pooled position (1, 1) is unread, so are conv positions (2..3, 2..3), and the
    # input pixels that only they see: rows and columns 4..5
    unread = numpy.zeros((6, 6, 1), dtype=bool)
    unread[4:, 4:] = True
    assert numpy.array_equal(alive["input"], ~unread)


def test_a_conv_channel_must_have_signal_and_be_read_at_the_same_position():
    alive = compaction.alive_units(padded_conv_chain(), (3, 3, 1))
    assert alive["conv1"].tolist() == [False, True]
    assert compaction.alive_units(padded_conv_chain(), (3, 3, 1), transitive=False)[
        "conv1"
    ].tolist() == [True, True]


def concatenation(read_branch_b):
    """(2, 2, 1) -> conv1 1x1 (2 channels: c0 from the input, c1 nothing, no biases) ->
    Concat(conv2 1x1 (2): a0 <- c0, a1 <- c1 only; conv3 1x1 (1): b0 <- c0) -> global mean
    -> fc1 (2), which reads a0, a1 and, if read_branch_b, b0."""
    masks = {
        "conv1.weight": mask_keeping((1, 1, 1, 2), (0, 0, 0, 0)),
        "conv1.bias": numpy.zeros(2),
        "conv2.weight": mask_keeping((1, 1, 2, 2), (0, 0, 0, 0), (0, 0, 1, 1)),
        "conv2.bias": numpy.zeros(2),
        "conv3.weight": numpy.ones((1, 1, 2, 1)),
        "conv3.bias": numpy.zeros(1),
        "fc1.weight": mask_keeping((3, 2), (0, 0), (1, 1), *([(2, 0)] if read_branch_b else [])),
    }
    return gated_network(
        masks,
        sm.Conv2D(1, 2, 1),
        zoo_layers.Concat(sm.Conv2D(2, 2, 1), sm.Conv2D(2, 1, 1)),
        zoo_layers.GlobalAvgPool(),
        sm.Linear(3, 2),
    )


def test_alive_units_through_a_concatenation():
    alive = compaction.alive_units(concatenation(read_branch_b=True), (2, 2, 1))
    assert alive["conv1"].tolist() == [True, False]
    assert alive["conv2"].tolist() == [True, False]  # a1 is fed by c1 alone: no signal
    assert alive["conv3"].tolist() == [True]
    # fc1 does not read branch b: b0 is dead, while c0 stays alive through a0
    alive = compaction.alive_units(concatenation(read_branch_b=False), (2, 2, 1))
    assert alive["conv3"].tolist() == [False]
    assert alive["conv1"].tolist() == [True, False]


def test_alive_units_through_a_residual_block():
    # conv1 1x1 (c0 from the input, c1 nothing) -> Residual(ReLU, conv2 1x1: d0 <- c1 only,
    # d1 <- c0) + identity -> global mean -> fc1, which reads channel 0 only
    masks = {
        "conv1.weight": mask_keeping((1, 1, 1, 2), (0, 0, 0, 0)),
        "conv1.bias": numpy.zeros(2),
        "conv2.weight": mask_keeping((1, 1, 2, 2), (0, 0, 1, 0), (0, 0, 0, 1)),
        "conv2.bias": numpy.zeros(2),
        "fc1.weight": mask_keeping((2, 2), (0, 0), (0, 1)),
        "fc1.bias": numpy.zeros(2),
    }
    model = gated_network(
        masks,
        sm.Conv2D(1, 2, 1),
        zoo_layers.Residual(sm.Sequential(sm.ReLU(), sm.Conv2D(2, 2, 1))),
        zoo_layers.GlobalAvgPool(),
        sm.Linear(2, 2),
    )
    alive = compaction.alive_units(model, (2, 2, 1))
    assert alive["conv1"].tolist() == [True, False]  # c0 is read through the shortcut
    assert alive["conv2"].tolist() == [False, False]  # d0: no signal; d1: not read
    assert alive["fc1"].tolist() == [True, True]  # its only input has signal: the shortcut's


def test_batch_norm_makes_an_input_less_channel_a_learned_constant():
    # conv1 1x1: c0 from the input, c1 nothing (no biases) -> BN -> ReLU -> conv2 1x1: e0 <- c0,
    # e1 <- c1 only -> global mean -> fc1. c1 itself has no signal and is reported dead, but
    # BN's shift puts a learned constant in its place, so e1, fed by that constant, is alive.
    masks = {
        "conv1.weight": mask_keeping((1, 1, 1, 2), (0, 0, 0, 0)),
        "conv1.bias": numpy.zeros(2),
        "conv2.weight": mask_keeping((1, 1, 2, 2), (0, 0, 0, 0), (0, 0, 1, 1)),
        "conv2.bias": numpy.zeros(2),
    }
    model = gated_network(
        masks,
        sm.Conv2D(1, 2, 1),
        zoo_layers.BatchNorm(2),
        sm.ReLU(),
        sm.Conv2D(2, 2, 1),
        zoo_layers.GlobalAvgPool(),
        sm.Linear(2, 2),
    )
    alive = compaction.alive_units(model, (2, 2, 1))
    assert alive["conv1"].tolist() == [True, False]
    assert alive["conv2"].tolist() == [True, True]


def test_the_local_counts_of_the_lenets_match_a_count_of_their_masks():
    # the one-step answer, counted directly from the weight masks
    model = snipped("lenet300", 0.98)
    w = [host(model.children[k].weight.mask) > 0 for k in (1, 3, 5)]
    b = [host(model.children[k].bias.mask) > 0 for k in (1, 3, 5)]
    local = compaction.alive_units(model, MNIST, transitive=False)
    assert (local["input"].reshape(-1) == w[0].any(axis=1)).all()
    for k, name in enumerate(("fc1", "fc2")):
        has_input = w[k].any(axis=0) | b[k]
        assert (local[name] == (has_input & w[k + 1].any(axis=1))).all()
    transitive = compaction.alive_units(model, MNIST)
    assert all((transitive[name] <= local[name]).all() for name in local)  # transitive is stricter
    assert transitive["fc1"].sum() < 300 and transitive["input"].sum() < 784


def test_an_unpruned_network_is_alive_everywhere():
    for name in ("lenet5", "resnet18", "squeezenet-bypass", "densenet121"):
        model = models.build(name)
        shape = models.INPUT_SHAPE[models.MODELS[name].dataset]
        alive = compaction.alive_units(model, shape)  # masks None: every connection kept
        assert all(flags.all() for flags in alive.values()), name


def test_a_layer_without_a_rule_is_refused_by_name():
    class Squash(sm.Layer):
        pass

    with pytest.raises(sm.UsageError, match="Squash layer: it has no entry in LIVENESS_RULES"):
        compaction.alive_units(sm.Sequential(sm.Flatten(), Squash()), MNIST)


def test_the_summary_counts_alive_units_per_layer():
    summary = compaction.alive_summary(linear_chain(), (4,))
    assert summary == {"input": (1, 4), "fc1": (2, 5), "fc2": (2, 4), "fc3": (2, 3)}
    assert compaction.format_alive_summary(summary).splitlines() == [
        "input entries read: 1 of 4",
        "alive units (an input and an output): fc1 2/5, fc2 2/4, fc3 2/3",
    ]


# --- Gather ----------------------------------------------------------------------------------


def test_gather_takes_the_listed_entries_and_its_backward_is_the_gradient():
    rng = numpy.random.default_rng(0)
    x = sm.xp.asarray(rng.standard_normal((3, 7)))
    gather = compaction.Gather([1, 4, 5])
    assert numpy.array_equal(host(gather.forward(x, True)), host(x)[:, [1, 4, 5]])
    check_layer_gradients(compaction.Gather([0, 2, 3, 6]), x, rng)


# --- compaction: the same function and the same training --------------------------------------

CASES = {
    "linear chain": (lambda dtype: linear_chain(dtype), (4,)),
    "conv chain": (lambda dtype: conv_chain(dtype), (6, 6, 1)),
    "padded conv chain": (lambda dtype: padded_conv_chain(dtype), (3, 3, 1)),
    "lenet300 at 98%": (lambda dtype: snipped("lenet300", 0.98, dtype), MNIST),
    "lenet5 at 99%": (lambda dtype: snipped("lenet5", 0.99, dtype), MNIST),
}
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def relative_difference(a, b):
    a, b = host(a), host(b)
    return numpy.abs(a - b).max() / max(numpy.abs(a).max(), numpy.abs(b).max(), 1e-30)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_compact_network_computes_the_same_logits(case, dtype):
    build, shape = CASES[case]
    model = build(getattr(sm.xp, dtype))
    compacted = compaction.compact(model, shape)
    full, small = sm.parameters_of(model), sm.parameters_of(compacted.network)
    assert sum(p.size for p in small) < sum(p.size for p in full)  # something was removed
    assert {p.name for p in small} == {p.name for p in full}  # under the same names
    x = sm.xp.asarray(
        numpy.random.default_rng(1).standard_normal((8,) + shape), dtype=getattr(sm.xp, dtype)
    )
    logits = model.forward(x, train=False)
    assert relative_difference(compacted.network.forward(x, train=False), logits) < TOLERANCE[dtype]


def test_the_compact_lenet300_reads_only_the_pixels_it_needs():
    model = snipped("lenet300", 0.98)
    alive = compaction.alive_units(model, MNIST)
    network = compaction.compact(model, MNIST).network
    flatten, gather, fc1 = network.children[:3]
    assert type(gather) is compaction.Gather
    assert numpy.array_equal(gather.host_indices, numpy.flatnonzero(alive["input"]))
    assert fc1.weight.shape == (alive["input"].sum(), alive["fc1"].sum())
    assert network.children[4].weight.shape == (alive["fc1"].sum(), alive["fc2"].sum())
    assert not fc1.needs_input_gradient  # as in the full model
    weights = [p for p in sm.parameters_of(network) if p.kind == "weight"]
    assert compaction.multiply_adds(network, MNIST) == sum(p.size for p in weights)  # all Linear


def test_multiply_adds_count_the_dense_products_of_one_example():
    assert (
        compaction.multiply_adds(models.build("lenet300"), MNIST)
        == 784 * 300 + 300 * 100 + 100 * 10
    )
    # conv1 24*24 positions x 5*5*1*20, conv2 8*8 x 5*5*20*50, fc1 800*500, fc2 500*10
    assert (
        compaction.multiply_adds(models.build("lenet5"), MNIST)
        == 288_000 + 1_600_000 + 400_000 + 5_000
    )


def surviving(compacted, name):
    """bool host array shaped like the full Param: True where an entry survives compaction."""
    full, _, index = compacted.parts[name]
    flags = sm.xp.zeros(full.shape, dtype=bool)
    flags[index] = True
    return sm.to_host(flags)


STEP_TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,sparsity", [("lenet300", 0.98), ("lenet5", 0.99)])
def test_the_compact_network_trains_like_the_masked_one(name, sparsity, dtype):
    masked = snipped(name, sparsity, getattr(sm.xp, dtype))
    compacted = compaction.compact(copy_of(masked, name), MNIST)
    rng = numpy.random.default_rng(2)
    batches = [
        (
            sm.xp.asarray(rng.standard_normal((32,) + MNIST), dtype=getattr(sm.xp, dtype)),
            sm.xp.asarray(rng.integers(0, 10, 32)),
        )
        for _ in range(50)
    ]
    optimisers = [
        sm.SGD(sm.parameters_of(network), momentum=0.9, weight_decay=5e-3)
        for network in (masked, compacted.network)
    ]
    for images, labels in batches:
        for network, optimiser in zip((masked, compacted.network), optimisers):
            sm.train_step(network, optimiser, images, labels, lr=0.05)
    masked_velocity = {p.name: v for p, v in zip(optimisers[0].params, optimisers[0].velocity)}
    velocity = compacted.expanded(
        {p.name: v for p, v in zip(optimisers[1].params, optimisers[1].velocity)}
    )
    compacted.expand()
    trained = {p.name: p for p in sm.parameters_of(masked)}
    for param_name, (full, _, _) in compacted.parts.items():
        keep = surviving(compacted, param_name)
        for expanded, reference in (
            (full.value, trained[param_name].value),
            (velocity[param_name], masked_velocity[param_name]),
        ):
            expanded, reference = host(expanded), host(reference)
            assert (expanded[~keep] == 0).all(), param_name  # exactly 0 where removed
            scale = max(numpy.abs(reference).max(), 1e-30)
            assert numpy.abs(expanded - reference)[keep].max() / scale < STEP_TOLERANCE[dtype], (
                param_name
            )
        assert numpy.array_equal(host(full.mask), host(trained[param_name].mask))  # the masks stay


def test_expanding_then_compacting_again_round_trips_values_and_momentum():
    model = snipped("lenet5", 0.99)
    compacted = compaction.compact(model, MNIST)
    optimiser = sm.SGD(sm.parameters_of(compacted.network))
    rng = numpy.random.default_rng(3)
    for _ in range(3):
        sm.train_step(
            compacted.network,
            optimiser,
            sm.xp.asarray(rng.standard_normal((8,) + MNIST), dtype=sm.xp.float32),
            sm.xp.asarray(rng.integers(0, 10, 8)),
            0.1,
        )
    velocity = {p.name: v for p, v in zip(optimiser.params, optimiser.velocity)}
    saved_velocity = compacted.expanded(velocity)
    compacted.expand()
    # as a resumed run would: the full values (through the host, as a checkpoint), the same masks
    resumed = copy_of(model, "lenet5")
    for p in sm.parameters_of(resumed):
        p.value = sm.xp.asarray(sm.to_host(p.value))
    again = compaction.compact(resumed, MNIST)
    assert list(again.parts) == list(compacted.parts)
    for name, (_, small, _) in compacted.parts.items():
        small_again = again.parts[name][1]
        assert small.shape == small_again.shape
        assert numpy.array_equal(sm.to_host(small.value), sm.to_host(small_again.value))
        assert numpy.array_equal(sm.to_host(small.mask), sm.to_host(small_again.mask))
    restored = again.compacted(saved_velocity)
    assert all(
        numpy.array_equal(sm.to_host(restored[name]), sm.to_host(velocity[name]))
        for name in velocity
    )


# --- what cannot be compacted -------------------------------------------------------------------


@pytest.mark.parametrize(
    "build,reason",
    [
        (
            lambda: models.build("vgg-d"),
            r"batch norm \(bn1\): its shift makes a channel without inputs",
        ),
        (lambda: models.build("resnet18"), r"batch norm \(bn1\)"),
        (
            lambda: models.name_parameters(
                sm.Sequential(sm.Conv2D(1, 2, 1), zoo_layers.Residual(sm.Conv2D(2, 2, 1)))
            ),
            "Residual blocks: it is not a chain",
        ),
        (
            lambda: models.name_parameters(
                sm.Sequential(zoo_layers.Concat(sm.Conv2D(1, 2, 1), zoo_layers.Identity()))
            ),
            "Concat blocks: it is not a chain",
        ),
        (
            lambda: models.name_parameters(
                sm.Sequential(sm.Conv2D(1, 2, 1), zoo_layers.GlobalAvgPool(), sm.Linear(2, 2))
            ),
            "GlobalAvgPool layers: only chains of",
        ),
    ],
)
def test_compaction_refuses_what_it_cannot_do_exactly(build, reason):
    with pytest.raises(sm.UsageError, match=reason) as error:
        compaction.compact(build(), (32, 32, 3))
    assert "\n" not in str(error.value)


def test_compaction_refuses_a_disconnected_network():
    masks = {"fc1.weight": numpy.zeros((4, 3)), "fc1.bias": numpy.zeros(3)}
    model = gated_network(masks, sm.Linear(4, 3), sm.ReLU(), sm.Linear(3, 2))
    with pytest.raises(sm.UsageError, match="fc1 has no alive unit or reads no alive input"):
        compaction.compact(model, (4,))


# --- the device: bounded copies to the host, none in a step ----------------------------------


def test_alive_units_and_compact_copy_to_the_host_once_and_a_compact_step_never_waits(stand_in):
    model = snipped("lenet300", 0.98)
    with stand_in.counting() as record:
        compaction.alive_units(model, MNIST)
    assert record.syncs == 1, record.summary()
    with stand_in.counting() as record:
        compacted = compaction.compact(model, MNIST)
    assert record.syncs == 1, record.summary()
    optimiser = sm.SGD(sm.parameters_of(compacted.network))
    images = sm.xp.zeros((4,) + MNIST, dtype=sm.xp.float32)
    labels = sm.xp.zeros(4, dtype=sm.xp.int64)
    sm.train_step(compacted.network, optimiser, images, labels, 0.1)  # the first step allocates
    with stand_in.counting() as record:
        sm.train_step(compacted.network, optimiser, images, labels, 0.1)
        compacted.expand()
    assert record.syncs == 0 and record.transfers == 0, record.summary()


# --- the command line: --compact, and the alive units of every run -----------------------------


def compact_arguments(data_dir, out, device, *extra):
    return cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--data-dir",
            data_dir,
            "--batch-size",
            "25",
            "--iterations",
            "40",
            "--decay-every",
            "15",
            "--checkpoint-every",
            "7",
            "--seed",
            "4",
            "--out",
            str(out),
            "--device",
            device,
            *extra,
        ]
    )


def test_a_compact_run_trains_like_the_masked_run_and_writes_the_same_files(
    tiny_mnist, tmp_path, device
):
    lines = []
    masked = cli.run(compact_arguments(tiny_mnist, tmp_path / "masked", device), log=quiet)
    compacted = cli.run(
        compact_arguments(tiny_mnist, tmp_path / "compact", device, "--compact"), log=lines.append
    )
    assert any(line.startswith("compact: trains the network SNIP kept") for line in lines)
    assert compacted["compact"] and not masked["compact"]
    assert (
        compacted["alive_units"] == masked["alive_units"]
        and compacted["per_layer"] == masked["per_layer"]
    )
    # the same trajectory, up to float32 rounding of sums taken in another order
    numpy.testing.assert_allclose(
        [h["train_loss"] for h in compacted["history"]],
        [h["train_loss"] for h in masked["history"]],
        rtol=1e-4,
    )
    a, b = checkpoint_arrays(tmp_path / "masked"), checkpoint_arrays(tmp_path / "compact")
    assert sorted(a) == sorted(b)  # the same names and shapes: full ones
    for name in a:
        assert a[name].shape == b[name].shape, name
        if name.startswith("mask/"):
            assert numpy.array_equal(a[name], b[name]), name
    # which entries survive compaction: compact the masked run's own network again
    contents = checkpoints.read_checkpoint(str(tmp_path / "masked" / checkpoints.CHECKPOINT_FILE))
    model = models.build("lenet300")
    checkpoints.restore_checkpoint(contents, model, sm.prunable_parameters(model))
    compacted = compaction.compact(model, MNIST)
    for kind in ("param", "velocity"):
        for name in (n for n in a if n.startswith(kind + "/")):
            kept = surviving(compacted, name.split("/", 1)[1])
            assert numpy.allclose(a[name][kept], b[name][kept], rtol=1e-3, atol=1e-6), name
            assert not b[name][~kept].any(), name  # removed: exactly 0 when written
    with (
        numpy.load(tmp_path / "compact" / "masks.npz", allow_pickle=False) as m1,
        numpy.load(tmp_path / "masked" / "masks.npz", allow_pickle=False) as m2,
    ):
        assert all(numpy.array_equal(m1[k], m2[k]) for k in m2.files)


def test_a_compact_run_resumed_ends_as_an_uninterrupted_compact_run(
    tiny_mnist, tmp_path, device, backend, monkeypatch
):
    whole = cli.run(
        compact_arguments(tiny_mnist, tmp_path / "whole", device, "--compact"), log=quiet
    )
    stop_at(monkeypatch, 23)
    with pytest.raises(sm.Interrupted):
        cli.run(compact_arguments(tiny_mnist, tmp_path / "halves", device, "--compact"), log=quiet)
    monkeypatch.undo()
    resumed = cli.run(cli.parse_arguments(["--resume", str(tmp_path / "halves")]), log=quiet)
    assert resumed["compact"] and resumed["iterations"] == 40
    if backend == "gpu":  # GPU reductions need not be bit-reproducible (the stand-in's are)
        return
    a, b = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "halves")
    assert all(numpy.array_equal(a[name], b[name]) for name in a)
    assert resumed["test_loss"] == whole["test_loss"]


@pytest.mark.parametrize(
    "model,why",
    [("vgg-d", "batch norm"), ("resnet18", "batch norm"), ("lstm-s", "AsSequence layers")],
)
def test_compact_refuses_a_model_it_cannot_compact_exactly_in_one_line(
    model, why, tiny_mnist, device
):
    dataset = [] if model == "lstm-s" else ["--dataset", "cifar10"]
    result = run_cli(
        "--model",
        model,
        *dataset,
        "--compact",
        "--data-dir",
        tiny_mnist,
        "--no-download",
        device=device,
    )
    assert_refused(result, why)


def test_every_run_reports_its_alive_units_in_the_table_and_results(tiny_mnist, tmp_path, device):
    result = run_cli(
        "--model",
        "lenet5",
        "--sparsity",
        "0.99",
        "--data-dir",
        tiny_mnist,
        "--iterations",
        "2",
        "--out",
        str(tmp_path),
        device=device,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["alive_units"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert results["input_read"]["total"] == 784
    header = next(line for line in result.stdout.splitlines() if line.startswith("parameter"))
    assert header.endswith("alive units")
    for name, counts in results["alive_units"].items():
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"{name}.weight"))
        assert row.endswith(f"{counts['alive']:>5,} of {counts['total']:,}"), row
    assert f"input entries read: {results['input_read']['read']:,} of 784" in result.stdout


@pytest.mark.parametrize("layer_type", [recurrent.LSTM, recurrent.GRU])
def test_recurrent_units_are_alive_through_their_candidate_and_any_gate(layer_type):
    """Units 0-3 of a recurrent layer over 2 steps of 3 features, then fc 4 -> 2. Kept:
        unit 0: input feature 0 -> its candidate (signal); read by the classifier
        unit 1: input feature 1 -> its first gate only (a sigmoid gate: 1/2 of nothing, no
                signal); read by the classifier
        unit 2: no input, but unit 0 -> its candidate through the recurrent weights (signal a
                step later); read only through its recurrent weight into unit 0's last gate
        unit 3: input feature 2 -> its candidate (signal); read by nobody
    So units 0 and 2 are alive, 1 and 3 dead; input features 0 and 2 are read (feature 2
    only through unit 3, which is not read: feature 2 is unread), feature 1 through unit 1."""
    hidden, gates = 4, len(layer_type.GATES)
    candidate = 2  # the candidate's block (g, or n), both layers
    layer = layer_type(3, hidden)
    w_in, w_rec = numpy.zeros((3, gates * hidden)), numpy.zeros((hidden, gates * hidden))
    w_in[0, candidate * hidden + 0] = 1
    w_in[1, 0 * hidden + 1] = 1
    w_in[2, candidate * hidden + 3] = 1
    w_rec[0, candidate * hidden + 2] = 1
    w_rec[2, (gates - 1) * hidden + 0] = 1
    classifier = numpy.zeros((hidden, 2))
    classifier[0, 0] = classifier[1, 1] = 1
    masks = {
        "lstm1.input_weight" if layer_type is recurrent.LSTM else "gru1.input_weight": w_in,
        "lstm1.recurrent_weight"
        if layer_type is recurrent.LSTM
        else "gru1.recurrent_weight": w_rec,
        "fc1.weight": classifier,
    }
    prefix = "lstm1" if layer_type is recurrent.LSTM else "gru1"
    masks.update({f"{prefix}.bias": numpy.zeros(gates * hidden), "fc1.bias": numpy.zeros(2)})
    if layer_type is recurrent.GRU:
        masks["gru1.recurrent_bias"] = numpy.zeros(hidden)
    model = gated_network(masks, recurrent.AsSequence(), layer, sm.Linear(hidden, 2))
    alive = compaction.alive_units(model, (2, 3, 1))
    assert alive[prefix].tolist() == [True, False, True, False]
    assert alive["input"].reshape(2, 3).tolist() == [[True, True, False]] * 2
    one_step = compaction.alive_units(model, (1, 3, 1))  # one step: unit 2 gets no signal in time
    assert one_step[prefix].tolist() == [True, False, False, False]
