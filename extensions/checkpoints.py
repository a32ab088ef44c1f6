"""Stopping and resuming a run: checkpoints, Ctrl-C and SIGTERM.

What this adds to the command line (cli.py): a run that can stop after any training step
and continue bit-exactly, as if it had never stopped (--checkpoint-every, --resume,
Ctrl-C). A checkpoint is one .npz file (no pickle) holding every parameter, mask and
momentum buffer, the training state of snip_min.TrainingState (position in the schedule
and in the epoch's shuffle, running sums, the random generator) and the run's settings as
JSON bytes, written atomically, with a fingerprint of the data the run trained and tests on.
Reading one checks everything before anything is used, so a damaged file is refused with one
line (CheckpointError, exit status 2), never half-way.

    restore(...)            a checkpoint read by cli.resume_settings into a fresh model: its
                            parameters, masks and training state, once its data is proven
                            to be this data (data.fingerprint)
    restore_velocities(...) its momentum buffers into the optimiser
    Saver                   fit's checkpoint callback; names the last good checkpoint when
                            a run diverges (DivergedRun) or is interrupted (StoppedAtOnce
                            for a second Ctrl-C)
    stop_on_signals         Ctrl-C and SIGTERM stop the training loop after the current step
    checkpoint_summary      what a checkpoint holds, in a few words (model, seed, iteration)
    write_checkpoint, read_checkpoint, restore_checkpoint, CHECKPOINT_FILE, CheckpointError

cli.run calls restore, restore_velocities, Saver, stop_on_signals and
checkpoint_summary; the tests call the rest. docs/reliability.md describes the behaviour;
tests/test_reliability.py proves it.
"""

import contextlib
import math
import os
import signal
import sys

import numpy

import data
import models
import snip_min as sm
from extensions import network_file
from snip_min import Diverged, Interrupted, TrainingState, UsageError, parameters_of, to_host

CHECKPOINT_FILE = "checkpoint.npz"
# 2: an augmented epoch's moves are drawn, and saved, with its shuffle; 3: the data's
# fingerprint (data.fingerprint) and the run's number of iterations are saved too
CHECKPOINT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # a version 2 checkpoint resumes with a note: no fingerprint in it


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line."""


class DivergedRun(Diverged):
    """A run whose training diverged (a snip_min.Diverged from fit or from the Saver), with
    what the run knows: `reason` (fit's words), `last`, the last good checkpoint as
    {"path", "iteration"} or None, and the learning rate `lr`, `model` and `clip_norm` it
    ran with. failures.divergence_message turns it into the one line a user sees."""

    def __init__(self, reason, last, lr, model, clip_norm=None):
        where = (
            f"the last good checkpoint is {last['path']} (iteration {last['iteration']:,})"
            if last
            else "no checkpoint was saved"
        )
        super().__init__(f"{reason}; {where}")
        self.reason, self.last, self.lr, self.model = reason, last, lr, model
        self.clip_norm = clip_norm


class StoppedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C stopped the run at once, before a new checkpoint was saved; the
    message says which earlier checkpoint survives and how to continue from it."""


# ------------------------------------------------------------------------------------------
# What cli.run calls
# ------------------------------------------------------------------------------------------


def restore(contents, model, args, training_images, fingerprint, log):
    """Put a checkpoint read by cli.resume_settings into a freshly built `model`: (gated
    Params, the seconds SNIP took in the saved run, the TrainingState to continue from, the
    test errors measured so far with --test-every). training_images: the size of this run's
    training split; fingerprint: data.fingerprint of the data this run reads. Both must be
    the checkpoint's, else a UsageError names both."""
    path = os.path.join(args.resume, CHECKPOINT_FILE)
    check_same_data(contents["data"], fingerprint, path)
    state = training_state(contents["state"], contents["order"], contents["moves"])
    if state.order is not None and (  # (what a version 2 checkpoint can prove of its data)
        len(state.order) != training_images or state.order.max() >= training_images
    ):
        raise UsageError(
            f"the checkpoint's training split holds {len(state.order):,} images, but this "
            f"data's holds {training_images:,}: resume with the run's own --data-dir"
        )
    gated = sm.prunable_parameters(model, args.prune)
    restore_checkpoint(contents, model, gated)
    log(f"resuming from {path} at iteration {state.iteration:,}")
    return gated, contents["snip_seconds"], state, saved_test_errors(contents["state"])


def check_same_data(saved, fingerprint, path):
    """Refuse (UsageError, one line naming both) to resume a checkpoint on other data than it
    was made with: saved, the checkpoint's data.fingerprint (None in a version 2 checkpoint,
    which is resumed with a note, checked by its number of training images only)."""
    if saved is None:
        print(
            f"note: {path} is from before checkpoints recorded their data (version 2): its "
            f"data is checked by the number of training images only",
            file=sys.stderr,
        )
        return
    for split, noun in (("train", "training"), ("test", "test")):
        theirs, ours = saved[split], fingerprint[split]
        if theirs == ours:
            continue
        if theirs["images"] != ours["images"]:
            what = (
                f"the checkpoint was made with {theirs['images']:,} {noun} images, but this "
                f"data gives {ours['images']:,}"
            )
        else:
            what = (
                f"the checkpoint was made with other {noun} images than this data gives "
                f"({ours['images']:,} of them, as many as its own)"
            )
        raise UsageError(
            f"{what} (SHA-256 {theirs['sha256'][:12]} against {ours['sha256'][:12]}): resume "
            f"with the data the run read, {saved['description']}, from the run's own --data-dir"
        )


def checkpoint_summary(path):
    """What the checkpoint at `path` holds, for a message: {"model", "seed", "iteration",
    "iterations"} (iterations: the run's total, None in a version 2 checkpoint), read from
    its settings alone; None if they cannot be read."""
    try:
        _, settings = data.read_archive(path)
        total = settings.get("iterations")
        return {
            "model": str(settings["args"]["model"]),
            "seed": settings["args"]["seed"],
            "iteration": int(settings["state"]["iteration"]),
            "iterations": total if type(total) is int else None,
        }
    except Exception:  # a damaged file can fail in many ways; the caller says it is damaged
        return None


def restore_velocities(contents, optimiser, compaction=None):
    """The checkpoint's momentum buffers into `optimiser` (cut to a compact network's shapes)."""
    saved = {p.name: sm.xp.asarray(contents["velocity"][p.name]) for p in optimiser.params}
    saved = compaction.compacted(saved) if compaction else saved
    for p, velocity in zip(optimiser.params, optimiser.velocity):
        velocity[...] = saved[p.name]


class Saver:
    """Saves a run's checkpoints in `folder` as fit asks (saver(state) is fit's checkpoint
    callback), and remembers the last one saved, so that a run that diverges or is
    interrupted can name it (see naming_failures).

    With a compaction (--compact), the compact network's values and momentum buffers are
    expanded into `model`'s full shapes first: a checkpoint always holds the full network.
    resumed: the checkpoint read by cli.resume_settings, or None. test_errors: the list
    --test-every fills (protocol.PeriodicTestError), saved with each checkpoint. fingerprint:
    data.fingerprint of the run's data; iterations: the run's total; both saved with it.
    """

    def __init__(
        self,
        folder,
        model,
        gated,
        optimiser,
        args,
        snip_seconds,
        compaction=None,
        resumed=None,
        test_errors=(),
        fingerprint=None,
        iterations=None,
    ):
        self.folder, self.model, self.gated, self.optimiser = folder, model, gated, optimiser
        self.args, self.snip_seconds, self.compaction = args, snip_seconds, compaction
        self.test_errors, self.fingerprint, self.iterations = test_errors, fingerprint, iterations
        self.last = (
            {}
            if resumed is None
            # the checkpoint resumed from
            else {
                "path": os.path.join(args.resume, CHECKPOINT_FILE),
                "iteration": resumed["state"]["iteration"],
            }
        )

    def full_shapes(self):
        """Write the trained values into `model` (expanding a compact network) and return the
        momentum buffers by name, in the full shapes too."""
        velocities = {p.name: v for p, v in zip(self.optimiser.params, self.optimiser.velocity)}
        if self.compaction:
            self.compaction.expand()
            velocities = self.compaction.expanded(velocities)
        return velocities

    def __call__(self, state):
        velocities = self.full_shapes()
        loss_finite, *weights_finite = sm.host_values(
            sm.xp.isfinite(state.epoch_loss),
            *(sm.xp.isfinite(p.value).all() for p in parameters_of(self.model)),
        )  # (one wait for the device): a checkpoint is never saved with a non-finite value
        if not loss_finite:
            raise Diverged(f"the loss became non-finite by iteration {state.iteration:,}")
        if not all(weights_finite):
            raise Diverged(f"the weights became non-finite by iteration {state.iteration:,}")
        path = write_checkpoint(
            self.folder,
            self.model,
            self.gated,
            velocities,
            state,
            self.args,
            self.snip_seconds,
            self.test_errors,
            self.fingerprint,
            self.iterations,
        )
        self.last.update(path=path, iteration=state.iteration)

    def finish(self, state):
        """After training: the final checkpoint with --checkpoint-every (for later continuing),
        and in any case the trained values in `model`'s full shapes."""
        if self.args.checkpoint_every:
            self(state)  # (a checkpoint writes them back itself)
        else:
            self.full_shapes()

    @contextlib.contextmanager
    def naming_failures(self):
        """Around the training loop and what follows it: a divergence becomes a DivergedRun
        that knows the last good checkpoint, an interruption names the checkpoint just saved
        and how to continue from it, and a second Ctrl-C (StoppedAtOnce) the earlier
        checkpoint that survives it."""
        try:
            yield
        except DivergedRun:
            raise
        except Diverged as error:
            last = dict(self.last) if self.last else None
            args = self.args
            raise DivergedRun(str(error), last, args.lr, args.model, args.clip_norm) from None
        except Interrupted as error:
            raise Interrupted(
                f"{error}; checkpoint saved in {self.last['path']}: continue with "
                f"--resume {os.path.dirname(self.last['path'])}"
            ) from None
        except StoppedAtOnce:
            raise
        except KeyboardInterrupt:
            if self.last:
                path, iteration = self.last["path"], self.last["iteration"]
                survivor = (
                    f"the last one, {path} (iteration {iteration:,}), is as it was: continue "
                    f"with --resume {os.path.dirname(path)}"
                )
            else:
                survivor = "none was saved before"
            raise StoppedAtOnce(f"no new checkpoint saved; {survivor}") from None


class stop_on_signals:
    """While training, Ctrl-C and SIGTERM ask the loop to stop after the current step (it then
    saves a checkpoint); a second Ctrl-C stops at once."""

    def __enter__(self):
        sm.STOP_REQUESTED = False
        self.previous = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, signum, frame):
        sm.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C is immediate
        # os.write, not print: a handler that prints while the progress bar is printing
        # would make Python's stderr raise a reentrant-call error
        os.write(
            2, b"stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)\n"
        )

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


# ------------------------------------------------------------------------------------------
# The file: one .npz (no pickle) with every array, and the run's state as JSON bytes
# ------------------------------------------------------------------------------------------


def write_checkpoint(
    folder,
    model,
    gated,
    velocities,
    state,
    args,
    snip_seconds,
    test_errors=(),
    fingerprint=None,
    iterations=None,
):
    """Save parameters (batch-norm statistics included), masks, momentum buffers
    (velocities: {name: array}), the training state, the test errors of --test-every, the
    data's fingerprint (data.fingerprint) and the run's total iterations atomically as
    folder/checkpoint.npz. Returns its path."""
    arrays = network_file.network_arrays(model, gated)  # param/NAME, mask/NAME
    arrays.update({f"velocity/{name}": to_host(v) for name, v in velocities.items()})
    if state.order is not None:
        arrays["order"] = state.order
    if state.moves is not None:
        arrays["moves"] = state.moves
    settings = {
        "version": CHECKPOINT_VERSION,
        "args": dict(vars(args)),
        "state": state_record(state, test_errors),
        "snip_seconds": snip_seconds,
        "data": fingerprint,
        "iterations": iterations,
    }
    path = os.path.join(folder, CHECKPOINT_FILE)
    data.write_archive(path, arrays, settings)
    return path


def state_record(state, test_errors=()):
    """A TrainingState as JSON-able values (the shuffle order and the moves travel separately,
    as arrays), with the [iteration, test error] records of --test-every."""
    return {
        "iteration": state.iteration,
        "epoch": state.epoch,
        "position": state.position,
        "epoch_loss": float(state.epoch_loss),
        "epoch_correct": int(state.epoch_correct),
        "epoch_images": state.epoch_images,
        "epoch_seconds": state.epoch_seconds,
        "history": state.history,
        "train_seconds": state.train_seconds,
        "images_trained": state.images_trained,
        "test_checkpoints": [list(record) for record in test_errors],
        "rng": state.rng.bit_generator.state,
    }


def training_state(record, order, moves=None):
    """The TrainingState that state_record saved, with its epoch's shuffle order and moves."""
    rng = numpy.random.default_rng()
    rng.bit_generator.state = record["rng"]
    state = TrainingState(rng)
    for key in (
        "iteration",
        "epoch",
        "position",
        "epoch_loss",
        "epoch_correct",
        "epoch_images",
        "epoch_seconds",
        "history",
        "train_seconds",
        "images_trained",
    ):
        setattr(state, key, record[key])
    state.order, state.moves = order, moves
    return state


def saved_test_errors(record):
    """The [iteration, test error] records of --test-every that state_record saved (none in
    a checkpoint from before --test-every existed)."""
    return record.get("test_checkpoints", [])


def read_checkpoint(path):
    """The contents of a checkpoint, checked: CheckpointError if it is missing or damaged."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"no checkpoint at {path}: --resume takes the folder a run saved its checkpoint.npz in"
        )
    try:
        arrays, settings = data.read_archive(path)
        if not isinstance(settings, dict) or settings.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"not a version {' or '.join(map(str, READABLE_VERSIONS))} checkpoint")
        contents = {
            "version": settings["version"],
            "args": settings["args"],
            "state": settings["state"],
            "snip_seconds": float(settings["snip_seconds"]),
            "data": settings.get("data"),
            "iterations": settings.get("iterations"),
            "order": arrays.pop("order", None),
            "moves": arrays.pop("moves", None),
        }
        for part in ("param", "mask", "velocity"):
            contents[part] = network_file.arrays_under(arrays, part)
        check_saved_settings(contents)
        return contents
    except Exception as error:  # a damaged file can fail in many ways (zip, npy header, JSON ...)
        raise CheckpointError(
            f"{path} is not a usable checkpoint ({damage_reason(error)}); resume from another "
            f"or start the run again (--overwrite replaces this one)"
        ) from None


def damage_reason(error):
    """Why a checkpoint could not be read, in a few words: the error's own, unless it is
    NumPy's advice on loading the file anyway (allow_pickle, max_header_size), advice never to
    follow for a file that may come from anywhere: a checkpoint holds plain numbers only, so
    a file that would need it is damaged, or not a checkpoint."""
    reason = " ".join(str(error).split()) or type(error).__name__
    if "pickle" in reason.lower() or "max_header_size" in reason:
        return (
            "it holds an array of Python objects or an oversized array header, which no "
            "checkpoint has: the file is damaged"
        )
    return reason


def check_saved_settings(contents):
    """Raise ValueError unless a checkpoint's settings and training state have the expected
    keys and types (so that a damaged one is refused here, not half-way through resuming)."""
    args, state, order = contents["args"], contents["state"], contents["order"]
    if not isinstance(args, dict) or args.get("model") not in models.MODELS:
        raise ValueError("its settings name no known model")
    if not isinstance(state, dict):
        raise ValueError("its training state is not a record")
    whole = ("iteration", "epoch", "position", "epoch_correct", "epoch_images", "images_trained")
    if not all(type(state.get(key)) is int and state[key] >= 0 for key in whole):
        raise ValueError("its training state is incomplete")
    if not all(
        isinstance(state.get(key), (int, float))
        for key in ("epoch_loss", "epoch_seconds", "train_seconds")
    ) or not isinstance(state.get("history"), list):
        raise ValueError("its training state is incomplete")
    if not math.isfinite(state["epoch_loss"]):
        raise ValueError("its running loss is not finite")
    generator = numpy.random.default_rng()
    generator.bit_generator.state = state.get("rng")  # ValueError/TypeError if damaged
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise ValueError("its shuffle order is not a vector of indices")
    moves = contents["moves"]
    if moves is not None and (
        order is None or moves.shape != (3, len(order)) or moves.dtype.kind not in "iu"
    ):
        raise ValueError("its augmentation moves do not match its shuffle order")
    fingerprint = contents["data"]
    if contents["version"] >= 3 and not (
        isinstance(fingerprint, dict)
        and isinstance(fingerprint.get("description"), str)
        and all(
            isinstance(fingerprint.get(split), dict)
            and type(fingerprint[split].get("images")) is int
            and isinstance(fingerprint[split].get("sha256"), str)
            for split in ("train", "test")
        )
    ):
        raise ValueError("its data fingerprint is missing or incomplete")


def restore_checkpoint(contents, model, gated):
    """Put a checkpoint's parameters and masks into a freshly built model, after checking
    them and the momentum buffers (restored into the optimiser by the caller): every one
    there, of the model's shape, float32 and finite (a non-finite value in a checkpoint is
    damage: the Saver never writes one)."""
    saved_model = contents["args"].get("model")
    for p in parameters_of(model):
        saved = contents["param"].get(p.name)
        if saved is None or saved.shape != p.shape:
            found = "missing" if saved is None else f"of shape {tuple(saved.shape)}"
            raise CheckpointError(
                f"the checkpoint (its settings name {saved_model}) does not fit this network: "
                f"its {p.name} is {found}, the network's is of shape {tuple(p.shape)}"
            )
        velocity = contents["velocity"].get(p.name) if p.learned else saved  # statistics have none
        if (
            saved.dtype != numpy.float32
            or velocity is None
            or velocity.shape != p.shape
            or velocity.dtype != numpy.float32
        ):
            raise CheckpointError(
                f"the checkpoint's {p.name} or its momentum is missing or not float32"
            )
        if not (numpy.isfinite(saved).all() and numpy.isfinite(velocity).all()):
            raise CheckpointError(
                f"the checkpoint's {p.name} or its momentum holds non-finite values (NaN or "
                f"infinity), which no checkpoint is saved with: the file is damaged; resume "
                f"from another or start the run again"
            )
        p.value = sm.xp.asarray(saved)
    for p in gated:
        mask = contents["mask"].get(p.name)
        if mask is None or mask.shape != p.shape or mask.dtype != bool:
            raise CheckpointError(f"the checkpoint has no usable mask for {p.name}")
        p.mask = sm.xp.asarray(mask, dtype=p.value.dtype)
