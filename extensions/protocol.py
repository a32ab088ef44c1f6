"""Three protocols: snip-min's defaults, the paper's text and the authors' code
(namhoonlee/snip-public, TensorFlow < 1.13), each difference on a flag of its own and all of
them under one switch, so that every gap to the paper can be put down to a measured cause.

    --protocol ours     =  --init vs-h --no-two-draws --momentum 0.9 --no-constant-lr
                           --test-every 0, and the model's --clip-norm (1 for LeNet-5-Caffe,
                           none otherwise: models.ModelInfo.clip_norm)
    --protocol paper    =  the same without clipping (--clip-norm 0), and the paper's schedule
                           (--paper-schedule) unless --iterations or --epochs is given: the
                           paper's text exactly, diverging where it diverges
    --protocol authors  =  --init lecun --two-draws --momentum 0 --constant-lr --test-every 1000
                           --clip-norm 0

A flag given beside --protocol wins over it: `--protocol authors --momentum 0.9` is the
authors' code with the optimiser the paper's text names. The only remedy the default adds
to the paper's text is LeNet-5-Caffe's clipping: under the paper's settings it diverges in
its first 20 iterations at every sparsity below 98% (Experiment I, experiments/defaults.py;
docs/choices.md). The pieces of the authors' code:

    --init lecun      tf.variance_scaling_initializer() with its defaults, what the code calls
                      'vs': N(0, 1 / fan_in) truncated at two standard deviations, corrected
                      for the truncation (snip_min.draw_weight)
    --two-draws       the code keeps two copies of the parameters. It scores on one
                      (`weights_bp`), whose biases are drawn like its weights (TensorFlow sees
                      a bias of n entries as fan_in = fan_out = n), so a few biases score above
                      zero and may be kept; and it trains another (`weights_ap`), drawn afresh
                      with zero biases, under the mask found on the first. Here the training
                      copy comes from a sixth random stream of the seed (training_copy_stream).
    --momentum 0      plain gradient descent, the code's `--optimizer sgd` (momentum 0.9 is
                      its `--optimizer momentum`, and the paper's text)
    --constant-lr     the learning rate held at --lr throughout, the code's
                      `--lr_decay_type constant` (the paper's text: x0.1 every 25,000 iterations)
    --test-every N    the test error every N iterations (the code checkpoints every 1,000),
                      and, beside the final test error (never instead of it), the figure the
                      authors report: the best test error among the last five of these

The learning rate 0.1 and the weight decay (the code's 0.00025 * sum(w^2) in the loss is our
--weight-decay 0.0005) are the same under both protocols. Both standardise the pixels by the
training set's mean and standard deviation.

What this adds to snip_min.py: add_arguments and resolve (called by its parse_arguments),
draw_scoring_biases and draw_training_copy (called by run around the pruning when
--two-draws is on), PeriodicTestError (fit's on_step callback for --test-every) and results
(the fields it adds to results.json). docs/protocol.md says what each piece does to the
LeNets, measured; experiments/protocol_ablation.py is the grid behind it; the tests are
tests/test_protocol.py.
"""

import argparse

import numpy

import models
import snip_min as sm
from extensions import flags, sanity

MODELS_OWN = "the model's"  # --clip-norm under --protocol ours: models.ModelInfo.clip_norm
PROTOCOLS = {
    "ours": {
        "init": "vs-h",
        "two_draws": False,
        "momentum": 0.9,
        "constant_lr": False,
        "test_every": 0,
        "clip_norm": MODELS_OWN,
    },
    "paper": {
        "init": "vs-h",
        "two_draws": False,
        "momentum": 0.9,
        "constant_lr": False,
        "test_every": 0,
        "clip_norm": 0.0,
    },
    "authors": {
        "init": "lecun",
        "two_draws": True,
        "momentum": 0.0,
        "constant_lr": True,
        "test_every": 1000,
        "clip_norm": 0.0,
    },
}
LAST_CHECKPOINTS = 5  # the authors report the best test error among the last five checkpoints


def add_arguments(parser):
    """--protocol and the pieces of it that snip_min.py has no other flag for, in a group of
    their own."""
    parser = parser.add_argument_group("the authors' protocol (protocol.py)")
    parser.add_argument(
        "--protocol",
        default="ours",
        choices=sorted(PROTOCOLS),
        help="the defaults of --init, --two-draws, --momentum, --constant-lr, --test-every "
        "and --clip-norm: ours (vs-h, one draw, momentum 0.9, step decay, no test "
        "checkpoints, the model's clipping: norm 1 for LeNet-5-Caffe), the paper's text "
        "(ours without clipping, and the paper's schedule unless --iterations or --epochs is "
        "given) or the authors' code's (lecun, two draws, momentum 0, constant learning rate, "
        "test error every 1,000 iterations, no clipping); a flag given beside it wins "
        "(protocol.py)",
    )
    parser.add_argument(
        "--two-draws",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score on one initialisation (biases drawn like the weights) and train a "
        "fresh one (biases 0) under its mask, as the authors' code does (default: "
        "off; on with --protocol authors)",
    )
    parser.add_argument(
        "--constant-lr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the learning rate at --lr throughout: no decays, whatever --decay-every "
        "says (default: off; on with --protocol authors)",
    )
    parser.add_argument(
        "--test-every",
        type=flags.non_negative_int,
        default=None,
        metavar="N",
        help="measure the test error every N iterations and report, beside the final "
        "one, the best of the last five, the authors' figure (default: 0, never; "
        "1,000 with --protocol authors)",
    )


REINIT_WITH_TWO_DRAWS = (
    "--two-draws already trains a fresh initialisation under the mask; --sanity-check "
    "reinit would draw a third: leave one out"
)


def resolve(args, parser):
    """Fill in every protocol flag left out with its protocol's value; refuse what contradicts.
    --clip-norm ends as a number, or None for no clipping (a given 0)."""
    for key, value in PROTOCOLS[args.protocol].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.clip_norm_is_models = args.clip_norm == MODELS_OWN  # (departure_line says so)
    if args.clip_norm_is_models:
        args.clip_norm = models.MODELS[args.model].clip_norm
    args.clip_norm = args.clip_norm or None  # 0: no clipping
    if args.protocol == "paper" and args.iterations is None and args.epochs is None:
        args.paper_schedule = True
    if args.two_draws and args.sanity_check == "reinit":
        parser.error(f"{REINIT_WITH_TWO_DRAWS} (--no-two-draws with --protocol authors)")


# --- two draws: score on one copy of the parameters, train another --------------------------------


def training_copy_stream(seed):
    """The random stream of the training copy of --two-draws: child 5 of the seed's
    SeedSequence (0-3 are snip_min.seed_streams', 4 the sanity checks'), so that the scoring
    copy's weights are those of the run without --two-draws (its biases are drawn too, so its
    mask may differ)."""
    return numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(6)[5])


def draw_scoring_biases(model, init, rng):
    """The authors' scoring copy: every bias of `model` drawn as a weight is by `init`
    (TensorFlow's initialisers see a bias of n entries as fan_in = fan_out = n; for lecun,
    N(0, 1 / n) truncated), after the weights, from the same stream."""
    for p in sm.parameters_of(model):
        if p.kind == "bias":
            p.value = sm.xp.asarray(sm.draw_weight(p.shape, init, rng), dtype=p.value.dtype)


def draw_training_copy(model, gated, init, seed, log):
    """The authors' training copy: every parameter of `model` drawn afresh (biases 0) from
    training_copy_stream(seed), under the masks of `gated` (pruned entries exactly 0)."""
    sanity.reinitialise(model, gated, init, training_copy_stream(seed))
    log(
        f"two draws: the mask found on the scoring copy is applied to a fresh {init} draw "
        f"with zero biases, which is trained"
    )


# --- the authors' figure: the best test error among the last five checkpoints -------------


class PeriodicTestError:
    """fit's on_step callback for --test-every N: every N iterations, the test error of the
    network being trained, appended to `records` as [iteration, error] (the command line
    saves them with every checkpoint, so that --resume keeps them). It waits for the device
    once per N steps, as the validation after each epoch does."""

    def __init__(self, network, test, every, records, batch_size):
        self.network, self.test, self.every, self.records = network, test, every, records
        self.batch_size = batch_size  # the evaluation's, as for the final test error

    def __call__(self, iteration, loss):
        if iteration % self.every == 0:
            error = sm.evaluate(self.network, self.test, self.batch_size)[1]
            self.records.append([iteration, error])


def periodic_test_error(network, test, every, records, batch_size):
    """fit's on_step for --test-every, appending to `records` (None without the flag),
    evaluating in batches of at most batch_size (the run's)."""
    return PeriodicTestError(network, test, every, records, batch_size) if every else None


def best_of_last(records, count=LAST_CHECKPOINTS):
    """The lowest test error among the last `count` [iteration, error] records (None if
    none)."""
    last = records[-count:]
    return min(error for _, error in last) if last else None


def departures(args):
    """The remedies in effect that the paper's text does not use, clipping and warm-up, each
    as given on a command line ("--clip-norm 1", "--warmup 500"): what the line above the
    pruning table and results.json ("departs_from_paper") name. (The authors' protocol's
    pieces are named by "protocol" itself, the other flags by their own keys.)"""
    flags_in_effect = []
    if args.clip_norm:
        flags_in_effect.append(f"--clip-norm {args.clip_norm:g}")
    if args.warmup:
        flags_in_effect.append(f"--warmup {args.warmup}")
    return flags_in_effect


def departure_line(args):
    """The line above the pruning table when the run uses a remedy the paper does not (None
    if it does not): which, and why where the model's default chose it."""
    flags_in_effect = departures(args)
    if not flags_in_effect:
        return None
    if getattr(args, "clip_norm_is_models", False) and args.clip_norm:
        title = models.MODELS[args.model].title
        flags_in_effect[0] += (
            f", {title}'s default (under the paper's settings it diverges at sparsities below "
            f"98%: docs/choices.md; --clip-norm 0 turns it off)"
        )
    return f"departs from the paper's text: {'; '.join(flags_in_effect)}"


def results(args, test_errors, test_error, log):
    """The fields protocol.py adds to results.json (test_errors: the [iteration, error]
    records of --test-every), and the authors' figure in the log."""
    fields = {
        "protocol": args.protocol,
        "departs_from_paper": departures(args),
        "two_draws": args.two_draws,
        "constant_lr": args.constant_lr,
        "test_every": args.test_every,
        "train_images": args.train_images,
    }
    if args.test_every:
        best = best_of_last(test_errors)
        fields.update(test_checkpoints=test_errors, best_of_last_five=best)
        if test_errors:
            first, last = test_errors[-LAST_CHECKPOINTS:][0][0], test_errors[-1][0]
            log(
                f"the authors' figure: best test error of the checkpoints at iterations "
                f"{first:,}-{last:,}: {best:.2f}% (final: {test_error:.2f}%)"
            )
    return fields
