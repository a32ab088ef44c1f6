"""Stopping and resuming a run: checkpoints, Ctrl-C and SIGTERM.

What this adds to the command line (cli.py): a run that can stop after any training step
and continue bit-exactly, as if it had never stopped (--checkpoint-every, --resume,
Ctrl-C). A checkpoint is one .npz file (no pickle) holding every parameter, mask and
momentum buffer, the training state of snip_min.TrainingState (position in the schedule
and in the epoch's shuffle, running sums, the random generator) and the run's settings as
JSON bytes, written atomically. Reading one checks everything before anything is used, so
a damaged file is refused with one line (CheckpointError, exit status 2), never half-way.

    resume(args)            --resume DIR: read DIR's checkpoint, take on the run's settings
    restore(...)            its parameters, masks and training state into a fresh model
    restore_velocities(...) its momentum buffers into the optimiser
    Saver                   fit's checkpoint callback; names the last good checkpoint when
                            a run diverges or is interrupted
    stop_on_signals         Ctrl-C and SIGTERM stop the training loop after the current step
    write_checkpoint, read_checkpoint, restore_checkpoint, CHECKPOINT_FILE, CheckpointError

cli.run calls restore, restore_velocities, Saver and stop_on_signals; the
tests call the rest. docs/reliability.md describes the behaviour; tests/test_reliability.py
proves it.
"""

import contextlib
import io
import json
import os
import signal

import numpy

import data
import models
import snip_min as sm
from snip_min import Diverged, Interrupted, TrainingState, UsageError, parameters_of, to_host

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_VERSION = 2  # 2: an augmented epoch's moves are drawn, and saved, with its shuffle


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line."""


# ------------------------------------------------------------------------------------------
# What cli.run calls
# ------------------------------------------------------------------------------------------


def restore(contents, model, args, training_images, log):
    """Put a checkpoint read by cli.resume_settings into a freshly built `model`: (gated
    Params, the seconds SNIP took in the saved run, the TrainingState to continue from, the
    test errors measured so far with --test-every)."""
    gated = sm.prunable_parameters(model, args.prune)
    restore_checkpoint(contents, model, gated)
    state = training_state(contents["state"], contents["order"], contents["moves"])
    if state.order is not None and (
        len(state.order) != training_images or state.order.max() >= training_images
    ):
        raise UsageError(
            f"the checkpoint was made with {len(state.order):,} training images, but "
            f"this data gives {training_images:,}: resume with the run's own --data-dir"
        )
    path = os.path.join(args.resume, CHECKPOINT_FILE)
    log(f"resuming from {path} at iteration {state.iteration:,}")
    return gated, contents["snip_seconds"], state, saved_test_errors(contents["state"])


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
    --test-every fills (protocol.PeriodicTestError), saved with each checkpoint.
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
    ):
        self.folder, self.model, self.gated, self.optimiser = folder, model, gated, optimiser
        self.args, self.snip_seconds, self.compaction = args, snip_seconds, compaction
        self.test_errors = test_errors
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
        if not all(
            sm.host_values(*(sm.xp.isfinite(p.value).all() for p in parameters_of(self.model)))
        ):
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
        """Around the training loop: a divergence names the last good checkpoint, an
        interruption the checkpoint just saved and how to continue from it."""
        try:
            yield
        except Diverged as error:
            where = (
                f"the last good checkpoint is {self.last['path']} "
                f"(iteration {self.last['iteration']:,})"
                if self.last
                else "no checkpoint was saved (see --checkpoint-every)"
            )
            raise Diverged(f"{error}; {where}") from None
        except Interrupted as error:
            raise Interrupted(
                f"{error}; checkpoint saved in {self.last['path']}: continue with "
                f"--resume {self.folder}"
            ) from None


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


def write_checkpoint(folder, model, gated, velocities, state, args, snip_seconds, test_errors=()):
    """Save parameters (batch-norm statistics included), masks, momentum buffers
    (velocities: {name: array}), the training state and the test errors of --test-every
    atomically as folder/checkpoint.npz. Returns its path."""
    arrays = {f"param/{p.name}": to_host(p.value) for p in parameters_of(model)}
    arrays.update({f"mask/{p.name}": to_host(p.mask).astype(bool) for p in gated})
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
    }
    arrays["settings"] = numpy.frombuffer(json.dumps(settings).encode(), dtype=numpy.uint8)
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    path = os.path.join(folder, CHECKPOINT_FILE)
    data.write_file_atomically(path, buffer.getvalue())
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
        with numpy.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        settings = json.loads(arrays.pop("settings").tobytes().decode())
        if not isinstance(settings, dict) or settings.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"not a version {CHECKPOINT_VERSION} checkpoint")
        contents = {
            "args": settings["args"],
            "state": settings["state"],
            "snip_seconds": float(settings["snip_seconds"]),
            "order": arrays.pop("order", None),
            "moves": arrays.pop("moves", None),
        }
        for part in ("param", "mask", "velocity"):
            contents[part] = {
                name.split("/", 1)[1]: array
                for name, array in arrays.items()
                if name.startswith(part + "/")
            }
        check_saved_settings(contents)
        return contents
    except Exception as error:  # a damaged file can fail in many ways (zip, npy header, JSON ...)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(
            f"{path} is not a usable checkpoint ({reason}); resume from another or start again"
        ) from None


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
    generator = numpy.random.default_rng()
    generator.bit_generator.state = state.get("rng")  # ValueError/TypeError if damaged
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise ValueError("its shuffle order is not a vector of indices")
    moves = contents["moves"]
    if moves is not None and (
        order is None or moves.shape != (3, len(order)) or moves.dtype.kind not in "iu"
    ):
        raise ValueError("its augmentation moves do not match its shuffle order")


def restore_checkpoint(contents, model, gated):
    """Put a checkpoint's parameters and masks into a freshly built model, after checking
    them and the momentum buffers (restored into the optimiser by the caller)."""
    for p in parameters_of(model):
        saved = contents["param"].get(p.name)
        if saved is None or saved.shape != p.shape:
            raise CheckpointError(
                f"the checkpoint does not fit model {model!r}: {p.name} is "
                f"{'missing' if saved is None else saved.shape}, expected {p.shape}"
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
        p.value = sm.xp.asarray(saved)
    for p in gated:
        mask = contents["mask"].get(p.name)
        if mask is None or mask.shape != p.shape or mask.dtype != bool:
            raise CheckpointError(f"the checkpoint has no usable mask for {p.name}")
        p.mask = sm.xp.asarray(mask, dtype=p.value.dtype)
