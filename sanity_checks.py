"""The sanity checks of pruning at initialisation: does a method's mask owe its accuracy to
WHICH connections it keeps, or only to HOW MANY each layer keeps?

Frankle, Dziugaite, Roy & Carbin ("Pruning Neural Networks at Initialization: Why Are We
Missing the Mark?", ICLR 2021) and Su et al. ("Sanity-Checking Pruning Methods: Random
Tickets can Win the Jackpot", NeurIPS 2020) altered the masks of SNIP and its successors
in these ways, and found that on their CIFAR and ImageNet networks the accuracy hardly
moved: what the methods decide is mostly each layer's share.

    shuffle         permute each parameter array's kept positions at random: the same
                    count per array (so per layer), new positions
    reinit          keep the mask, but train a fresh initialisation, drawn from another
                    random stream, instead of the weights the mask was chosen on
    invert          keep the kappa LOWEST-scoring connections instead of the highest
    corrupt-data    score on the scoring batch with labels drawn uniformly at random
                    (training uses the true labels); the data-free criteria (random,
                    magnitude, synflow) are untouched by it

What this adds to snip_min.py: `--sanity-check NAME`, applied to the mask any --method
produces, before training; snip_min.prune calls prune() here when the flag is given, and
results.json records the check. Every random draw of a check comes from a fifth stream of
the run's seed (check_stream), beside snip_min.run's four, so that the method's own draws,
and so its mask before the check, are those of the unchecked run. Experiment F
(experiments/sanity_checks.py, docs/sanity_checks.md) runs every check on every criterion;
the tests are tests/test_criteria.py.
"""

import numpy

import criteria
import snip_min as sm

CHECKS = ("shuffle", "reinit", "invert", "corrupt-data")


def check_stream(seed):
    """The sanity checks' random stream for a run's seed: child 4 of the seed's SeedSequence,
    whose children 0-3 are snip_min.run's initialisation, split, scoring and shuffling."""
    return numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(5)[4])


def prune(check, method, model, images, labels, *, sparsity, seed, classes, prune="weights+biases",
          init="vs-h", rng=None, rounds=100, report=None):
    """Gate and prune `model` with `method` (see criteria.prune; rng is its own, for random)
    under the sanity check `check`. seed: the run's (for check_stream), classes: how many
    labels the data has (for corrupt-data), init: the initialisation (for reinit). Returns
    the gated Params."""
    if check not in CHECKS:
        raise sm.UsageError(f"unknown --sanity-check {check!r} (choose from {', '.join(CHECKS)})")
    stream = check_stream(seed)
    if check == "corrupt-data":     # labels uniform over the classes, drawn on the host
        labels = sm.xp.asarray(stream.integers(0, classes, size=len(labels)))
    initial = [p.value for p in sm.prunable_parameters(model, prune)]
    gated = criteria.prune(method, model, images, labels, sparsity, prune, rng, rounds,
                           invert=check == "invert", report=report)
    if check == "shuffle":
        shuffle(gated, initial, stream)
    elif check == "reinit":
        reinitialise(model, gated, init, stream)
    return gated


def shuffle(gated, initial, rng):
    """Move each Param's kept entries to positions drawn uniformly at random within that Param:
    mask <- mask[permutation], its count unchanged. The newly kept entries get their initial
    values (initial: the values before pruning), the others exactly 0."""
    for p, w in zip(gated, initial):
        order = sm.xp.asarray(rng.permutation(p.size))                  # drawn on the host
        p.mask = p.mask.reshape(-1)[order].reshape(p.shape)
        p.value = w * p.mask


def reinitialise(model, gated, init, rng):
    """Every Param of `model` drawn afresh from rng (snip_min.initialise, with `init`), the masks
    kept: the pruned entries are exactly 0 again."""
    masks = [p.mask for p in gated]
    sm.initialise(model, init, rng, dtype=gated[0].value.dtype if gated else None)
    sm.apply_masks(gated, masks)
