"""What the experiments share: one training run built from snip_min's pieces, a random-pruning
baseline, result files and figures.

Every experiment script imports this module, writes its numbers to CSV/JSON and its figures
to PNG under --out, and scales from a quick CPU run up to the paper's settings by flags.
"""

import csv
import io
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy                      # noqa: E402

import data                       # noqa: E402
import models                     # noqa: E402
import snip_min as sm             # noqa: E402


def add_common_arguments(parser, out, epochs, seeds):
    """The flags every experiment takes."""
    parser.add_argument("--data-dir", default=None, help="dataset folder, as for snip_min.py")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs per run")
    parser.add_argument("--seeds", type=int, default=seeds, help="runs per setting (seeds 0, 1, ...)")
    parser.add_argument("--out", default=os.path.join("results", out), help="folder for CSV/JSON/PNG")
    parser.add_argument("--quiet", action="store_true", help="print one line per run only")


def random_scores(params, rng):
    """The random-pruning baseline: every gated entry gets an independent uniform score, so
    the global top-k keeps kappa connections chosen uniformly at random over the network."""
    return [sm.xp.asarray(rng.random(p.shape), dtype=p.value.dtype) for p in params]


def seed_streams(seed):
    """The four random streams snip_min.py draws from one seed: initialisation, validation
    split, scoring batch, shuffling."""
    return [numpy.random.default_rng(s) for s in numpy.random.SeedSequence(seed).spawn(4)]


def train_once(dataset, model_name, sparsity, seed, epochs, *, method="snip", init="vs-h",
               lr=0.1, batch_size=None, score_index=None, splits=None, on_step=None, log=None):
    """One run of Algorithm 1 (or of the random baseline), as `snip_min.py` does it.

    score_index: positions in the training split of the scoring batch (default: a random
    batch of batch_size). splits: (train, validation, test) DeviceSplits to use instead of
    the usual split. Returns a dict of the run's figures; 'diverged' is True if the loss blew up.
    """
    batch_size = batch_size or sm.PAPER_SETUP[dataset.name]["batch_size"]
    init_rng, split_rng, score_rng, shuffle_rng = seed_streams(seed)
    train, validation, test = splits or sm.split_dataset(dataset, 0.1, split_rng)
    model = models.build(model_name, dataset.name)
    sm.initialise(model, init, init_rng)
    if score_index is None:
        score_index = score_rng.choice(len(train), size=batch_size, replace=False)
    images, labels = train.batch(sm.xp.asarray(score_index))
    params = sm.prunable_parameters(model)
    if method == "snip":
        scores = sm.connection_sensitivity(model, images, labels, params)
    else:
        scores = random_scores(params, score_rng)
    sm.apply_masks(params, sm.snip_masks(scores, sparsity))
    kept = sum(row[2] for row in sm.pruning_table(model))
    iterations = epochs * -(-len(train) // batch_size)
    optimiser = sm.SGD(sm.parameters_of(model))
    result = {"model": model_name, "sparsity": sparsity, "seed": seed, "method": method,
              "init": init, "epochs": epochs, "lr": lr, "params_kept": kept, "diverged": False}
    state = sm.TrainingState(shuffle_rng)
    try:
        sm.fit(model, optimiser, train, validation, state, iterations=iterations,
               batch_size=batch_size, base_lr=lr, boundaries=[iterations // 2, 3 * iterations // 4],
               log=log or (lambda line: None), on_step=on_step)
        history = state.history
    except sm.Diverged:
        result.update(diverged=True, test_error=math.nan, val_error=math.nan, train_loss=math.nan)
        return result
    result["test_error"] = sm.evaluate(model, test)[1]
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
        print("note: matplotlib is not installed (pip install matplotlib): numbers written, "
              "figures skipped", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(figure, path):
    """Write a figure as PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data.write_file_atomically(path, buffer.getvalue())


def mean_and_spread(values):
    """(mean, standard deviation) of the finite values, (nan, nan) if there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(numpy.mean(finite)), float(numpy.std(finite))
