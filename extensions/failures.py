"""One line for every failure, and an exit status that says what kind it was: the mapping every
script of the project shares (snip_min.py's command line, the scripts in experiments/ and in
scripts/), so that the same fault reads the same wherever it happens.

    explain(error)            (exit status, one line): 2 the input is wrong (a flag, the data,
                              a checkpoint, CuPy missing), 1 the run failed on its way, 130
                              it was interrupted
    divergence_message(error) the line for a training that diverged, built in one place
    report(program, error)    print that line on stderr (the traceback first with --debug) and
                              return the status
    run_reported(...)         a function run with every failure reported as above
    run_script(main, script)  a script's main(argv), likewise
    add_debug_argument        the --debug flag every script takes

--debug adds the traceback and keeps the exit status. The error classes are imported inside
explain, not at the top: importing this module loads nothing numerical, so that a script that
sets NumPy's thread count first (scripts/bench.py, experiments/criteria_costs.py) may import it
before NumPy starts.
"""

import os
import sys
import traceback

DEBUG_HELP = "show the full traceback of an error (the exit status stays what it is)"


def add_debug_argument(parser):
    """--debug, as every script of the project takes it."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def explain(error, *, device=None, batch_size=None):
    """(exit status, one line) for an error: 2 for bad input (snip_min.UsageError, a
    data.DataError, a checkpoints.CheckpointError, a network_file.NetworkFileError), 1 for a
    failure during a run, 130 for an
    interruption (snip_min.Interrupted). device, batch_size: the run's, for the advice after
    running out of memory. Anything unforeseen is one line too; --debug shows it all."""
    import data
    import snip_min as sm
    from extensions import checkpoints, network_file

    bad_input = (
        sm.UsageError,
        data.DataError,
        checkpoints.CheckpointError,
        network_file.NetworkFileError,
    )
    if isinstance(error, bad_input):
        return 2, one_line(str(error))
    if isinstance(error, sm.Diverged):
        return 1, divergence_message(error)
    if isinstance(error, sm.Interrupted):
        return 130, one_line(str(error))
    if isinstance(error, sm.EvaluationOutOfMemory):  # evaluate's batch: --batch-size or less
        device, batch = device or "cpu", error.batch_size
        return 1, (
            f"out of memory on the {device} while evaluating in batches of {batch:,} (at most "
            f"--batch-size): try a smaller --batch-size, e.g. --batch-size {max(1, batch // 2)}"
        )
    if isinstance(error, MemoryError):  # CuPy's OutOfMemoryError is one too
        device = device or "cpu"
        if not batch_size:
            return 1, f"out of memory on the {device}: try a smaller --batch-size"
        return 1, (
            f"out of memory on the {device} with --batch-size {batch_size}: try a smaller "
            f"batch, e.g. --batch-size {max(1, batch_size // 2)}"
        )
    if isinstance(error, OSError):
        if error.filename:  # (filename2: the target of a rename, where the writing failed)
            where = error.filename2 or error.filename
            return 1, f"{error.strerror or one_line(str(error))} ({where})"
        return 1, one_line(str(error)) or type(error).__name__
    return 1, f"{type(error).__name__}: {one_line(str(error))} (run again with --debug for details)"


def divergence_message(error):
    """The one line for a training that diverged (a snip_min.Diverged), as parts joined by
    '; ': what happened; then, for a run that knows its checkpoints (a
    checkpoints.DivergedRun), the last good checkpoint and the command that continues from it
    with a tenth of the learning rate, or, without one, how to start again; and, for a model
    that has a remedy of its own (models.ModelInfo.clip_norm) the run did not use, that one."""
    parts = [f"training diverged: {getattr(error, 'reason', error)}"]
    remedy = model_remedy(getattr(error, "model", None), getattr(error, "clip_norm", None))
    lr = getattr(error, "lr", None)
    smaller = f"--lr {lr / 10:g}" if lr else "a smaller --lr"
    if not hasattr(error, "last"):  # a bare snip_min.Diverged
        parts.append(f"try {smaller}")
    elif error.last:
        path, iteration = error.last["path"], error.last["iteration"]
        parts.append(f"the last good checkpoint is {path} (iteration {iteration:,})")
        parts.append(
            f"continue from it with a smaller learning rate: "
            f"--resume {os.path.dirname(path) or '.'} {smaller}"
        )
    else:
        parts.append("no checkpoint was saved before it (--checkpoint-every N saves one)")
        parts.append(f"start again with a smaller learning rate, e.g. {smaller}")
    if remedy:
        parts.append(remedy)
    return "; ".join(parts)


def model_remedy(model, clip_norm):
    """What Experiment I found trains `model` where the paper's settings diverge, if the run
    did not use it (None otherwise)."""
    import models

    own = models.MODELS[model].clip_norm if model in models.MODELS else None
    if not own or (clip_norm and clip_norm <= own):
        return None
    used = f"--clip-norm {clip_norm:g}" if clip_norm else "no clipping"
    return (
        f"{models.MODELS[model].title} trains at every sparsity with --clip-norm {own:g}, its "
        f"default, in a new run (this run had {used}; docs/choices.md)"
    )


def one_line(text):
    """text with every run of white space (line breaks too) made one space."""
    return " ".join(str(text).split())


def report(program, error, debug=False, explained=None):
    """Print `error` as `PROGRAM: error: LINE` (`PROGRAM: interrupted: LINE` for status 130)
    on stderr, after its traceback if debug; return its exit status. explained: (status,
    line) if the caller has them (explain told more of the run), else explain(error)."""
    status, message = explained or explain(error)
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    print(f"{program}: {'interrupted' if status == 130 else 'error'}: {message}", file=sys.stderr)
    return status


def report_interruption(program, error, debug=False, detail=""):
    """A Ctrl-C that stopped the program at once (a KeyboardInterrupt): one line on stderr,
    `PROGRAM: interrupted at once`, then the exception's own words or `detail` (what was
    saved, and how to go on); exit status 130."""
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    said = one_line(str(error)) or detail
    print(f"{program}: interrupted at once{'; ' + said if said else ''}", file=sys.stderr)
    return 130


def debug_requested(argv):
    """Whether a command line asks for --debug (or an abbreviation argparse accepts for it,
    --deb or longer)."""
    return any(len(word) >= 5 and "--debug".startswith(word) for word in argv)


def run_reported(program, function, debug=False):
    """function() and the exit status it returns, or, if it fails, the failure in one line
    as `PROGRAM: error: ...` (report) and its status; an interruption (Ctrl-C) is status 130.
    No traceback unless debug."""
    try:
        return function()
    except Exception as error:
        return report(program, error, debug)
    except KeyboardInterrupt as error:
        return report_interruption(program, error, debug)


def run_script(main, script, argv=None):
    """A script's command: main(argv) (argv: the command line's words, sys.argv[1:] if None)
    run as run_reported runs it, with --debug if the command line has it. script: the
    script's path (its __file__), whose file name names the program."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_reported(os.path.basename(script), lambda: main(argv), debug_requested(argv))
