"""Pruning criteria other than SNIP's, as baselines: what came after it, and a simpler rule.

Each scores every gated connection of a freshly initialised network, keeps exactly
kappa = round((1 - sparsity) * m) of them with snip_min's global top-k (top_k_mask, ties to
the lowest index) and the same gates (prunable_parameters, apply_masks), so that only the
score differs from SNIP:

    magnitude        |w| at initialisation: the rule of classic pruning, without training
    synflow          Tanaka, Kunin, Yamins & Ganguli 2020 (Synaptic Flow): data-free; the
                     network with |w| for every weight, fed an input of ones; R = the sum of
                     its outputs, score |w * dR/dw|, in `rounds` rounds (default 100)
    grasp            Wang, Zhang & Grosse 2020 (Gradient Signal Preservation): the removal
                     score -w * (H g), g = dL/dw, H the Hessian, logits divided by 200; the
                     highest are removed
    iterative-snip   de Jorge et al. 2021 (Progressive Skeletonization): SNIP in `rounds`
                     rounds, each rescoring the network pruned so far on the scoring batch

The iterative two follow an exponential schedule: after round r of R the network keeps a
fraction (1 - sparsity)^(r / R) of its connections, a connection once pruned stays pruned,
and round R keeps exactly kappa. A score that is a magnitude is ranked as it is (|g|, |w|),
never divided by its sum first: that keeps SNIP's order (s = |g| / sum |g|) without the
rounding of the division (snip_min.normalised_scores says why it matters).

Precision, criterion by criterion (the network trains in float32 whatever scored it):
    snip, magnitude, random   float32, the network's own: one pass (or none: |w|, and the
                     random draws, made in float64 on the host and rounded once to float32,
                     the same on every device). A rounding can swap two scores that lie within
                     about 1e-7 of each other, once.
    synflow          float64: R multiplies the |w| along every path, which float32 can
                     overflow or flush to 0 in a deep network, and 100 rounds each choose
                     from the last.
    grasp            float64: H g is a difference of gradients, g(w + h v) - g(w), at a step
                     of 1e-8 |w|, below float32's resolution.
    iterative-snip   float64: each of its 100 rounds scores the network the rounds before
                     it left, so one swap of two scores at a round's threshold (which a
                     float32 rounding, a thread count or a device's order of summation
                     decides) changes every round after it; in float64 such a swap needs
                     two scores within about 1e-16 of each other.
Each score is derived in the comments of its function;
where this follows the authors' code and where not (one scoring batch for every round,
batch norm on running statistics, biases gated with the weights):
docs/sanity_checks.md#the-criteria.

What this adds to snip_min.py: `python snip_min.py --method NAME` for each of these
(cli.prune_at_initialisation calls prune_by() here); prune_by() also takes snip and
random, and `invert=True` keeps the kappa lowest-scoring connections instead, for
sanity.py. The scores are computed with snip_min's layers and backward passes, through
sm.xp (NumPy or CuPy), and never wait for the device. docs/sanity_checks.md compares the
criteria; the tests are tests/test_criteria.py.
"""

import contextlib

import snip_min as sm

METHODS = ("snip", "random", "magnitude", "synflow", "grasp", "iterative-snip")
ITERATIVE = ("synflow", "iterative-snip")
DATA_FREE = ("random", "magnitude", "synflow")  # they read no images
GRASP_TEMPERATURE = 200.0  # the authors' code divides the logits by 200 before the loss
HESSIAN_STEP = 1e-8  # H v's difference step, relative: |step * v| = 1e-8 |w|

# For the log line of a run: what the method is.
DESCRIPTIONS = {
    "snip": "SNIP",
    "random": "random pruning (the baseline, not SNIP)",
    "magnitude": "magnitude pruning |w| (a baseline, not SNIP)",
    "synflow": "SynFlow (a successor of SNIP, data-free)",
    "grasp": "GraSP (a successor of SNIP)",
    "iterative-snip": "iterative SNIP (a successor of SNIP)",
}


def prune_by(
    method,
    model,
    images,
    labels,
    sparsity,
    scope="weights+biases",
    rng=None,
    rounds=100,
    invert=False,
    ties=None,
    report=None,
):
    """Gate and prune `model` once, at initialisation, as `method` scores it; returns the gated
    Params, whose values are their initial values where kept and exactly 0 elsewhere.

    images, labels: the scoring batch (synflow and magnitude read neither; random draws its
    scores from rng instead). scope: which Params get gates (snip_min.prunable_parameters).
    rounds: the iterative methods' rounds. invert: keep the kappa
    LOWEST-scoring connections (in every round). ties: a NumPy Generator to break ties at
    random with, instead of by position (lowest index first, as SNIP's top-k does). A dict
    `report` receives m, kappa and how many of the (last round's) scores are above 0, as
    for snip_min.snip; inverted, how many share the lowest score instead (lowest_ties).
    """
    if method not in METHODS:
        raise sm.UsageError(f"unknown --method {method!r} (choose from {', '.join(METHODS)})")
    if method == "snip" and not invert and ties is None:
        return sm.snip(model, images, labels, sparsity, scope, report)  # Algorithm 1 itself
    if method == "random" and not invert and ties is None:
        return sm.random_pruning(model, sparsity, rng, scope, report)
    params = sm.prunable_parameters(model, scope)
    m = sum(p.size for p in params)
    kappa = sm.kappa_for(sparsity, m)
    if method == "synflow":  # each round in float64 (synflow_scores)
        shape = images.shape[1:]
        masks, scores = iterate(
            params, lambda: synflow_scores(model, params, shape), sparsity, rounds, invert, ties
        )
    elif method == "iterative-snip":
        with dense_float64(model, params):  # every round on the network in float64
            x = images.astype(sm.xp.float64)
            masks, scores = iterate(
                params,
                lambda: sm.connection_sensitivity(model, x, labels, params),
                sparsity,
                rounds,
                invert,
                ties,
            )
        masks = [mask.astype(p.value.dtype) for mask, p in zip(masks, params)]  # float32
    else:
        scores = one_shot_scores(method, model, images, labels, params, rng)
        masks = sm.masks_of(select(scores, kappa, invert, ties=ties), [p.value for p in params])
    sm.apply_masks(params, masks)
    if report is not None:
        if invert:
            (lowest_ties,) = sm.host_values(sm.xp.count_nonzero(scores == scores.min()))
            report.update(m=m, kappa=kappa, nonzero_scores=m, lowest_ties=int(lowest_ties))
        else:
            (above_zero,) = sm.host_values(sm.xp.count_nonzero(scores > 0))
            report.update(m=m, kappa=kappa, nonzero_scores=int(above_zero))
    return params


def one_shot_scores(method, model, images, labels, params, rng):
    """The flat score vector over every gated entry, larger = more worth keeping: a score
    that is a magnitude as |score| (ranked as SNIP's s = |score| / sum |score| would be, see
    the module's docstring); GraSP's is signed, and used as it is."""
    if method == "grasp":
        return sm.xp.concatenate([s.ravel() for s in grasp_scores(model, images, labels, params)])
    if method == "snip":
        arrays = sm.connection_sensitivity(model, images, labels, params)  # |w * dL/dw|
    elif method == "random":
        arrays = sm.random_scores(params, rng)
    else:
        arrays = [p.value for p in params]  # |w|
    return sm.magnitudes(arrays)


def select(scores, kappa, invert=False, alive=None, ties=None):
    """A boolean mask over the flat scores keeping exactly kappa: the largest, or with invert
    the smallest; with `alive` (a flat boolean vector) only among the alive entries. Ties go
    to the lowest index (top_k_mask), or with `ties`, a NumPy Generator, at random: the
    scores are looked at in an order it draws, on the host."""
    chosen = -scores if invert else scores
    if alive is not None:
        chosen = sm.xp.where(alive, chosen, -sm.xp.inf)  # a pruned entry is never chosen again
    if ties is None:
        return sm.top_k_mask(chosen, kappa)
    order = sm.xp.asarray(ties.permutation(chosen.size))
    keep = sm.xp.empty(chosen.size, dtype=bool)
    keep[order] = sm.top_k_mask(chosen[order], kappa)
    return keep


def iterate(params, score, sparsity, rounds, invert=False, ties=None):
    """Prune in `rounds` rounds on the exponential schedule, rescoring the network pruned so far
    (its pruned weights are 0) in each. score() -> one array per Param, computed from the
    Params' current values, ranked by magnitude; invert, ties: as for select. Returns (the
    final masks, in the Params' dtype, the flat |scores| of the entries the last round chose
    among, and for the others 0, or inverted infinity); the Params get their initial values
    back."""
    m = sum(p.size for p in params)
    initial = [p.value for p in params]
    keep = alive = sm.xp.ones(m, dtype=bool)
    masks = sm.masks_of(keep, initial)
    for r in range(1, rounds + 1):
        # kept after round r: a fraction (1 - sparsity)^(r / R), exactly kappa after the last
        kappa = (
            sm.kappa_for(sparsity, m)
            if r == rounds
            else int(round((1 - sparsity) ** (r / rounds) * m))
        )
        for p, w, mask in zip(params, initial, masks):
            p.value = w * mask  # the network pruned so far
        scores = sm.magnitudes(score())
        alive, keep = keep, select(scores, kappa, invert, alive=keep, ties=ties)
        masks = sm.masks_of(keep, initial)
    for p, w in zip(params, initial):
        p.value = w
    return masks, sm.xp.where(
        alive, scores, sm.xp.inf if invert else 0
    )  # not among them: not counted


# ------------------------------------------------------------------------------------------
# SynFlow: the synaptic flow through a network with |w|, and no data
# ------------------------------------------------------------------------------------------


def synflow_scores(model, params, input_shape):
    """|w * dR/dw| with every Param made positive and an input of ones, in float64.

    Every Param's value w becomes |w| (biases and batch norm's scale and shift too, as the
    authors' code takes the absolute value of every entry of the model's state), the network
    reads one input of ones, (1, H, W, C), and R = the sum of its outputs. With positive
    weights and a positive input every activation is positive, so each ReLU passes everything
    and each max-pool passes its largest input: R is a sum over paths from the input to the
    outputs of the product of the |w| along each path, and w * dR/dw is the total of the paths
    through w, its "synaptic flow". Batch norm runs on its running statistics (train=False,
    as the authors' code puts the model in evaluation mode), max-pooling is left as it is.
    float64, as in Frankle et al.'s re-implementation (the authors' own code has it commented
    out), keeps a deep network's products of many |w| from overflowing.
    Returns one array per gated Param; the Params get back their values and dtypes.
    """
    with dense_float64(model, params, sm.xp.abs):  # |w|; the pruned ones stay 0
        outputs = model.forward(
            sm.xp.ones((1,) + tuple(input_shape), dtype=sm.xp.float64), train=False
        )
        model.backward(sm.xp.ones_like(outputs))  # dR/d(output) = 1 for R = sum
        return [p.value * p.grad for p in params]  # |w| * dR/d|w|, all >= 0


@contextlib.contextmanager
def dense_float64(model, params, transform=None):
    """Within: every Param of `model` in float64 (after `transform`, |w| for SynFlow), and the
    gated `params` with c = 1, the dense network. Afterwards every value, mask and dtype is
    as it was, and the gradients are dropped."""
    saved = [(p, p.value, p.mask) for p in sm.parameters_of(model)]
    try:
        for p, value, _ in saved:
            p.value = (value if transform is None else transform(value)).astype(sm.xp.float64)
        for p in params:
            p.mask = sm.xp.ones_like(p.value)
        yield
    finally:
        for p, value, mask in saved:
            p.value, p.mask, p.grad = value, mask, None


# ------------------------------------------------------------------------------------------
# GraSP: -w * (H g), with H g as a directional derivative of the gradient
# ------------------------------------------------------------------------------------------


def loss_gradients(model, images, labels, params, temperature):
    """dL/d(w * c) of every Param in `params` (c = 1), L the cross-entropy of logits / T."""
    logits = model.forward(images, train=False)
    _, dlogits = sm.softmax_cross_entropy(logits / temperature, labels)
    model.backward(dlogits / temperature)  # d(logits / T)/d(logits) = 1 / T
    return [p.grad for p in params]


def global_norm(arrays):
    """sqrt(sum of every entry squared), a 0-d device array."""
    return sm.xp.sqrt(sum((a * a).sum() for a in arrays))


def difference_step(values, directions):
    """The step h of H v's differences, with |h v| = HESSIAN_STEP |w| (norms over every entry
    that moves): relative, so the same for any scale of w and v. |h v| = HESSIAN_STEP if
    w = 0, and h = 1 if v = 0 (then H v = 0 at any step). A 0-d device array: no wait."""
    w, v = global_norm(values), global_norm(directions)
    return sm.xp.where(v > 0, HESSIAN_STEP * sm.xp.where(w > 0, w, 1) / sm.xp.where(v > 0, v, 1), 1)


def hessian_vector_product(
    model, images, labels, params, directions, temperature=GRASP_TEMPERATURE, gradient=None
):
    """H v: the Hessian of the loss over `params` times `directions` v, one array per Param
    (a direction of None: that Param does not move, and counts as 0 in v). gradient: the
    loss gradient g at the current values, if already computed.

    H v is the derivative of g along v, dg(w + t v)/dt at t = 0, taken from the gradients at
    t = h, 2h and -h, -2h (four more backward passes), with |h v| = 1e-8 |w|, in float64.
    Where g is smooth around t = 0, either one-sided difference
        H v = (-3 g(0) + 4 g(h) - g(2h)) / (2 h) + O(h^2)         (from t > 0)
        H v = ( 3 g(0) - 4 g(-h) + g(-2h)) / (2 h) + O(h^2)       (from t < 0)
    is off by far less than H v's own size (the tests bound it against an explicit Hessian
    and against PyTorch's double backward). Why not simply the central difference
    (g(h) - g(-h)) / (2 h)? A ReLU network is smooth only piecewise: where a ReLU's input,
    or the gap between a max-pool window's two largest inputs, crosses 0 between t = -h and
    h, the gradient changes branch, and the central difference mixes two slopes (or, where
    the gradient jumps, blows up by 1/h). It happens: in one LeNet-5-Caffe batch of 100
    images in sixteen with |h v| = 1e-7 |w| (experiments/grasp_hessian.py). The Hessian
    wanted is that of the branch the network is on at t = 0 (PyTorch's: a ReLU's second
    derivative 0, a max-pool's routing held), and each side shows whether it stayed
    there: its second difference, g(2h) - 2 g(h) + g(0), is O(h^2) if it did, and as
    large as the change of slope (or the jump) if it did not.
    So each entry takes the one-sided difference of the side that bends less. (A crossing
    exactly at t = 0, an exact tie, leaves both sides smooth and either may be taken;
    PyTorch takes the first of the tied inputs. Two crossings in one entry, one on each
    side, are beyond it; at this step they are vanishingly rare. Nor can any difference help
    where the softmax is saturated, logits some 100 apart: H is then as small as float64's
    rounding of 1 - p, and no digit of the product is right; the temperature keeps GraSP's
    logits far from that.) Runs in the Params' own
    dtype (call it in float64); the step and every choice are made on the device, so
    nothing waits.
    """
    if gradient is None:
        gradient = [g.copy() for g in loss_gradients(model, images, labels, params, temperature)]
    moving = [(p, v) for p, v in zip(params, directions) if v is not None]
    start = [p.value for p, _ in moving]
    step = difference_step(start, [v for _, v in moving])
    at = {}
    for t in (1, -1, 2, -2):  # g(t h) for t = 1, -1, 2, -2
        for (p, v), w in zip(moving, start):
            p.value = w + (t * step) * v
        at[t] = [g.copy() for g in loss_gradients(model, images, labels, params, temperature)]
    for (p, _), w in zip(moving, start):
        p.value = w
    products = []
    for g, plus, minus, plus2, minus2 in zip(gradient, at[1], at[-1], at[2], at[-2]):
        bend_plus = sm.xp.abs(plus2 - 2 * plus + g)  # O(h^2) where t > 0 is smooth
        bend_minus = sm.xp.abs(minus2 - 2 * minus + g)
        forward = (4 * plus - plus2 - 3 * g) / (2 * step)
        backward = (3 * g - 4 * minus + minus2) / (2 * step)
        products.append(sm.xp.where(bend_plus <= bend_minus, forward, backward))
    return products


def grasp_scores(model, images, labels, params):
    """w * (H g): GraSP's keep score, in float64.

    GraSP asks which weights, removed, would least reduce the gradient's flow, the squared
    norm of g: with dw the change of the weights, d(g^T g) = 2 g^T H dw, and removing w_q
    (dw_q = -w_q) changes g^T g by -2 w_q (H g)_q. The authors score S = -w * (H g) and remove
    the highest S first, the weights whose removal costs the least flow (or raises it); so
    the kappa kept are those with the LARGEST w * (H g), returned here. As in their code, g
    and H are taken over the weights only (biases, which start at 0, score 0 either way), on
    the whole scoring batch, with the logits divided by the temperature 200, which softens
    the softmax. Batch norm
    runs on its running statistics (train=False), as for SNIP and as in SynFlow's authors'
    port of GraSP (GraSP's own code scores in training mode, on batch statistics).
    """
    with dense_float64(model, params):
        x = images.astype(sm.xp.float64)
        gradient = [g.copy() for g in loss_gradients(model, x, labels, params, GRASP_TEMPERATURE)]
        directions = [g if p.kind == "weight" else None for p, g in zip(params, gradient)]
        hg = hessian_vector_product(model, x, labels, params, directions, gradient=gradient)
        return [
            p.value * h if p.kind == "weight" else sm.xp.zeros_like(h) for p, h in zip(params, hg)
        ]
