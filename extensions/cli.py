"""The command line: `python snip_min.py --model lenet5 --sparsity 0.99` runs main() here.

    run                 the whole program: data -> SNIP (or --method) -> training -> test error
    prune_at_initialisation   the pruning in it, as --method and --sanity-check say
    parse_arguments     the flags (their types: flags.py), and what they may not be given with
    main, explain       every failure as one line on stderr and an exit status (the mapping
                        of failures.py, which every script shares)

This module is the top floor: it calls the method (snip_min.py), the networks (models.py),
the data (data.py) and every extension beside it in this folder: compaction (--compact),
checkpoints (--resume, Ctrl-C), criteria (--method), sanity (--sanity-check) and protocol
(--protocol). Nothing imports it but snip_min.py's main block, scripts and tests.
"""

import argparse
import io
import json
import math
import os
import sys
import time

import numpy

import data
import models
import snip_min as sm
from extensions import (
    checkpoints,
    compaction,
    criteria,
    failures,
    flags,
    network_file,
    protocol,
    sanity,
)

# The paper's set-up per dataset: batch size, and its schedule (lr x0.1 every `decay_every`
# iterations; the total is not stated for MNIST: 100k covers three decays).
PAPER_SETUP = {
    "mnist": {"batch_size": 100, "iterations": 100_000, "decay_every": 25_000},
    "fashion-mnist": {"batch_size": 100, "iterations": 100_000, "decay_every": 25_000},  # as MNIST
    "cifar10": {"batch_size": 128, "iterations": 150_000, "decay_every": 30_000},
    "tiny-imagenet": {"batch_size": 128, "iterations": 150_000, "decay_every": 30_000},
}


RESULTS_FILE, MASKS_FILE = "results.json", network_file.MASKS_FILE
# What a run writes in its folder (--out; checkpoints without it go to snip-min-MODEL-seedSEED/).
# A run refuses to start in a folder that holds any of them (check_output_folder).
RUN_FILES = (RESULTS_FILE, MASKS_FILE, network_file.NETWORK_FILE, checkpoints.CHECKPOINT_FILE)


def run(args, log=print):
    """Everything the command does, from data to test error. Returns the results dict."""
    saved = resume_settings(args) if args.resume else None  # --resume: the run's own settings
    earlier = set_up_device_and_folders(args)  # an earlier run's files, to replace (--overwrite)
    dataset_name = args.dataset = args.dataset or models.MODELS[args.model].dataset  # resolved
    model = models.build(args.model, dataset_name)  # checks the pair before any download
    if args.compact:
        compaction.chain_of(model)  # UsageError unless it can be compacted exactly
    augment = augmentation(args, dataset_name)  # likewise
    if not args.mask:  # (a given mask keeps what it keeps)
        check_connections_kept(model, args.sparsity, args.prune, args.model)  # kappa > 0
    elif saved is None:  # --mask: checked against the model before any download
        given = network_file.read_masks(args.mask, model, args.prune)
    dataset = load_data(args, dataset_name)
    if args.train_images:
        dataset = data.first_training_images(dataset, args.train_images)
    fingerprint = data.fingerprint(dataset)  # the data a checkpoint proves it had
    batch_size = args.batch_size or PAPER_SETUP[dataset_name]["batch_size"]

    init_rng, split_rng, score_rng, shuffle_rng = sm.seed_streams(args.seed)
    train, validation, test = sm.split_dataset(dataset, args.val_fraction, split_rng)
    train.augment = augment
    args.batch_size = batch_size  # resolved, for the checkpoint and error messages
    if len(train) < batch_size:
        raise sm.UsageError(
            f"--batch-size {batch_size} is larger than the {len(train):,} "
            f"training images left after the validation split"
        )
    iterations, boundaries = training_schedule(args, dataset_name, -(-len(train) // batch_size))
    check_test_every(args.test_every, iterations)
    augmented = "" if augment is None else f"; augmented: {augment.describe()}"
    log(
        f"data: {dataset.description}; {len(train):,} for training, {len(validation):,} for "
        f"validation, {len(test):,} for testing{augmented}"
    )

    # Algorithm 1: initialise, score one mini-batch, keep the top kappa, train with c fixed.
    sm.initialise(model, args.init, init_rng)
    if saved is None and args.mask:  # --mask: a given mask instead of scoring one
        gated, snip_seconds = given_mask(model, given, args, log)
        state, test_errors = sm.TrainingState(shuffle_rng), []
    elif saved is None:
        if args.two_draws:  # the authors' scoring copy: biases drawn too
            protocol.draw_scoring_biases(model, args.init, init_rng)
        images, labels = train.batch(
            sm.xp.asarray(score_rng.choice(len(train), size=batch_size, replace=False))
        )
        gated, snip_seconds = prune_at_initialisation(model, images, labels, args, score_rng, log)
        if args.two_draws:  # ... and a fresh copy is trained under the mask
            protocol.draw_training_copy(model, gated, args.init, args.seed, log)
        state, test_errors = sm.TrainingState(shuffle_rng), []
    else:  # the saved run's mask, weights and position, once its data is proven to be this
        gated, snip_seconds, state, test_errors = checkpoints.restore(
            saved, model, args, len(train), fingerprint, log
        )
        if args.lr_changes and args.lr_changes[-1]["iteration"] == state.iteration:
            change, at = args.lr_changes[-1], state.iteration
            old, new = (
                sm.learning_rate(at, base, boundaries, warmup=args.warmup)
                for base in (change["from"], change["to"])
            )
            log(
                f"learning rate {old:g} -> {new:g} from iteration {at:,} on (the base rate "
                f"{change['from']:g} -> {change['to']:g}, given with --resume, with the decays "
                f"so far; results.json records it in lr_changes)"
            )
    rows = sm.pruning_table(model, table_kinds(args.model))
    input_shape = models.INPUT_SHAPE[dataset_name]
    alive = compaction.alive_summary(model, input_shape)  # the units left an input and an output
    departure = protocol.departure_line(args)  # a remedy the paper's text does not use
    if departure:
        log(departure)
    log(format_table(rows, alive))

    # --compact trains the smaller dense network the mask leaves (compaction.py), the same
    # function and the same trajectory; `model` keeps the full shapes for what is written
    network, compact = model, None
    if args.compact:
        compact = compaction.compact(model, input_shape)
        network = compact.network
        before = compaction.multiply_adds(model, input_shape)
        after = compaction.multiply_adds(network, input_shape)
        log(
            f"compact: trains the network SNIP kept, {before:,} -> {after:,} multiply-adds per "
            f"image (dense shapes)"
        )
    optimiser = sm.SGD(sm.parameters_of(network), args.momentum, args.weight_decay)
    if saved is not None:
        checkpoints.restore_velocities(saved, optimiser, compact)
    settings = {  # what results.json says of the run before it trains
        "model": args.model,
        "dataset": dataset_name,
        "data": dataset.description,
        "sparsity": args.sparsity,
        "method": args.method,
        "mask": args.mask_origin,
        "sanity_check": args.sanity_check,
        "rounds": args.rounds if args.method in criteria.ITERATIVE else None,
        "prune": args.prune,
        "init": args.init,
        "seed": args.seed,
        "device": args.device,
        "params_total": sum(r[1] for r in rows),
        "params_kept": sum(r[2] for r in rows),
        "per_layer": [{"name": name, "total": total, "kept": kept} for name, total, kept in rows],
        "alive_units": {
            name: {"alive": a, "total": t} for name, (a, t) in alive.items() if name != "input"
        },
        "input_read": {"read": alive["input"][0], "total": alive["input"][1]},
        "compact": args.compact,
    }
    schedule = {
        "iterations": iterations,
        "batch_size": batch_size,
        "lr": args.lr_changes[0]["from"] if args.lr_changes else args.lr,  # the initial rate
        "lr_boundaries": boundaries,
        "lr_changes": args.lr_changes,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "clip_norm": args.clip_norm,
        "warmup": args.warmup,
        "augment": augment._asdict() if augment is not None else None,
        "snip_seconds": snip_seconds,
    }
    replace_earlier_run(args, earlier, log)  # --overwrite: the earlier files go, training starts
    saver = checkpoints.Saver(
        run_folder(args),
        model,
        gated,
        optimiser,
        args,
        snip_seconds,
        compact,
        resumed=saved,
        test_errors=test_errors,
        fingerprint=fingerprint,
        iterations=iterations,
    )
    try:
        with saver.naming_failures():
            with checkpoints.stop_on_signals():
                sm.fit(
                    network,
                    optimiser,
                    train,
                    validation,
                    state,
                    iterations=iterations,
                    batch_size=batch_size,
                    base_lr=args.lr,
                    boundaries=boundaries,
                    log=log,
                    checkpoint=saver,
                    checkpoint_every=args.checkpoint_every,
                    clip_norm=args.clip_norm,
                    warmup=args.warmup,
                    on_step=protocol.periodic_test_error(
                        network, test, args.test_every, test_errors, batch_size
                    ),
                )
            saver.finish(state)  # the trained values into `model` (and, if asked, a checkpoint)
            return finish_run(
                args, model, test, state, settings, schedule, test_errors, gated, log, dataset
            )
    except checkpoints.DivergedRun as error:  # what it did up to there is kept
        if args.out:
            record = diverged_results(args, settings, schedule, state, error, test_errors)
            save_masks(args.out, gated)
            save_json(os.path.join(args.out, RESULTS_FILE), record)
            log(
                f"wrote {os.path.join(args.out, RESULTS_FILE)} (diverged) and {MASKS_FILE}; "
                f"no {network_file.NETWORK_FILE}: a diverged network is not kept"
            )
        raise


def finish_run(args, model, test, state, settings, schedule, test_errors, gated, log, dataset):
    """After training: the trained network and its masks written to --out (first, so that a
    failure while testing loses no training), the test error, logged, and the results dict
    (written to --out too)."""
    if args.out:
        save_masks(args.out, gated)
        kept = {key: {**settings, **schedule}[key] for key in NETWORK_RESULTS}
        path = os.path.join(args.out, network_file.NETWORK_FILE)
        network_file.write_network(path, model, args.model, dataset, gated, kept)
    test_loss, test_error = sm.evaluate(model, test, schedule["batch_size"])
    log(
        f"test error: {test_error:.2f}% (loss {test_loss:.4f}) - {args.model} at sparsity "
        f"{sparsity_text(args.sparsity)}, {settings['data']}"
    )
    results = {
        **settings,
        "diverged": False,
        "test_error": test_error,
        "test_loss": test_loss,
        "val_error": state.history[-1].get("val_error"),
        "epochs": len(state.history),
        **schedule,
        "train_seconds": state.train_seconds,
        "train_images_per_second": state.images_trained / max(state.train_seconds, 1e-9),
        "history": state.history,
        **protocol.results(args, test_errors, test_error, log),
    }
    if args.out:
        save_json(os.path.join(args.out, RESULTS_FILE), results)
        log(
            f"wrote {os.path.join(args.out, RESULTS_FILE)}, {MASKS_FILE} and "
            f"{network_file.NETWORK_FILE}"
        )
    return results


# The settings of a run that network.npz keeps with the network (--evaluate uses batch_size).
NETWORK_RESULTS = ("data", "sparsity", "seed", "method", "mask", "batch_size")


def diverged_results(args, settings, schedule, state, error, test_errors):
    """results.json of a run whose training diverged: its settings, "diverged": true, the
    iteration it was found at, fit's words, and the history (and --test-every's records, with
    the best of the last five measured) up to it; no test error."""
    return {
        **settings,
        "diverged": True,
        "diverged_at_iteration": state.iteration,
        "divergence": error.reason,
        "last_good_checkpoint": error.last,
        "test_error": None,
        "test_loss": None,
        "val_error": state.history[-1].get("val_error") if state.history else None,
        "epochs": len(state.history),
        **schedule,
        "train_seconds": state.train_seconds,
        "history": state.history,
        **protocol.results(args, test_errors, math.nan, log=lambda line: None),
    }


def given_mask(model, given, args, log):
    """--mask FILE: `model`'s prunable Params (--prune) gated with the masks of FILE, a
    masks.npz or network.npz, as network_file.read_masks checked them against the model
    (given: its (masks, sha256)). Returns (the gated Params, 0 seconds of scoring); records
    where the mask came from in args.mask_origin and the sparsity it has in args.sparsity.
    A mask that keeps nothing is refused; one that disconnects a layer is warned about, or
    refused with --strict, as a scored one is (check_masks)."""
    masks, digest = given
    kept, total = sum(int(mask.sum()) for mask in masks), sum(mask.size for mask in masks)
    if kept == 0:
        raise sm.UsageError(f"--mask {args.mask} keeps no connection: there is nothing to train")
    gated = sm.prunable_parameters(model, args.prune)
    dtype = gated[0].value.dtype
    sm.apply_masks(gated, [sm.xp.asarray(mask, dtype=dtype) for mask in masks])
    args.sparsity = 1 - kept / total
    args.mask_origin = {"file": args.mask, "sha256": digest}
    check_connected(gated, args, remedy=f"the mask {args.mask} is the problem")
    log(
        f"mask: {args.mask} (sha256 {digest[:12]}), given: {kept:,} of {total:,} connections "
        f"kept, sparsity {sparsity_text(args.sparsity)}; {args.init} initialisation, seed "
        f"{args.seed}, gates on {args.prune}"
    )
    return gated, 0.0


def resume_settings(args):
    """--resume DIR: the checked contents of DIR's checkpoint, with `args` turned (in place)
    into the saved run's settings, keeping the RESUMABLE_FLAGS and CHANGEABLE_ON_RESUME given
    anew (parse_arguments has refused every other flag next to --resume). A new --lr is
    recorded in args.lr_changes, which results.json carries as lr_changes."""
    args.resume = resume_folder(args.resume)
    contents = checkpoints.read_checkpoint(os.path.join(args.resume, checkpoints.CHECKPOINT_FILE))
    # a flag a checkpoint predates takes its value from then: a run without --clip-norm (no
    # clipping), not today's default for --model lenet5 that parse_arguments([]) resolves
    defaults = {**vars(parse_arguments([])), "clip_norm": None}
    given = {
        key: getattr(args, key)
        for key in RESUMABLE_FLAGS + CHANGEABLE_ON_RESUME
        if getattr(args, key) not in (None, False)
    }
    vars(args).update({**defaults, **contents["args"], **given})
    args.out = given.get("out") or args.resume  # where the checkpoint is now, not where it was
    args.debug, args.overwrite = given.get("debug", False), given.get("overwrite", False)
    saved_lr = contents["args"].get("lr")
    if "lr" in given and given["lr"] != saved_lr:
        at, total = contents["state"]["iteration"], contents["iterations"]
        if total is not None and at >= total:
            raise sm.UsageError(
                f"--lr {args.lr:g}: the run in {args.resume} has finished its {total:,} "
                f"iterations, so a new learning rate would change nothing"
            )
        change = {"iteration": at, "from": saved_lr, "to": args.lr}
        args.lr_changes = [*args.lr_changes, change]
    return contents


def resume_folder(path):
    """--resume's folder: the path given, or the folder of the checkpoint.npz it names (a
    file of another name is refused: --resume takes a run's folder)."""
    if os.path.isfile(path):
        if os.path.basename(path) != checkpoints.CHECKPOINT_FILE:
            raise sm.UsageError(
                f"--resume {path} is a file; --resume takes the folder of a run, the one that "
                f"holds its {checkpoints.CHECKPOINT_FILE}"
            )
        return os.path.dirname(path) or "."
    return path


def prune_at_initialisation(model, images, labels, args, rng, log):
    """Gate and prune `model` once, on the scoring batch, as --method says: SNIP, the random
    baseline (which draws from rng) or a criterion of criteria.py, altered by --sanity-check
    (sanity.py) if it is given. Returns (the gated Params, seconds taken)."""
    # one untimed pass first: it compiles CuPy's kernels (and starts thread and memory pools
    # anywhere), so that the time below is SNIP's own (another criterion's float64 kernels
    # still compile within its time on a GPU)
    sm.connection_sensitivity(model, images, labels, sm.prunable_parameters(model, args.prune))
    sm.synchronise()
    started = time.perf_counter()
    report = {}
    if args.sanity_check is not None:
        gated = sanity.prune_checked(
            args.sanity_check,
            args.method,
            model,
            images,
            labels,
            sparsity=args.sparsity,
            seed=args.seed,
            init=args.init,
            scope=args.prune,
            rng=rng,
            rounds=args.rounds,
            classes=models.NUM_CLASSES[args.dataset],
            report=report,
        )
    elif args.method == "snip":
        gated = sm.snip(model, images, labels, args.sparsity, args.prune, report)
    elif args.method == "random":
        gated = sm.random_pruning(model, args.sparsity, rng, args.prune, report)
    else:
        gated = criteria.prune_by(
            args.method,
            model,
            images,
            labels,
            args.sparsity,
            args.prune,
            rounds=args.rounds,
            report=report,
        )
    sm.synchronise()
    seconds = time.perf_counter() - started
    if args.method == "random":
        reads = ""
    elif args.method in criteria.DATA_FREE:
        reads = f", in {seconds:.2f} s"
    else:
        reads = f", scored on {len(labels)} images in {seconds:.2f} s"
    check = "" if args.sanity_check is None else f", sanity check: {args.sanity_check}"
    log(
        f"{criteria.DESCRIPTIONS[args.method]}: {args.model}, sparsity "
        f"{sparsity_text(args.sparsity)}{reads}, "
        f"{args.init} initialisation, gates on {args.prune}{check}"
    )
    check_masks(gated, report, args)
    return gated, seconds


def check_masks(gated, report, args):
    """Say when SNIP's choice is degenerate: kappa beyond the non-zero scores (reported), or
    a layer left without a single connection (check_connected)."""
    if report["nonzero_scores"] < report["kappa"] < report["m"]:
        print(
            f"note: only {report['nonzero_scores']:,} connections score above zero; the other "
            f"{report['kappa'] - report['nonzero_scores']:,} of the kappa = {report['kappa']:,} "
            f"kept were chosen among zero scores by position (lowest index first)",
            file=sys.stderr,
        )
    check_connected(gated, args)


def check_connected(gated, args, remedy="lower --sparsity"):
    """A warning (an error with --strict) when the mask leaves some layer without a single
    connection: the network is disconnected and cannot learn."""
    weights = [p for p in gated if p.kind == "weight"]
    any_kept = sm.host_values(*(p.mask.any() for p in weights))  # one wait for the device
    empty = [p.name for p, kept in zip(weights, any_kept) if not kept]
    if empty:
        message = (
            f"at sparsity {sparsity_text(args.sparsity)} the mask keeps no connection in "
            f"{', '.join(empty)}: the network is disconnected and cannot learn; {remedy}"
        )
        if args.strict:
            raise sm.UsageError(message)
        print(f"warning: {message}", file=sys.stderr)


def sparsity_text(sparsity):
    """A sparsity as the messages print it: its shortest form that reads back as the same
    number (0.9, 0.99, 0.9999999), never one rounded to another number (format's :g prints
    0.9999999 as 1)."""
    short = f"{sparsity:g}"
    return short if float(short) == sparsity else repr(float(sparsity))


def check_connections_kept(model, sparsity, scope, model_name):
    """Refuse (UsageError) a sparsity that keeps no connection at all: kappa =
    round((1 - sparsity) m) = 0 of the m gated entries of `model` (built, its values not yet
    drawn) would leave nothing to train. The message names the highest sparsity that keeps
    one, written so that it does."""
    m = sum(p.size for p in sm.prunable_parameters(model, scope))
    if sm.kappa_for(sparsity, m) > 0:
        return
    for digits in range(2, 18):  # the fewest digits that still keep a connection
        highest = f"{1 - 1 / m:.{digits}f}"
        if float(highest) < 1 and sm.kappa_for(float(highest), m) >= 1:
            break
    raise sm.UsageError(
        f"--sparsity {sparsity_text(sparsity)} keeps kappa = round((1 - "
        f"{sparsity_text(sparsity)}) x {m:,}) = 0 of {model_name}'s {m:,} connections: there "
        f"would be no network to train; a sparsity of at most {highest} keeps one"
    )


def check_test_every(test_every, iterations):
    """Say on stderr when --test-every cannot give what it promises: no test error along the
    way (N beyond the run's iterations), or a best of the last five taken from fewer."""
    if not test_every:
        return
    measured = iterations // test_every
    if measured == 0:
        print(
            f"warning: --test-every {test_every:,} is more than the run's {iterations:,} "
            f"iterations: no test error is measured along the way and best_of_last_five "
            f"stays null; choose --test-every {iterations:,} or less",
            file=sys.stderr,
        )
    elif measured < protocol.LAST_CHECKPOINTS:
        print(
            f"note: --test-every {test_every:,} measures the test error {measured} "
            f"time{'s' if measured > 1 else ''} in the run's {iterations:,} iterations: the "
            f"best of the last {protocol.LAST_CHECKPOINTS} is the best of {measured}",
            file=sys.stderr,
        )


def table_kinds(model_name):
    """The kinds of Param the pruning table counts: conv/linear (and recurrent) weights and
    biases, and for a model whose published count includes them, batch norm's scales and
    shifts (never gated)."""
    batch_norm = ("scale", "shift") if models.MODELS[model_name].counts_batch_norm else ()
    return ("weight", "bias") + batch_norm


def format_table(rows, alive):
    """The pruning table with a column of alive units (compaction.alive_summary) and a line
    saying how many input entries the network reads."""
    units = {name: f"{a:>5,} of {total:,}" for name, (a, total) in alive.items() if name != "input"}
    read, entries = alive["input"]
    return (
        sm.format_pruning_table(rows, ("alive units", units))
        + f"\ninput entries read: {read:,} of {entries:,}; a unit is alive when it has an input "
        f"and an output (see compaction.alive_units)"
    )


def training_schedule(args, dataset_name, steps_per_epoch):
    """(iterations, learning-rate boundaries) from the flags, the dataset and the model."""
    setup, model_iterations = PAPER_SETUP[dataset_name], models.MODELS[args.model].iterations
    if args.epochs or (model_iterations and not (args.iterations or args.paper_schedule)):
        iterations = args.epochs * steps_per_epoch if args.epochs else model_iterations
        boundaries = [iterations // 2, 3 * iterations // 4]
    else:
        iterations = args.iterations or setup["iterations"]
        every = args.decay_every or setup["decay_every"]
        boundaries = list(range(every, iterations, every))
    return iterations, [] if args.constant_lr else boundaries


def augmentation(args, dataset_name):
    """The data.Augmentation of the training images that the flags ask for (None: none)."""
    authors = data.AUTHORS_AUGMENTATION[dataset_name]
    if args.no_augment:
        return None
    if args.translate is None:
        return authors
    height, width = models.INPUT_SHAPE[dataset_name][:2]
    if args.translate >= min(height, width):
        raise sm.UsageError(
            f"--translate {args.translate}: a move must be smaller than the images "
            f"({height}x{width} pixels on {dataset_name})"
        )
    flip = authors is not None and authors.flip  # where the authors flip: never digits
    if not flip and args.translate == 0:
        return None
    return data.Augmentation(flip=flip, max_shift=args.translate)


def save_masks(folder, gated):
    """masks.npz: one boolean array per gated Param, by name, written atomically."""
    buffer = io.BytesIO()
    numpy.savez_compressed(buffer, **network_file.masks_by_name(gated))
    data.write_file_atomically(os.path.join(folder, MASKS_FILE), buffer.getvalue())


def save_json(path, results):
    """results.json, written atomically."""
    data.write_file_atomically(path, json.dumps(results, indent=2).encode())


def set_up_device_and_folders(args):
    """Choose the device, and check the folders to read from and write to before any work
    (fail now, not after hours of training). Returns the files of an earlier run in the
    output folder that --overwrite replaces (check_output_folder)."""
    if args.device is not None:  # else: stay on the backend already chosen
        sm.use_device(args.device)
    args.device = sm.current_device()
    for folder, flag in ((args.data_dir, "--data-dir"), (args.out, "--out")):
        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            raise sm.UsageError(f"{flag} {folder} is a file, not a folder")
    earlier = check_output_folder(args)
    if args.out:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as error:
            raise sm.UsageError(
                f"--out {args.out}: cannot create the folder ({error.strerror})"
            ) from None
        if not os.access(args.out, os.W_OK):
            raise sm.UsageError(f"--out {args.out}: the folder is not writable")
    return earlier


def run_folder(args):
    """The folder a run writes into: --out, or snip-min-MODEL-seedSEED/ for its checkpoints."""
    return args.out or f"snip-min-{args.model}-seed{args.seed}"


def check_output_folder(args):
    """Refuse, before any work, a run whose folder (run_folder) already holds an earlier run's
    files (RUN_FILES), saying what is there and the ways on: --resume it, replace it with
    --overwrite, or another folder. A resumed run may of course write into the folder it
    resumes. Returns the files that --overwrite will replace (replace_earlier_run)."""
    folder = run_folder(args)
    if args.resume and os.path.realpath(folder) == os.path.realpath(args.resume):
        return []
    found = [name for name in RUN_FILES if os.path.isfile(os.path.join(folder, name))]
    replaced = {os.path.realpath(os.path.join(folder, name)) for name in found}
    if args.overwrite and args.mask and os.path.realpath(args.mask) in replaced:
        raise sm.UsageError(
            f"--overwrite would replace {args.mask}, the mask this run trains: copy it "
            f"elsewhere first, or write the run elsewhere with --out DIR"
        )
    if not found or args.overwrite:
        return found
    summaries, resumable = earlier_run(folder, found)
    place = f"--out {folder}" if args.out else f"{folder} (where a run without --out saves)"
    ways = ["replace it with --overwrite", "write elsewhere with --out DIR"]
    if resumable and not args.resume:
        ways.insert(0, f"continue it with --resume {folder}")
    raise sm.UsageError(
        f"{place} already holds a run ({'; '.join(summaries)}): {', '.join(ways[:-1])}, or "
        f"{ways[-1]}"
    )


def earlier_run(folder, found):
    """What an earlier run left in `folder` (found: its RUN_FILES there), a few words a file,
    and whether its checkpoint can be continued (it is readable and not at its end)."""
    summaries, resumable = [], False
    for name in found:
        path = os.path.join(folder, name)
        if name == checkpoints.CHECKPOINT_FILE:
            saved = checkpoints.checkpoint_summary(path)
            if saved is None:
                summaries.append(f"{name}: damaged")
                continue
            total = saved["iterations"]
            resumable = total is None or saved["iteration"] < total
            where = (
                f"stopped at iteration {saved['iteration']:,}{f' of {total:,}' if total else ''}"
                if resumable
                else f"finished, at iteration {saved['iteration']:,}"
            )
            summaries.append(f"{name}: {saved['model']}, seed {saved['seed']}, {where}")
        elif name == RESULTS_FILE:
            summaries.append(f"{name}: {results_summary(path)}")
        else:
            summaries.append(name)
    return summaries, resumable


def results_summary(path):
    """A results.json in a few words: model, seed, and the test error or the divergence."""
    try:
        with open(path, "rb") as file:
            results = json.loads(file.read().decode())
        who = f"{results['model']}, seed {results['seed']}"
        if results.get("diverged"):
            return f"{who}, diverged at iteration {results['diverged_at_iteration']:,}"
        return f"{who}, test error {results['test_error']:.2f}%"
    except Exception:  # unreadable or of another shape: it is still a run's file
        return "unreadable"


def replace_earlier_run(args, found, log):
    """--overwrite: remove the earlier run's files (found by check_output_folder) from the
    run's folder, once every check has passed and training is about to start."""
    if not found:
        return
    folder = run_folder(args)
    for name in found:
        os.remove(os.path.join(folder, name))
    log(f"--overwrite: removed the earlier run's {', '.join(found)} from {folder}")


def load_data(args, dataset_name):
    """The dataset, as data.load_dataset gives it; a failure with a --data-dir that did not
    exist before this run says so (a misspelt name?)."""
    existed = args.data_dir is None or os.path.isdir(args.data_dir)
    try:
        return data.load_dataset(dataset_name, args.data_dir, download=not args.no_download)
    except data.DataError as error:
        if existed:
            raise
        raise data.DataError(
            f"{error}; --data-dir {args.data_dir} did not exist before this run: is it spelt right?"
        ) from None


# --- the flags (their types: flags.py), and one line for every failure ---------------------

# The flags a resumed run may be given anew: where it reads data, runs and writes, not what it
# computes ...
RESUMABLE_FLAGS = (
    "data_dir",
    "device",
    "out",
    "checkpoint_every",
    "no_download",
    "debug",
    "overwrite",
    "resume",
)
# ... and the one setting it may change, for a run that diverged: the learning rate from the
# checkpoint's iteration on (recorded in results.json as lr_changes).
CHANGEABLE_ON_RESUME = ("lr",)
DEFAULT_LR = 0.1


def parse_arguments(argv=None):
    parser = flags.OneLineParser(
        prog="snip_min.py",
        description="Prune a network once at initialisation with SNIP, train it, report its "
        "test error.",
        formatter_class=flags.HelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="lenet5",
        choices=sorted(models.MODELS),
        help="architecture (see models.py)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        choices=sorted(data.LOADERS),
        help="dataset; default: the model's own",
    )
    parser.add_argument(
        "--sparsity",
        type=flags.sparsity_value,
        default=0.9,
        help="fraction of prunable parameters to remove, in [0, 1)",
    )
    parser.add_argument(
        "--prune",
        default="weights+biases",
        choices=sm.PRUNE_CHOICES,
        help="which parameters get gates: conv/linear weights and biases (the "
        "authors' convention) or weights only",
    )
    parser.add_argument(
        "--method",
        default="snip",
        choices=criteria.METHODS,
        help="how connections are chosen: SNIP's connection sensitivity, at random "
        "(the baseline SNIP must beat: the same number, uniformly over the whole "
        "network), or a baseline of criteria.py: magnitude, synflow, grasp, "
        "iterative-snip",
    )
    parser.add_argument(
        "--rounds",
        type=flags.positive_int,
        default=100,
        help="rounds of the iterative methods (synflow, iterative-snip)",
    )
    parser.add_argument(
        "--sanity-check",
        default=None,
        choices=sanity.CHECKS,
        help="alter the method's mask before training (sanity.py): shuffle each "
        "layer's kept positions, reinit the kept weights, invert the ranking, or "
        "corrupt-data (score on random labels)",
    )
    parser.add_argument(
        "--init",
        default=None,
        choices=sm.INITIALISATIONS,
        help="initialisation: variance scaling Glorot (vs-x) or He (vs-h), "
        "random normal (rn) or truncated normal (tn), std 0.1, or LeCun's "
        "truncated variance scaling (lecun: the authors' code's default) "
        "(default: vs-h; lecun with --protocol authors)",
    )
    parser.add_argument(
        "--device",
        default=None,
        choices=("cpu", "gpu"),
        help="cpu (the default) runs on NumPy, gpu on CuPy",
    )
    parser.add_argument(
        "--data-dir",
        type=flags.folder_name,
        default=None,
        help="dataset folder (MNIST in DATA_DIR/mnist/, CIFAR-10 in DATA_DIR/cifar10/, "
        "Tiny-ImageNet in DATA_DIR/tiny-imagenet/); missing files are downloaded "
        f"there; default: {data.default_data_dir()}",
    )
    parser.add_argument(
        "--epochs",
        type=flags.positive_int,
        default=None,
        help="train this many epochs, the learning rate x0.1 after 50%% and 75%% of "
        "them (default on MNIST: the model's iterations, 22,000 for lenet300 "
        "and 12,000 for lenet5, with the same decays)",
    )
    parser.add_argument(
        "--iterations",
        type=flags.positive_int,
        default=None,
        help="train this many iterations, the learning rate x0.1 every --decay-every",
    )
    parser.add_argument(
        "--decay-every",
        type=flags.positive_int,
        default=None,
        help="iterations between learning-rate decays with --iterations (default: "
        "the paper's, 25,000 on MNIST, 30,000 otherwise)",
    )
    parser.add_argument(
        "--paper-schedule",
        action="store_true",
        help="the paper's schedule: 100,000 iterations on MNIST, 150,000 otherwise, "
        "learning rate x0.1 every 25,000 / 30,000 (the default off MNIST, and with --protocol "
        "paper unless --iterations or --epochs is given)",
    )
    parser.add_argument(
        "--batch-size",
        type=flags.positive_int,
        default=None,
        help="mini-batch for training and for SNIP's one scoring batch (default: "
        "the paper's, 100 on MNIST, 128 otherwise)",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="no random flips and translations on CIFAR-10 / Tiny-ImageNet (not with --translate)",
    )
    parser.add_argument(
        "--translate",
        type=flags.non_negative_int,
        default=None,
        metavar="PIXELS",
        help="move each training image by up to PIXELS pixels each way, at random "
        "(default: 4, with random flips, on CIFAR-10 / Tiny-ImageNet, as the "
        "authors did; none on MNIST, as in the paper; on MNIST this adds moves "
        "only, never flips, and 0 adds nothing)",
    )
    parser.add_argument(
        "--lr",
        type=flags.positive_float,
        default=None,
        help=f"initial learning rate (default: {DEFAULT_LR}); with --resume, a new base rate the "
        "schedule goes on from at the checkpoint's iteration, its decays so far applied to it "
        "(after a divergence: a smaller one), recorded in results.json as lr_changes",
    )
    parser.add_argument(
        "--momentum",
        type=flags.fraction_value,
        default=None,
        help="SGD momentum (default: 0.9; 0 with --protocol authors)",
    )
    parser.add_argument(
        "--weight-decay",
        type=flags.non_negative_float,
        default=5e-4,
        help="L2 weight decay on conv/linear weights and biases",
    )
    parser.add_argument(
        "--clip-norm",
        type=flags.non_negative_float,
        default=None,
        metavar="NORM",
        help="scale the gradients down when their global norm exceeds NORM; 0: never (default: "
        "the model's, 1 for LeNet-5-Caffe and none for the others; none with --protocol paper "
        "or authors)",
    )
    parser.add_argument(
        "--warmup",
        type=flags.non_negative_int,
        default=0,
        metavar="N",
        help="raise the learning rate linearly to --lr over the first N iterations (0: no warm-up)",
    )
    parser.add_argument(
        "--val-fraction",
        type=flags.fraction_value,
        default=0.1,
        help="fraction of the training set held out for validation",
    )
    parser.add_argument(
        "--train-images",
        type=flags.positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (the validation split drawn "
        "from them; default: all)",
    )
    parser.add_argument(
        "--seed",
        type=flags.seed_value,
        default=0,
        help="seeds initialisation, data split, scoring batch and shuffling",
    )
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=None,
        help=f"folder for {', '.join(RUN_FILES)} (written atomically); a folder that holds "
        "an earlier run's is refused (see --resume, --overwrite)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=flags.positive_int,
        default=None,
        help="save a checkpoint every N iterations (and at the end) in --out, or in "
        "snip-min-MODEL-seedSEED/ without it; Ctrl-C always saves one",
    )
    parser.add_argument(
        "--resume",
        type=flags.folder_name,
        default=None,
        metavar="DIR",
        help="continue the run whose checkpoint.npz is in DIR, with its settings "
        "(--data-dir, --device, --out, --checkpoint-every, --no-download, --overwrite may be "
        "given anew, and --lr)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace the earlier run in the run's folder: its {', '.join(RUN_FILES)} are "
        "removed when training starts (without it such a folder is refused)",
    )
    parser.add_argument(
        "--mask",
        default=None,
        metavar="FILE",
        help="train this mask instead of scoring one: a masks.npz or network.npz (another "
        "run's, another seed's, or one made in PyTorch: scripts/pytorch_io.py), checked "
        "against the model; not with --method, --sanity-check, --sparsity, --two-draws",
    )
    parser.add_argument(
        "--evaluate",
        type=flags.folder_name,
        default=None,
        metavar="DIR",
        help="train nothing: the test loss and error of the network a run saved in DIR "
        "(DIR/network.npz) on its dataset (with --data-dir, --device, --batch-size)",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="train the smaller dense network the mask leaves (dead units removed: "
        "the same function and training, faster); for chains of linear, "
        "convolution, pooling, ReLU and flatten layers (the LeNets)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse a mask that leaves a layer without any connection, instead of warning",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading a missing dataset"
    )
    failures.add_debug_argument(parser)
    protocol.add_arguments(parser)  # --protocol and its pieces
    parser.set_defaults(lr_changes=[])  # not a flag: --lr given with --resume (resume_settings)
    parser.set_defaults(mask_origin=None)  # not a flag: where --mask's file came from
    args = parser.parse_args(argv)
    # Which flags were typed, even at their default value: parse again into a namespace
    # already holding a marker for every option, where argparse leaves the marker alone.
    marker = object()
    typed = parser.parse_args(argv, argparse.Namespace(**{key: marker for key in vars(args)}))
    typed = {key for key, value in vars(typed).items() if value is not marker}
    if args.evaluate:
        alone = ("evaluate", "data_dir", "device", "batch_size", "no_download", "debug")
        refused = sorted(f"--{key.replace('_', '-')}" for key in typed if key not in alone)
        if refused:
            parser.error(
                f"--evaluate trains nothing; {', '.join(refused)} cannot be given with it (only "
                f"--data-dir, --device, --batch-size, --no-download)"
            )
        return args
    if args.mask:
        choosers = ("method", "sanity_check", "sparsity", "rounds", "two_draws", "resume")
        refused = sorted(f"--{key.replace('_', '-')}" for key in typed if key in choosers)
        if refused:
            parser.error(
                f"--mask trains the mask it is given; {', '.join(refused)} cannot be given with "
                f"it (they choose or change a mask)"
            )
        args.method, args.two_draws = None, False  # (--protocol authors: no scoring copy)
    if args.resume:
        refused = [
            "--" + key.replace("_", "-")
            for key in vars(args)
            if key in typed and key not in RESUMABLE_FLAGS + CHANGEABLE_ON_RESUME
        ]
        if refused:
            parser.error(
                f"--resume continues a run with its own settings; {', '.join(refused)} cannot "
                f"be given with it (only --data-dir, --device, --out, --checkpoint-every, "
                f"--overwrite and, to go on with another learning rate, --lr)"
            )
    elif args.lr is None:
        args.lr = DEFAULT_LR
    if sum([args.epochs is not None, args.iterations is not None, args.paper_schedule]) > 1:
        parser.error("choose one of --epochs, --iterations and --paper-schedule")
    if args.decay_every is not None and args.iterations is None:
        parser.error("--decay-every goes with --iterations")
    if args.no_augment and args.translate is not None:
        parser.error("--translate augments and --no-augment does not: choose one")
    protocol.resolve(args, parser)
    return args


def main(argv=None):
    """The command: 0 when the run finished, else one line on stderr and an exit status
    (failures.explain: 2 bad input, 1 a failure on the way, 130 interrupted); --debug adds
    the traceback and keeps the status."""
    args = None
    try:
        args = parse_arguments(argv)
        if args.evaluate:
            evaluate_saved(args)
            return 0
        with numpy.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
            run(args)
    except Exception as error:
        if args is None:
            return failures.report("snip_min.py", error)
        return failures.report("snip_min.py", error, args.debug, explain(error, args))
    except KeyboardInterrupt as error:  # a second Ctrl-C, or one outside training: at once
        detail = "nothing saved"
        if args is not None and args.resume:
            detail = (
                f"nothing new saved; {os.path.join(args.resume, checkpoints.CHECKPOINT_FILE)} "
                f"is as it was: continue with --resume {args.resume}"
            )
        return failures.report_interruption(
            "snip_min.py", error, args is not None and args.debug, detail
        )
    return 0


def evaluate_saved(args, log=print):
    """--evaluate DIR: the test loss and error of DIR's network.npz on its dataset, in the
    batches the run evaluated in (or --batch-size), on --device. Returns (loss, error)."""
    if args.device is not None:
        sm.use_device(args.device)
    args.device = sm.current_device()
    path = network_file.network_path(args.evaluate)
    loss, error, contents = network_file.evaluate_network(
        path, args.data_dir, not args.no_download, args.batch_size, notice=log
    )
    results = os.path.join(os.path.dirname(path), RESULTS_FILE)  # the run's, if beside it
    recorded = results_summary(results) if os.path.isfile(results) else None
    against = f"; the run in that folder: {recorded}" if recorded else ""
    log(
        f"test error: {error:.2f}% (loss {loss:.4f}) - {contents['model']} from {path}, "
        f"{args.device}{against}"
    )
    return loss, error


def explain(error, args):
    """(exit status, one line) for an error of a run with these flags: failures.explain, the
    mapping every script shares, told the run's device and batch size."""
    return failures.explain(error, device=args.device, batch_size=args.batch_size)


if __name__ == "__main__":
    sys.exit(main())
