"""What the experiments share: one training run built from snip_min's pieces, a random-pruning
baseline, grids of runs with one result file each, result files and figures.

Every experiment script imports this module, writes its numbers to CSV/JSON and its figures
to PNG under --out, and scales from a quick CPU run up to the paper's settings by flags.

The experiments that train are grids of runs (models x sparsities x seeds ...). Every run
writes OUT/runs/<key>.json as soon as it finishes, so nothing finished is ever lost, and the
same grid can be spread over many processes or machines:

    --list          print the grid: index, status (done / missing / invalid), key, settings
    --task K/N      run only the runs whose index i has i % N == K (one SLURM array task)
    --jobs N        run the grid in N local worker processes, then collect
    --collect       train nothing: write the CSV, summary.json and figures from the files there

Without these flags a script runs its whole grid (skipping runs already done) and collects.
"""

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy

import data
import models
import snip_min as sm
from extensions import (
    cli,
    compaction,
    criteria,
    failures,
    flags,
    protocol,
    sanity,
)


def argument_parser(docstring):
    """The experiments' parser: the docstring's first paragraph as description, each flag's
    default in --help, a usage error as one line on stderr (exit status 2), and --debug (a
    script's main block runs main through failures.run_script, which reads it)."""
    parser = flags.OneLineParser(
        description=docstring.split("\n\n")[0], formatter_class=flags.HelpFormatter
    )
    failures.add_debug_argument(parser)
    return parser


def add_data_dir_argument(parser):
    """--data-dir, as every experiment takes it."""
    parser.add_argument(
        "--data-dir",
        type=flags.folder_name,
        default=None,
        help="dataset folder, as for snip_min.py",
    )


def add_iterations_argument(parser):
    """--iterations, for the grids that train with snip_min.py's schedule of each network."""
    parser.add_argument(
        "--iterations",
        type=flags.positive_int,
        default=None,
        help="training iterations per run (default: snip_min.py's for each network)",
    )


def add_common_arguments(parser, out, epochs, seeds, out_help=None):
    """The flags every experiment takes. out: the default folder under results/ (None: the
    script chooses it, and out_help says how)."""
    add_data_dir_argument(parser)
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "gpu"),
        help="cpu (NumPy) or gpu (CuPy); part of every run's settings",
    )
    parser.add_argument(
        "--epochs",
        type=flags.positive_int,
        default=epochs,
        help="training epochs per run (default: the experiment's, per model)",
    )
    parser.add_argument(
        "--seeds", type=flags.positive_int, default=seeds, help="runs per setting (seeds 0, 1, ...)"
    )
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=None if out is None else os.path.join("results", out),
        help=out_help or "folder for CSV/JSON/PNG, and runs/ for the result file of each run",
    )
    parser.add_argument("--quiet", action="store_true", help="print one line per run only")


def add_grid_arguments(parser):
    """--list, --task, --jobs, --collect: the same four flags for every experiment that trains."""
    grid = parser.add_argument_group(
        "running the grid",
        "Every run writes OUT/runs/<key>.json (its settings and its result) when it finishes; a "
        "run whose file is there is not trained again, so the same command continues an "
        "interrupted grid. The flags define the grid: give every command of one grid the same "
        "flags (only --list, --task, --jobs and --collect may differ).",
    )
    grid.add_argument(
        "--list",
        action="store_true",
        help="train nothing: print the grid, one run a line: its index, whether its "
        "result file is there (done, missing, or invalid: it will be run "
        "again), its key and the settings that differ between runs (the shared "
        "ones and the number of runs go to stderr)",
    )
    grid.add_argument(
        "--task",
        type=task_value,
        default=None,
        metavar="K/N",
        help="run only the runs whose index i has i %% N == K (K from 0 to N-1): task "
        "K of N, e.g. one task of a SLURM job array (experiments/slurm-array.sh); "
        "collects nothing (run --collect once every task is done)",
    )
    grid.add_argument(
        "--jobs",
        type=flags.positive_int,
        default=1,
        metavar="N",
        help="run the grid in N worker processes on this machine (this script again, "
        "worker j with --task j/N), then collect. Each worker gets max(1, CPUs "
        "// N) BLAS threads: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and "
        "MKL_NUM_THREADS are set in its environment, so they hold before it "
        "imports NumPy",
    )
    grid.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: write the CSV, summary.json and figures from the result "
        "files present; the missing runs are named on stderr and the exit "
        "status is 1 if there are any, 0 otherwise",
    )


def task_value(text):
    """The argparse type of --task: 'K/N' -> (K, N), refused in one line unless 0 <= K < N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text, flags=re.ASCII)
    if not match or int(match[1]) >= int(match[2]):
        raise argparse.ArgumentTypeError(
            f"expected K/N with whole numbers 0 <= K < N (task K of N tasks), got {text!r}"
        )
    return int(match[1]), int(match[2])


def parse_arguments(parser, argv):
    """Parse and check the flags; the grid flags are added here, last, so --help ends with them."""
    add_grid_arguments(parser)
    args = parser.parse_args(argv)
    if args.list and args.collect:
        parser.error("--list and --collect: choose one")
    if args.collect and (args.task is not None or args.jobs > 1):
        parser.error(
            "--collect reads every run's file and trains nothing: leave out --task and --jobs"
        )
    return args


def seed_streams(seed):
    """The four random streams snip_min.py draws from one seed (snip_min.seed_streams):
    initialisation, validation split, scoring batch, shuffling."""
    return sm.seed_streams(seed)


def train_once(
    dataset,
    model_name,
    sparsity,
    seed,
    epochs,
    *,
    method="snip",
    init="vs-h",
    lr=0.1,
    batch_size=None,
    score_index=None,
    splits=None,
    on_step=None,
    log=None,
    sanity_check=None,
    rounds=100,
    iterations=None,
    details=False,
    protocol_name="ours",
    warmup=0,
    clip_norm=None,
):
    """One run of Algorithm 1 (or of another criterion of criteria.py, under a sanity check of
    sanity.py), as `snip_min.py` does it.

    score_index: positions in the training split of the scoring batch (default: a random
    batch of batch_size). splits: (train, validation, test) DeviceSplits to use instead of
    the usual split. iterations: train this many (default: `epochs` epochs), the learning
    rate x0.1 after 50% and 75% of them. details: also record each parameter's kept count and
    the alive units. protocol_name: "authors" takes protocol.py's pieces of the authors' code
    (two draws, momentum 0, a constant learning rate; `init` is still the caller's), without
    its test checkpoints; it refuses sanity_check="reinit", a third draw, as snip_min.py
    does. warmup, clip_norm: as snip_min.py's --warmup and --clip-norm. Returns a dict of
    the run's figures; 'diverged' is True if the loss blew up.
    """
    pieces = protocol.PROTOCOLS[protocol_name]
    if pieces["two_draws"] and sanity_check == "reinit":
        raise sm.UsageError(protocol.REINIT_WITH_TWO_DRAWS)
    batch_size = batch_size or cli.PAPER_SETUP[dataset.name]["batch_size"]
    init_rng, split_rng, score_rng, shuffle_rng = seed_streams(seed)
    train, validation, test = splits or sm.split_dataset(dataset, 0.1, split_rng)
    model = models.build(model_name, dataset.name)
    cli.check_connections_kept(model, sparsity, "weights+biases", model_name)  # kappa > 0
    sm.initialise(model, init, init_rng)
    if pieces["two_draws"]:  # the authors' scoring copy: biases drawn too
        protocol.draw_scoring_biases(model, init, init_rng)
    if score_index is None:
        score_index = score_rng.choice(len(train), size=batch_size, replace=False)
    images, labels = train.batch(sm.xp.asarray(score_index))
    if sanity_check is None:
        gated = criteria.prune_by(
            method, model, images, labels, sparsity, rng=score_rng, rounds=rounds
        )
    else:
        gated = sanity.prune_checked(
            sanity_check,
            method,
            model,
            images,
            labels,
            sparsity=sparsity,
            seed=seed,
            classes=models.NUM_CLASSES[dataset.name],
            init=init,
            rng=score_rng,
            rounds=rounds,
        )
    if pieces["two_draws"]:  # ... and a fresh copy is trained under the mask
        protocol.draw_training_copy(model, gated, init, seed, log or (lambda line: None))
    rows = sm.pruning_table(model)
    iterations = iterations or epochs * -(-len(train) // batch_size)
    optimiser = sm.SGD(sm.parameters_of(model), pieces["momentum"])
    boundaries = [] if pieces["constant_lr"] else [iterations // 2, 3 * iterations // 4]
    result = {
        "model": model_name,
        "sparsity": sparsity,
        "seed": seed,
        "method": method,
        "init": init,
        "epochs": epochs,
        "lr": lr,
        "params_kept": sum(row[2] for row in rows),
        "diverged": False,
    }
    if details:
        result["per_layer"] = {name: kept for name, _, kept in rows}
        result["alive_units"] = compaction.alive_summary(model, models.INPUT_SHAPE[dataset.name])
    state = sm.TrainingState(shuffle_rng)
    try:
        with numpy.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below
            sm.fit(
                model,
                optimiser,
                train,
                validation,
                state,
                iterations=iterations,
                batch_size=batch_size,
                base_lr=lr,
                boundaries=boundaries,
                log=log or (lambda line: None),
                on_step=on_step,
                warmup=warmup,
                clip_norm=clip_norm,
            )
        history = state.history
    except sm.Diverged:
        result.update(diverged=True, test_error=math.nan, val_error=math.nan, train_loss=math.nan)
        return result
    result["test_error"] = sm.evaluate(model, test, batch_size)[1]
    result["val_error"] = history[-1]["val_error"]
    result["train_loss"] = history[-1]["train_loss"]
    return result


def write_csv(path, rows):
    """rows: a list of dicts with the same keys, written atomically (fields quoted as needed)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: format_cell(value) for key, value in row.items()} for row in rows)
    data.write_file_atomically(path, text.getvalue().encode())


def format_cell(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_json(path, value):
    data.write_file_atomically(path, (json.dumps(value, indent=2) + "\n").encode())


def pyplot():
    """matplotlib's pyplot without a display, or None (with a note) if it is not installed."""
    try:
        import matplotlib
    except ImportError:
        print(
            "note: matplotlib is not installed (pip install matplotlib): numbers written, "
            "figures skipped",
            file=sys.stderr,
        )
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path):
    """Write a figure as PNG, atomically, and close it (it is done with)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data.write_file_atomically(path, buffer.getvalue())
    plt.close(figure)


def mean_and_spread(values):
    """(mean, standard deviation) of the finite values, (nan, nan) if there are none; the
    standard deviation of the values themselves (numpy.std, ddof 0), not the sample estimate."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(numpy.mean(finite)), float(numpy.std(finite))


# ------------------------------------------------------------------------------------------
# Grids of runs: one result file per run, and the flags that spread a grid over processes
# ------------------------------------------------------------------------------------------

RUN_FORMAT = 1  # part of every run's settings: raise it when a code change alters results
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_command_line(flags):
    """One run of `snip_min.py FLAGS`, through cli.run as the command line does it, its
    log dropped: (results dict, None), or (None, why) if the training diverged. Its files
    (and the checkpoint snip_min.py saves when stopped) go to a temporary folder, removed
    after it: the grid keeps the result; a stopped run is lost, as the grid says."""
    with tempfile.TemporaryDirectory(prefix="snip-min-run-") as folder:
        try:
            with numpy.errstate(over="ignore", invalid="ignore"):
                return cli.run(
                    cli.parse_arguments([*flags, "--out", folder]), log=lambda line: None
                ), None
        except sm.Diverged as error:
            return None, str(error)
        except sm.Interrupted:
            raise KeyboardInterrupt from None


# The order in which --list and the result files show a run's settings (the key does not
# depend on it); settings an experiment adds that are not named here come last.
SETTINGS_ORDER = (
    "experiment",
    "part",
    "model",
    "sparsity",
    "method",
    "init",
    "seed",
    "epochs",
    "lr",
    "batch_size",
    "scoring_batch_size",
    "scoring_composition",
    "scoring_drawn_by",
    "labels",
    "train_images",
    "data",
    "device",
    "format",
)


def run_settings(args, dataset, experiment, **settings):
    """Everything that changes one run's result, as plain JSON values: what the experiment
    varies (model, sparsity, seed, epochs, lr ...) on top of what every run records. The data
    is named by its description (which says how many training images there are), so the same
    grid on other data is another grid."""
    batch_size = cli.PAPER_SETUP[dataset.name]["batch_size"]
    every_run = {
        "experiment": experiment,
        "method": "snip",
        "init": "vs-h",
        "batch_size": batch_size,
        # the scoring batch as train_once draws it by default, like snip_min.py: a random
        # batch of batch_size from the seed's own scoring stream
        "scoring_batch_size": batch_size,
        "scoring_composition": "random",
        "scoring_drawn_by": "snip_min.py",
        "labels": "true",
        "train_images": "all",
        "data": dataset.description,
        "device": args.device,
        "format": RUN_FORMAT,
    }
    merged = {**every_run, **settings}
    order = [field for field in SETTINGS_ORDER if field in merged]
    return {field: merged[field] for field in order + [f for f in merged if f not in order]}


def canonical_json(value):
    """One text per value: sorted keys, no spaces. Equal settings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Run:
    """One point of a grid: its index (its place in the grid, the same for every command given
    the same flags), a readable name, its settings, and its key.

    The key names the result file: the readable name plus the first 12 hex digits of the
    SHA-256 of the settings' canonical JSON, e.g. lenet300-90-snip-seed0-3f2a9c01b7de. Change
    any setting and the key changes, so an old file is never taken for a new run."""

    def __init__(self, index, name, settings):
        self.index, self.settings = index, settings
        digest = hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:12]
        self.key = re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") + "-" + digest

    def path(self, out):
        return os.path.join(out, "runs", self.key + ".json")


def make_grid(points):
    """[Run] from [(name, settings)], indexed in order."""
    return [Run(index, name, settings) for index, (name, settings) in enumerate(points)]


def read_run_file(path, run):
    """(the file's contents, None) if path holds this run's result; (None, None) if there is no
    file; (None, why) if the file cannot be used: not whole JSON, not a result file, or a
    foreign one, whose stored settings are not the settings this run's key stands for."""
    if not os.path.exists(path):
        return None, None
    try:
        with open(path, "rb") as f:
            contents = json.loads(f.read().decode())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"not a whole JSON file ({' '.join(str(error).split())})"
    if not (
        isinstance(contents, dict)
        and isinstance(contents.get("settings"), dict)
        and isinstance(contents.get("result"), dict)
    ):
        return None, "not a result file (no settings and result in it)"
    if canonical_json(contents["settings"]) != canonical_json(run.settings):
        return None, "a foreign file: its settings are not the settings its name stands for"
    return contents, None


def write_run_file(path, run, result, seconds):
    """The run's settings, its result and where and how long it ran, written atomically."""
    write_json(
        path,
        {
            "key": run.key,
            "settings": run.settings,
            "result": result,
            "seconds": round(seconds, 3),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "blas_threads": {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES},
        },
    )


def chosen_runs(runs, task):
    """The runs of task (K, N): those whose index i has i % N == K; all of them for None."""
    if task is None:
        return list(runs)
    k, n = task
    return [run for run in runs if run.index % n == k]


def available_cpus():
    """The CPUs this process may run on (a SLURM allocation or taskset limits them), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(jobs):
    """BLAS threads for each of `jobs` workers, so that together they use each CPU once."""
    return max(1, available_cpus() // jobs)


def run_grid(args, argv, script, runs, perform, describe, collect):
    """Do what the grid flags ask; returns the exit status.

    args, argv: the parsed flags and the command line they came from (to start workers).
    script: the experiment's file (its workers run it again). runs: the grid, [Run].
    perform(settings) -> result: train one run; the result is a dict of JSON values.
    describe(settings, result) -> the line printed when a run finishes.
    collect([(Run, result)]): write the CSV, summary.json and figures from the runs found.
    """
    if args.list:
        list_grid(args.out, runs, chosen_runs(runs, args.task))
        return 0
    if args.collect:
        return collect_grid(args.out, runs, collect)
    if args.jobs > 1:
        status = run_workers(args, argv, script)
    else:
        status = train_runs(args, runs, chosen_runs(runs, args.task), perform, describe)
    if status != 0 or args.task is not None:  # a task collects nothing: others are running
        return status
    return collect_grid(args.out, runs, collect)


def run_status(out, run):
    """'done', 'missing' or 'invalid' (a file is there that cannot be used: it will be rerun)."""
    contents, problem = read_run_file(run.path(out), run)
    return "done" if contents else "invalid" if problem else "missing"


def setting_text(value):
    """A setting as --list shows it: numbers and one-word strings plain, the rest as JSON."""
    if isinstance(value, str) and re.fullmatch(r"[\w.,+-]+", value):
        return value
    return json.dumps(value)


def list_grid(out, runs, shown):
    """One line per run on stdout: index, status, key, the settings that differ between runs.
    The settings every run shares and the counts go to stderr, so stdout has a line per run."""
    fields = list(dict.fromkeys(field for run in runs for field in run.settings))
    varying = [f for f in fields if len({canonical_json(r.settings.get(f)) for r in runs}) > 1]
    shared = [f for f in fields if f not in varying]
    statuses = {run.index: run_status(out, run) for run in shown}
    width = len(str(len(runs) - 1))
    try:
        for run in shown:
            settings = " ".join(f"{f}={setting_text(run.settings.get(f))}" for f in varying)
            print(
                f"{run.index:>{width}}  {statuses[run.index]:<7}  {run.key}  {settings}", flush=True
            )
    except BrokenPipeError:  # `--list | head` has read enough: stop printing, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if runs:
        print(
            "every run: " + " ".join(f"{f}={setting_text(runs[0].settings[f])}" for f in shared),
            file=sys.stderr,
        )
    done = sum(status == "done" for status in statuses.values())
    print(
        f"{len(shown)} runs listed, {done} done (the grid has {len(runs)}: indices 0 to "
        f"{len(runs) - 1}, result files in {os.path.join(out, 'runs')})",
        file=sys.stderr,
    )


def stop_on_sigterm(signum, frame):
    """SIGTERM (a SLURM time limit, scancel, kill) stops like Ctrl-C: the run in progress is
    lost, every finished one is already on disk."""
    raise KeyboardInterrupt


def train_runs(args, runs, chosen, perform, describe):
    """Train the chosen runs in order, skipping those whose result file is there and valid,
    writing each one's file as soon as it finishes. Returns 0, or 130 if interrupted."""
    if not chosen:
        print(f"nothing to do: none of the grid's {len(runs)} runs is this task's")
        return 0
    sm.use_device(args.device)
    previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
    trained = skipped = 0
    run = chosen[0]
    try:
        for run in chosen:
            path = run.path(args.out)
            contents, problem = read_run_file(path, run)
            if contents:
                skipped += 1
                if not args.quiet:
                    print(f"[{run.index}] {run.key}: already done", flush=True)
                continue
            if problem:
                print(f"{path}: {problem}; running it again", file=sys.stderr, flush=True)
            started = time.perf_counter()
            result = perform(run.settings)
            write_run_file(path, run, result, time.perf_counter() - started)
            trained += 1
            print(f"[{run.index}] {describe(run.settings, result)}", flush=True)
    except KeyboardInterrupt:
        print(
            f"interrupted in run {run.index} ({run.key}), which is lost; the finished runs "
            f"({trained} trained now, {skipped} before) are kept in "
            f"{os.path.join(args.out, 'runs')}: the same command continues",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if skipped:
        print(f"{trained} runs trained, {skipped} already done")
    return 0


def run_workers(args, argv, script):
    """Run this grid (or this task's share of it) in args.jobs subprocesses of the script.

    Worker j of J takes, from task K of N (K, N = 0, 1 without --task), the runs with
    i % (N * J) == K + N * j: together exactly task K's runs, each once. Each worker is a fresh
    Python whose environment sets the BLAS thread count, so that NumPy, which reads it when
    it is imported, starts with max(1, CPUs // J) threads: J workers use each CPU once."""
    k, n = args.task or (0, 1)
    jobs, threads = args.jobs, threads_per_worker(args.jobs)
    environment = dict(os.environ, **{name: str(threads) for name in BLAS_THREAD_VARIABLES})
    print(f"{jobs} worker processes, {threads} BLAS thread(s) each", flush=True)
    workers = []
    previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        for j in range(jobs):
            # the last --task and --jobs on a command line win: the worker's share, one process
            command = [
                sys.executable,
                script,
                *argv,
                "--task",
                f"{k + n * j}/{n * jobs}",
                "--jobs",
                "1",
            ]
            workers.append(subprocess.Popen(command, env=environment))
        statuses = [worker.wait() for worker in workers]
    except KeyboardInterrupt:
        # Ctrl-C on a terminal reaches the workers too, and they stop by themselves; a SIGTERM
        # sent to this process alone is passed on to those still running after 10 seconds.
        deadline = time.monotonic() + 10
        for worker in workers:
            try:
                worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.terminate()
                worker.wait()
        print(
            "interrupted: the finished runs are kept; the same command continues", file=sys.stderr
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    failed = [
        f"worker {j} (--task {k + n * j}/{n * jobs}) exited with status {status}"
        for j, status in enumerate(statuses)
        if status != 0
    ]
    if failed:
        print("; ".join(failed), file=sys.stderr)
        return 130 if all(status in (130, -signal.SIGINT) for status in statuses if status) else 1
    return 0


def collect_grid(out, runs, collect):
    """Hand the runs whose file is there to collect(); name the others on stderr. Returns 1
    if any run is missing (or its file cannot be used), 0 if none is."""
    found, missing = [], []
    for run in runs:
        contents, problem = read_run_file(run.path(out), run)
        if contents:
            found.append((run, contents["result"]))
        else:
            missing.append(run)
            print(
                f"missing run {run.index}: {run.key}"
                + (f" ({run.path(out)}: {problem})" if problem else ""),
                file=sys.stderr,
            )
    if found:
        collect(found)
    else:
        earlier = collected_outputs(out)
        print(
            "nothing collected: no run of the grid has a usable result file"
            + (
                f"; {', '.join(earlier)} in {out} are from an earlier collection, left as they "
                f"were, and hold none of this grid's runs"
                if earlier
                else ""
            ),
            file=sys.stderr,
        )
    if missing:
        print(
            f"{len(missing)} of {len(runs)} runs missing (the outputs hold the other "
            f"{len(found)}): run the grid's command again without --collect, then --collect",
            file=sys.stderr,
        )
        return 1
    return 0


def collected_outputs(out):
    """The files a collection writes that are in `out` now (its CSV, JSON, Markdown and PNG
    files beside runs/), sorted."""
    if not os.path.isdir(out):
        return []
    return sorted(
        name
        for name in os.listdir(out)
        if os.path.isfile(os.path.join(out, name))
        and name.endswith((".csv", ".json", ".md", ".png"))
    )
