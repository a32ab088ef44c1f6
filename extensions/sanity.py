"""The sanity checks of pruning at initialisation: does a method's mask owe its accuracy to
WHICH connections it keeps, or only to HOW MANY each layer keeps?

Frankle, Dziugaite, Roy & Carbin ("Pruning Neural Networks at Initialization: Why Are We
Missing the Mark?", ICLR 2021) and Su et al. ("Sanity-Checking Pruning Methods: Random
Tickets can Win the Jackpot", NeurIPS 2020) altered the masks of SNIP and its successors
in these ways, and found that on their CIFAR and ImageNet networks the accuracy hardly
moved: what the methods decide is mostly each layer's share.

    shuffle         permute each parameter array's kept positions at random: the same
                    count per array (per gate, for a recurrent layer's), new positions
    reinit          keep the mask, but train a fresh initialisation, drawn from another
                    random stream, instead of the weights the mask was chosen on
    invert          keep the kappa LOWEST-scoring connections instead of the highest (ties,
                    such as the many connections whose score is exactly 0, broken at
                    random rather than by position, so that no layer is favoured)
    corrupt-data    score on the scoring batch with labels drawn uniformly at random
                    (training uses the true labels); the data-free criteria (random,
                    magnitude, synflow) are untouched by it

What this adds to snip_min.py: `--sanity-check NAME`, applied to the mask any --method
produces, before training; cli.prune_at_initialisation calls prune_checked() here when the
flag is given, and results.json records the check. Every random draw of a check comes from
a fifth stream of the run's seed (check_stream), beside the four of snip_min.seed_streams,
so that the method's own draws, and so its mask before the check, are those of the
unchecked run. Experiment F
(experiments/sanity_checks.py, docs/sanity_checks.md) runs every check on every criterion;
the tests are tests/test_criteria.py.
"""

import sys

import numpy

import snip_min as sm
from extensions import criteria

CHECKS = ("shuffle", "reinit", "invert", "corrupt-data")


def check_stream(seed):
    """The sanity checks' random stream for a run's seed: child 4 of the seed's SeedSequence,
    whose children 0-3 are snip_min.seed_streams' initialisation, split, scoring and shuffling."""
    return numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(5)[4])


def prune_checked(
    check,
    method,
    model,
    images,
    labels,
    *,
    sparsity,
    seed,
    classes,
    scope="weights+biases",
    init="vs-h",
    rng=None,
    rounds=100,
    report=None,
):
    """Gate and prune `model` with `method` (see criteria.prune_by; scope, rng and rounds are
    its own) under the sanity check `check`. seed: the run's (for check_stream), classes: how many
    labels the data has (for corrupt-data), init: the initialisation (for reinit). Returns
    the gated Params."""
    if check not in CHECKS:
        raise sm.UsageError(f"unknown --sanity-check {check!r} (choose from {', '.join(CHECKS)})")
    stream = check_stream(seed)
    if check == "corrupt-data":  # labels uniform over the classes, drawn on the host
        labels = sm.xp.asarray(stream.integers(0, classes, size=len(labels)))
        if method in criteria.DATA_FREE:
            print(
                f"note: --sanity-check corrupt-data leaves {method}'s mask as it is: it reads "
                f"no data",
                file=sys.stderr,
            )
    initial = [p.value for p in sm.prunable_parameters(model, scope)]
    inverted = check == "invert"
    gated = criteria.prune_by(
        method,
        model,
        images,
        labels,
        sparsity,
        scope,
        rng,
        rounds,
        invert=inverted,
        ties=stream if inverted else None,
        report=report,
    )
    if inverted and report is not None and report["lowest_ties"] > 1:
        tied, kappa = report["lowest_ties"], report["kappa"]
        print(
            f"note: inverted, {tied:,} connections share the lowest score; "
            f"{min(tied, kappa):,} of the kappa = {kappa:,} kept were drawn among them at random",
            file=sys.stderr,
        )
    if check == "shuffle":
        shuffle(gated, initial, stream)
    elif check == "reinit":
        reinitialise(model, gated, init, stream)
    return gated


def shuffle(gated, initial, rng):
    """Move each Param's kept entries to positions drawn uniformly at random within that Param
    (within each gate's block, for a recurrent layer's: Param.parts): mask <- mask[permutation],
    its count unchanged. The newly kept entries get their initial values (initial: the values
    before pruning), the others exactly 0."""
    for p, w in zip(gated, initial):
        mask = p.mask.copy()
        for _, index in p.parts or [(None, ...)]:
            block = mask[index]  # a view
            order = sm.xp.asarray(rng.permutation(block.size))  # drawn on the host
            block[...] = block.reshape(-1)[order].reshape(block.shape)
        p.mask = mask
        p.value = w * mask


def reinitialise(model, gated, init, rng):
    """Every Param of `model` drawn afresh from rng (snip_min.initialise, with `init`), the masks
    kept: the pruned entries are exactly 0 again."""
    masks = [p.mask for p in gated]
    sm.initialise(model, init, rng, dtype=gated[0].value.dtype if gated else None)
    sm.apply_masks(gated, masks)
