"""The baselines of criteria.py and the checks of sanity.py: every criterion keeps exactly
kappa and is the same for the same seed; each score against an independent computation
(closed forms, an explicit Hessian, PyTorch's double backward where PyTorch is installed);
the exponential schedule; each sanity check does what it says; none waits for the device on
the strict stand-in; the command line's --method, --rounds and --sanity-check."""

import json

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models
import snip_min as sm
from extensions import cli, criteria, sanity
from helpers import array, initialised, run_python
from test_cli import assert_refused

SPARSITIES = [0.5, 0.9, 0.98, 0.999]


def scoring_batch(model_name, seed, n=20, dtype=None):
    dataset = models.MODELS[model_name].dataset
    rng = numpy.random.default_rng(seed)
    images = sm.xp.asarray(
        rng.standard_normal((n,) + models.INPUT_SHAPE[dataset]), dtype=dtype or sm.xp.float32
    )
    return images, sm.xp.asarray(rng.integers(0, models.NUM_CLASSES[dataset], n))


def pruned(model_name, method, sparsity, seed=0, invert=False, rounds=10, scope="weights+biases"):
    """(model, gated Params, initial values) after pruning a fresh model with `method`."""
    model = models.build(model_name)
    sm.initialise(model, "vs-h", numpy.random.default_rng(seed))
    initial = [sm.to_host(p.value) for p in sm.prunable_parameters(model, scope)]
    images, labels = scoring_batch(model_name, seed)
    gated = criteria.prune_by(
        method,
        model,
        images,
        labels,
        sparsity,
        scope,
        numpy.random.default_rng(seed + 1),
        rounds,
        invert=invert,
    )
    return model, gated, initial


def kept(gated):
    return sum(int(numpy.count_nonzero(sm.to_host(p.mask))) for p in gated)


# --- every criterion: exactly kappa, the initial values where kept, the same for a seed -------


@pytest.mark.parametrize("method", criteria.METHODS)
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_every_criterion_keeps_exactly_kappa_with_their_initial_values(method, invert, sparsity):
    _, gated, initial = pruned("lenet300", method, sparsity, invert=invert)
    assert kept(gated) == sm.kappa_for(sparsity, 266_610)
    for p, w in zip(gated, initial):
        mask, value = sm.to_host(p.mask), sm.to_host(p.value)
        assert set(numpy.unique(mask)) <= {0.0, 1.0}
        assert (value[mask == 0] == 0).all() and (value[mask == 1] == w[mask == 1]).all(), p.name


@pytest.mark.parametrize("method", criteria.METHODS)
def test_every_criterion_keeps_exactly_kappa_of_a_convolutional_network(method):
    _, gated, _ = pruned("lenet5", method, 0.99, rounds=5)
    assert kept(gated) == 4_311


@pytest.mark.parametrize("method", criteria.METHODS)
def test_every_criterion_gives_the_same_mask_for_the_same_seed(method):
    masks = [
        [sm.to_host(p.mask) for p in pruned("lenet300", method, 0.95, seed=3)[1]] for _ in range(2)
    ]
    assert all((a == b).all() for a, b in zip(*masks))
    other = [sm.to_host(p.mask) for p in pruned("lenet300", method, 0.95, seed=4)[1]]
    assert any((a != b).any() for a, b in zip(masks[0], other))  # another seed, another mask


def test_criteria_snip_is_snip_min_snip():
    ours = [sm.to_host(p.mask) for p in pruned("lenet5", "snip", 0.99)[1]]
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch("lenet5", 0)
    theirs = [sm.to_host(p.mask) for p in sm.snip(model, images, labels, 0.99)]
    assert all((a == b).all() for a, b in zip(ours, theirs))


def flat_host(arrays):
    return numpy.concatenate([sm.to_host(a).ravel() for a in arrays])


@pytest.mark.parametrize("invert", [False, True])
def test_magnitude_keeps_the_largest_weights_and_inverted_the_smallest(invert):
    _, gated, initial = pruned("lenet300", "magnitude", 0.9, invert=invert)
    magnitude, keep = numpy.abs(flat_host(initial)), flat_host([p.mask for p in gated]) == 1
    if invert:
        assert magnitude[keep].max() <= magnitude[~keep].min()
    else:
        assert magnitude[keep].min() >= magnitude[~keep].max()


def test_inverted_snip_keeps_the_lowest_sensitivities():
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch("lenet300", 0)
    params = sm.prunable_parameters(model)
    scores = sm.to_host(
        sm.normalised_scores(sm.connection_sensitivity(model, images, labels, params))
    )
    gated = criteria.prune_by("snip", model, images, labels, 0.9, invert=True)
    keep = flat_host([p.mask for p in gated]) == 1
    assert (
        keep.sum() == sm.kappa_for(0.9, scores.size) and scores[keep].max() <= scores[~keep].min()
    )


# --- the iterative schedule -----------------------------------------------------------------------


@pytest.mark.parametrize("invert", [False, True], ids=["kept", "inverted"])
@pytest.mark.parametrize("sparsity, rounds", [(0.98, 5), (0.9, 1), (0.999, 12)])
def test_iterate_follows_the_exponential_schedule_and_rescores_the_pruned_network(
    sparsity, rounds, invert
):
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    params = [
        p for p in sm.prunable_parameters(model) if p.kind == "weight"
    ]  # no zeros at the start
    m, rng = sum(p.size for p in params), numpy.random.default_rng(1)
    initial, seen = [sm.to_host(p.value) for p in params], []

    def score():  # the network pruned so far must come in: a pruned weight is exactly 0 ...
        values = flat_host([p.value for p in params])
        seen.append(values != 0)
        # ... but it scores as if unpruned, |initial w| + noise, as high as any kept one: only
        # iterate itself can keep it from coming back (and inverted, as low as any)
        return [
            sm.xp.abs(sm.xp.asarray(w)) * sm.xp.asarray(1 + rng.random(w.shape)) for w in initial
        ]

    masks, _ = criteria.iterate(params, score, sparsity, rounds, invert)
    kept = [int(alive.sum()) for alive in seen[1:]] + [int(flat_host(masks).sum())]
    assert kept == [int(round((1 - sparsity) ** (r / rounds) * m)) for r in range(1, rounds)] + [
        sm.kappa_for(sparsity, m)
    ]
    for before, after in zip(seen, seen[1:] + [flat_host(masks) != 0]):
        assert not (after & ~before).any()  # a pruned weight never comes back
    assert all((sm.to_host(p.value) == w).all() for p, w in zip(params, initial))  # given back


def test_one_round_of_iterative_snip_is_snip():
    once = [sm.to_host(p.mask) for p in pruned("lenet300", "iterative-snip", 0.95, rounds=1)[1]]
    snip = [sm.to_host(p.mask) for p in pruned("lenet300", "snip", 0.95)[1]]
    assert all((a == b).all() for a, b in zip(once, snip))


# --- SynFlow against its closed form on a linear network ---------------------------------------


@given(seed=st.integers(0, 2**32 - 1), d=st.lists(st.integers(1, 5), min_size=3, max_size=4))
def test_synflow_scores_match_the_closed_form_of_a_linear_network(seed, d):
    # y = x A1 + b1, then ReLU, ..., with every |W| = A and |b| = c: for x = ones (a positive
    # input, so every ReLU passes all), h_0 = 1, h_l = h_{l-1} A_l + c_l, R = sum(h_L). Then
    # dR/dA_l[i, j] = h_{l-1}[i] * u_l[j] and dR/dc_l = u_l, with u_L = 1, u_{l-1} = A_l u_l.
    rng = numpy.random.default_rng(seed)
    layers = []
    for d_in, d_out in zip(d, d[1:]):
        layers += [sm.Linear(d_in, d_out), sm.ReLU()]
    net = initialised(sm.Sequential(*layers[:-1]), rng, dtype=sm.xp.float32)
    params = sm.parameters_of(net)
    before = [sm.to_host(p.value).copy() for p in params]
    scores = [sm.to_host(s) for s in criteria.synflow_scores(net, params, (d[0],))]
    a = [numpy.abs(w).astype(numpy.float64) for w in before[0::2]]
    c = [numpy.abs(w).astype(numpy.float64) for w in before[1::2]]
    h = [numpy.ones(d[0])]
    for a_l, c_l in zip(a, c):
        h.append(h[-1] @ a_l + c_l)
    u = [numpy.ones(d[-1])]
    for a_l in reversed(a[1:]):
        u.insert(0, a_l @ u[0])
    for layer, (a_l, c_l) in enumerate(zip(a, c)):
        assert numpy.allclose(scores[2 * layer], a_l * numpy.outer(h[layer], u[layer]), rtol=1e-12)
        assert numpy.allclose(scores[2 * layer + 1], c_l * u[layer], rtol=1e-12)
    assert all(
        p.value.dtype == sm.xp.float32 and (sm.to_host(p.value) == w).all() and p.mask is None
        for p, w in zip(params, before)
    )  # given back as they were


def test_synflow_reads_no_data_and_leaves_the_model_as_it_was():
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    before = [sm.to_host(p.value).copy() for p in sm.parameters_of(model)]
    images, labels = scoring_batch("lenet5", 0)
    masks = []
    for scale in (1.0, -3.0):  # other images, other labels: the same mask
        model_copy = models.build("lenet5")
        sm.initialise(model_copy, "vs-h", numpy.random.default_rng(0))
        gated = criteria.prune_by(
            "synflow", model_copy, images * scale, (labels + 1) % 10, 0.99, rounds=3
        )
        masks.append([sm.to_host(p.mask) for p in gated])
    assert all((a == b).all() for a, b in zip(*masks))
    params = sm.prunable_parameters(model)
    criteria.synflow_scores(model, params, (28, 28, 1))
    assert all(
        (sm.to_host(p.value) == b).all() and p.value.dtype == sm.xp.float32 and p.mask is None
        for p, b in zip(sm.parameters_of(model), before)
    )


# --- GraSP: H g against an explicit Hessian and against PyTorch ---------------------------------


def tiny_network(rng):
    """A smooth network (no ReLU, no max-pool: no branch for a difference to cross), whose loss
    is not quadratic in its weights: the products of three layers' weights. Branches are
    tested against PyTorch below."""
    net = sm.Sequential(sm.Conv2D(1, 2, 3), sm.Flatten(), sm.Linear(32, 5), sm.Linear(5, 3))
    return initialised(net, rng)


def explicit_hessian(net, images, labels, params, temperature):
    """Every column of H by central differences of the gradient, one coordinate at a time."""
    sizes = [p.size for p in params]
    columns = []
    for k, p in enumerate(params):
        for index in range(p.size):
            step = numpy.zeros(p.size)
            step[index] = 1e-5
            start = p.value
            p.value = start + sm.xp.asarray(step.reshape(p.shape))
            plus = flat_host(criteria.loss_gradients(net, images, labels, params, temperature))
            p.value = start - sm.xp.asarray(step.reshape(p.shape))
            minus = flat_host(criteria.loss_gradients(net, images, labels, params, temperature))
            p.value = start
            columns.append((plus - minus) / 2e-5)
    assert len(columns) == sum(sizes)
    return numpy.stack(columns, axis=1)


@given(seed=st.integers(0, 2**32 - 1), temperature=st.sampled_from([1.0, 200.0]))
@settings(max_examples=10)
def test_the_hessian_vector_product_matches_an_explicit_hessian(seed, temperature):
    rng = numpy.random.default_rng(seed)
    net = tiny_network(rng)
    images, labels = array(rng, (4, 6, 6, 1)), sm.xp.asarray(rng.integers(0, 3, 4))
    # Not a saturated softmax: three layers of N(0, 1) weights can put logits ~100 apart, the
    # loss is then ~1e-11, H is as small as float64's rounding of 1 - p, and neither difference
    # quotient keeps a correct digit. GraSP meets a fresh network's logits, divided by 200; here
    # the last layer is scaled so that |logits| / temperature <= 4.
    largest = float(abs(net.forward(images, train=False)).max()) / temperature
    for p in net.children[-1].params:
        p.value = p.value * min(1.0, 4.0 / largest)
    params = sm.parameters_of(net)
    for p in params:
        p.mask = sm.xp.ones_like(p.value)
    v = [array(rng, p.shape) for p in params]
    hv = flat_host(criteria.hessian_vector_product(net, images, labels, params, v, temperature))
    h = explicit_hessian(net, images, labels, params, temperature)
    expected = h @ flat_host(v)
    # the explicit Hessian itself is a difference quotient (its own error ~1e-9 of its scale)
    assert numpy.abs(hv - expected).max() <= 1e-6 * max(numpy.abs(expected).max(), 1e-12)
    assert numpy.allclose(h, h.T, atol=1e-6 * numpy.abs(h).max())  # sanity of the reference


@pytest.mark.parametrize("model_name", ["lenet300", "lenet5"])
def test_grasp_scores_match_pytorch_double_backward(model_name):
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    model = models.build(model_name)
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch(model_name, 1, n=16)
    params = sm.prunable_parameters(model)
    ours = criteria.grasp_scores(model, images, labels, params)
    assert all(p.value.dtype == sm.xp.float32 and p.mask is None for p in params)  # left as found
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for p in sm.parameters_of(model):
            p.value = p.value.astype(sm.xp.float64)
        twin, links = pytorch_twin.to_torch(model, torch)
        twin.eval()
        x = torch.as_tensor(sm.to_host(images).astype(numpy.float64))
        loss = torch.nn.functional.cross_entropy(
            twin(x) / 200.0, torch.as_tensor(sm.to_host(labels))
        )
        weights = [target for p, target, _ in links if p.kind == "weight"]
        g = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((gi.detach() * gi).sum() for gi in g)
        hg = torch.autograd.grad(z, weights)
    finally:
        torch.set_default_dtype(default)
    theirs = iter(w.detach() * h for w, h in zip(weights, hg))
    for (p, target, layout), score in zip(links, ours):
        mine = layout(score).numpy()
        if p.kind != "weight":
            assert (mine == 0).all()
            continue
        expected = next(theirs).numpy()
        assert numpy.abs(mine - expected).max() <= 1e-6 * numpy.abs(expected).max(), p.name


@pytest.mark.parametrize("gap", [0.5, 1.5, -0.5, -1.5])
def test_a_max_pool_branch_within_the_step_gives_the_hessian_of_the_branch_at_w(gap):
    # a window whose two largest inputs, y00 - y01 = (w1 - w2) - 2 t, cross at t = gap * h
    # (h the step): a central difference would mix two branches (and the weights' gradient
    # jumps there); the product must be PyTorch's, the routing of t = 0 held
    torch = pytest.importorskip("torch")
    from extensions import pytorch_twin

    net = sm.Sequential(sm.Conv2D(2, 1, 1), sm.MaxPool2D(2), sm.Flatten(), sm.Linear(1, 3))
    initialised(net, numpy.random.default_rng(0))
    params = sm.parameters_of(net)
    v = [
        sm.xp.asarray([[[[-1.0], [1.0]]]]),
        sm.xp.asarray([0.3]),
        sm.xp.asarray([[0.2, -0.1, 0.4]]),
        sm.xp.asarray([0.1, 0.0, -0.2]),
    ]
    values = [sm.to_host(p.value) for p in params]
    values[0] = numpy.array([[[[0.7], [0.7]]]])
    h = (
        criteria.HESSIAN_STEP
        * numpy.sqrt(sum((w * w).sum() for w in values))
        / numpy.sqrt(sum((sm.to_host(d) ** 2).sum() for d in v))
    )
    values[0][0, 0, 0, 0] += 2 * gap * h  # w1 - w2 = 2 gap h
    for p, w in zip(params, values):
        p.value, p.mask = sm.xp.asarray(w), sm.xp.ones_like(sm.xp.asarray(w))
    x = sm.xp.asarray([[[[1.0, 0.0], [0.0, 1.0]], [[-5.0, -5.0], [-5.0, -5.0]]]])  # (1, 2, 2, 2)
    ours = criteria.hessian_vector_product(net, x, sm.xp.asarray([1]), params, v, temperature=1.0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        twin, links = pytorch_twin.to_torch(net, torch)
        loss = torch.nn.functional.cross_entropy(
            twin(torch.as_tensor(sm.to_host(x))), torch.as_tensor([1])
        )
        targets = [target for _, target, _ in links]
        gradient = torch.autograd.grad(loss, targets, create_graph=True)
        along = sum((g * layout(d)).sum() for g, d, (_, _, layout) in zip(gradient, v, links))
        theirs = torch.autograd.grad(along, targets)
    finally:
        torch.set_default_dtype(default)
    for (p, _, layout), mine, expected in zip(links, ours, theirs):
        assert numpy.allclose(layout(mine).numpy(), expected.numpy(), rtol=1e-6, atol=1e-8), p.name


def test_grasp_keeps_the_largest_w_times_hg():
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch("lenet300", 0)
    params = sm.prunable_parameters(model)
    scores = flat_host(criteria.grasp_scores(model, images, labels, params))
    gated = criteria.prune_by("grasp", model, images, labels, 0.95)
    keep = flat_host([p.mask for p in gated]) == 1
    assert scores[keep].min() >= scores[~keep].max()
    assert (scores < 0).any() and (scores > 0).any()  # signed: not a magnitude


# --- the sanity checks ----------------------------------------------------------------------------


def checked(check, method="snip", model_name="lenet300", sparsity=0.95, seed=0, rounds=5):
    model = models.build(model_name)
    sm.initialise(model, "vs-h", numpy.random.default_rng(seed))
    initial = [sm.to_host(p.value) for p in sm.prunable_parameters(model)]
    images, labels = scoring_batch(model_name, seed)
    gated = sanity.prune_checked(
        check,
        method,
        model,
        images,
        labels,
        sparsity=sparsity,
        seed=seed,
        classes=10,
        rng=numpy.random.default_rng(seed + 1),
        rounds=rounds,
    )
    return gated, initial


def masks_of(gated):
    return [sm.to_host(p.mask) for p in gated]


@pytest.mark.parametrize("method", criteria.METHODS)
def test_shuffle_keeps_each_arrays_count_at_new_positions_with_initial_values(method):
    plain = masks_of(pruned("lenet300", method, 0.95, rounds=5)[1])
    gated, initial = checked("shuffle", method)
    for p, before, w in zip(gated, plain, initial):
        mask, value = sm.to_host(p.mask), sm.to_host(p.value)
        assert mask.sum() == before.sum(), p.name
        assert (value == w * mask).all()
        if 0 < before.sum() < before.size - 1:
            assert (mask != before).any(), p.name


def test_reinit_keeps_the_mask_and_draws_new_weights():
    _, plain_gated, initial = pruned("lenet300", "snip", 0.95)
    gated, _ = checked("reinit")
    for p, q, w in zip(gated, plain_gated, initial):
        mask, value = sm.to_host(p.mask), sm.to_host(p.value)
        assert (mask == sm.to_host(q.mask)).all()
        assert (value[mask == 0] == 0).all()
        if p.kind == "weight":
            assert (value[mask == 1] != w[mask == 1]).all() and (value[mask == 1] != 0).all()


def test_invert_changes_every_mask_and_corrupt_data_only_those_of_criteria_that_read_data():
    for method in ("snip", "synflow"):
        plain = masks_of(pruned("lenet300", method, 0.95, rounds=5)[1])
        assert any((a != b).any() for a, b in zip(masks_of(checked("invert", method)[0]), plain)), (
            method
        )
        corrupt = masks_of(checked("corrupt-data", method)[0])
        assert any((a != b).any() for a, b in zip(corrupt, plain)) == (method == "snip"), method


def test_inverted_ties_are_broken_at_random_not_by_position():
    scores = sm.xp.zeros(1000)
    first = sm.to_host(criteria.select(scores, 50, invert=True, ties=numpy.random.default_rng(0)))
    again = sm.to_host(criteria.select(scores, 50, invert=True, ties=numpy.random.default_rng(0)))
    other = sm.to_host(criteria.select(scores, 50, invert=True, ties=numpy.random.default_rng(1)))
    assert first.sum() == other.sum() == 50 and (first == again).all() and (first != other).any()
    assert first[:500].sum() < 50  # not the lowest 50 indices
    scores = sm.xp.asarray(numpy.r_[numpy.zeros(100), numpy.arange(1.0, 901.0)])
    kept = sm.to_host(criteria.select(scores, 150, invert=True, ties=numpy.random.default_rng(2)))
    assert kept[:150].all() and not kept[150:].any()  # the order first, then the ties


def test_inverted_ties_do_not_fill_the_first_layer_by_position():
    # by position, inverted SynFlow at 98% kept all its 5,332 in fc1.weight (the lowest
    # indices), and nothing in fc2 and fc3: a disconnected network
    gated, _ = checked("invert", "synflow", sparsity=0.98)
    kept = {p.name: int(sm.to_host(p.mask).sum()) for p in gated}
    assert kept["fc1.weight"] < 5_332 and kept["fc2.weight"] > 0


def test_shuffle_keeps_each_gates_count_of_a_recurrent_layer():
    def rows(check):
        model = models.build("lstm-s")
        sm.initialise(model, "vs-h", numpy.random.default_rng(0))
        images, labels = scoring_batch("lstm-s", 0)
        if check is None:
            criteria.prune_by("snip", model, images, labels, 0.95)
        else:
            sanity.prune_checked(
                check, "snip", model, images, labels, sparsity=0.95, seed=0, classes=10
            )
        return sm.pruning_table(model), [sm.to_host(p.mask) for p in sm.prunable_parameters(model)]

    (plain, plain_masks), (shuffled, shuffled_masks) = rows(None), rows("shuffle")
    assert plain == shuffled and any(row[0].endswith("[f]") for row in plain)
    assert any((a != b).any() for a, b in zip(plain_masks, shuffled_masks))


def test_corrupt_data_scores_on_labels_drawn_at_random(monkeypatch):
    seen = []
    real = criteria.prune_by

    def spy(method, model, images, labels, *args, **kwargs):
        seen.append(sm.to_host(labels))
        return real(method, model, images, labels, *args, **kwargs)

    monkeypatch.setattr(criteria, "prune_by", spy)
    _, labels = scoring_batch("lenet300", 0)
    checked("corrupt-data")
    checked("corrupt-data")
    assert (seen[0] == seen[1]).all() and (seen[0] != sm.to_host(labels)).any()
    assert seen[0].min() >= 0 and seen[0].max() < 10


# --- no wait for the device -----------------------------------------------------------------------


@pytest.mark.parametrize("method", criteria.METHODS)
def test_every_criterion_scores_without_waiting_for_the_device(stand_in, method):
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch("lenet5", 0)
    criteria.prune_by(
        method, model, images, labels, 0.99, rng=numpy.random.default_rng(1), rounds=3
    )  # compiles
    model = models.build("lenet5")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    with stand_in.counting() as record:
        gated = criteria.prune_by(
            method, model, images, labels, 0.99, rng=numpy.random.default_rng(1), rounds=3
        )
    allowed = 1 if method == "random" else 0  # random's host-drawn scores are copied over once
    assert record.syncs == 0 and record.transfers <= allowed * len(gated), record.summary()


@pytest.mark.parametrize("check", sanity.CHECKS)
def test_every_sanity_check_runs_on_the_device_and_training_never_waits(stand_in, check):
    model = models.build("lenet300")
    sm.initialise(model, "vs-h", numpy.random.default_rng(0))
    images, labels = scoring_batch("lenet300", 0)
    sanity.prune_checked(check, "snip", model, images, labels, sparsity=0.98, seed=0, classes=10)
    with stand_in.counting() as record:
        model = models.build("lenet300")
        sm.initialise(model, "vs-h", numpy.random.default_rng(0))
        sanity.prune_checked(
            check, "snip", model, images, labels, sparsity=0.98, seed=0, classes=10
        )
    assert record.syncs == 0, record.summary()
    optimiser = sm.SGD(sm.parameters_of(model))
    sm.train_step(model, optimiser, images, labels, 0.1)
    with stand_in.counting() as record:
        sm.train_step(model, optimiser, images, labels, 0.1)
    assert record.syncs == 0 and record.transfers == 0, record.summary()


# --- the command line -----------------------------------------------------------------------------


def cli_arguments(data_dir, out, device, *extra):
    return cli.parse_arguments(
        [
            "--model",
            "lenet300",
            "--sparsity",
            "0.98",
            "--data-dir",
            str(data_dir),
            "--batch-size",
            "25",
            "--iterations",
            "4",
            "--out",
            str(out),
            "--device",
            device,
            *extra,
        ]
    )


@pytest.mark.parametrize("method", criteria.METHODS)
def test_every_method_runs_from_the_command_line_keeping_5332(tiny_mnist, tmp_path, device, method):
    results = cli.run(
        cli_arguments(tiny_mnist, tmp_path, device, "--method", method, "--rounds", "5"),
        log=lambda line: None,
    )
    assert results["params_kept"] == 5_332 and results["method"] == method
    assert results["rounds"] == (5 if method in criteria.ITERATIVE else None)
    assert results["sanity_check"] is None


def test_each_sanity_check_is_recorded_and_shuffle_keeps_every_layers_count(
    tiny_mnist, tmp_path, device
):
    lines = []
    plain = cli.run(cli_arguments(tiny_mnist, tmp_path / "plain", device), log=lines.append)
    for check in sanity.CHECKS:
        results = cli.run(
            cli_arguments(tiny_mnist, tmp_path / check, device, "--sanity-check", check),
            log=lines.append,
        )
        with open(tmp_path / check / "results.json") as f:
            assert json.load(f)["sanity_check"] == check
        assert results["params_kept"] == 5_332
        if check in ("shuffle", "reinit"):
            assert results["per_layer"] == plain["per_layer"]
    assert any(line.endswith("sanity check: shuffle") for line in lines)


def test_a_checks_draws_leave_the_methods_own_mask_alone(tiny_mnist, tmp_path, device):
    # random pruning draws from the scoring stream; reinit from the check stream: the mask
    # must be the unchecked run's, the weights not
    for check in ([], ["--sanity-check", "reinit"]):
        cli.run(
            cli_arguments(
                tiny_mnist, tmp_path / str(len(check)), device, "--method", "random", *check
            ),
            log=lambda line: None,
        )
    plain, checked_masks = (numpy.load(tmp_path / folder / "masks.npz") for folder in ("0", "2"))
    assert sorted(plain.files) == sorted(checked_masks.files)
    assert all((plain[name] == checked_masks[name]).all() for name in plain.files)


@pytest.mark.parametrize(
    "flags, complaint",
    [
        (["--method", "optimal-brain-damage"], "argument --method: invalid choice"),
        (["--sanity-check", "flip"], "argument --sanity-check: invalid choice"),
        (["--rounds", "0"], "expected a positive integer"),
    ],
)
def test_bad_method_flags_give_one_line_and_status_2(flags, complaint):
    result = run_python(["snip_min.py", "--model", "lenet300", *flags])
    assert_refused(result, complaint)
