"""Experiment D: how the data SNIP scores on and the initialisation it scores change the result.

(i) The scoring batch: its size (1, 10, 100, 1000 images) and its composition (drawn at
    random from all classes, or from a single class) against the final test error of
    LeNet-300-100.
(ii) The initialisation: random normal (RN), truncated normal (TN), variance scaling Glorot
    (VS-X) and He (VS-H), for both LeNets, mean +- std over seeds: the paper's Table 3.

    python experiments/data_and_init.py --data-dir ../shared/data

writes batch.csv, init.csv, summary.json, init_table.md and two figures under
results/data_and_init/. --part batch or --part init runs one half.
"""

import argparse
import os
import sys

import numpy

import common
from common import data, sm

BATCH_SIZES = [1, 10, 100, 1000]
INITIALISATIONS = ["rn", "tn", "vs-x", "vs-h"]
TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
SPARSITY = {"lenet300": 0.98, "lenet5": 0.99}           # the paper's Table 1 levels
DEFAULT_EPOCHS = {"lenet300": 30, "lenet5": 5}
LEARNING_RATE = {"lenet300": 0.1, "lenet5": 0.1}


def scoring_index(labels, size, composition, seed):
    """Positions of a scoring batch in the training split: `size` images drawn at random from
    all classes, or all from one class (class seed % 10)."""
    rng = numpy.random.default_rng(10_000 + seed)
    pool = numpy.arange(len(labels)) if composition == "random" else numpy.flatnonzero(labels == seed % 10)
    return rng.choice(pool, size=size, replace=False)


def batch_part(dataset, args):
    model = "lenet300"
    epochs = args.epochs or DEFAULT_EPOCHS[model]
    # the training split is the same for every run with the same seed: read its labels once
    rows = []
    for seed in range(args.seeds):
        train, _, _ = sm.split_dataset(dataset, 0.1, common.seed_streams(seed)[1])
        labels = sm.to_host(train.labels)
        for composition in ("random", "one class"):
            for size in args.batch_sizes:
                index = scoring_index(labels, size, composition, seed)
                result = common.train_once(dataset, model, SPARSITY[model], seed, epochs,
                                           score_index=index, lr=LEARNING_RATE[model])
                result.update(batch_size=size, composition=composition)
                rows.append(result)
                print(f"scoring batch {size:>4} {composition:>9}, seed {seed}: "
                      f"test error {result['test_error']:.2f}%")
    return rows


def init_part(dataset, args):
    rows = []
    for model in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS[model]
        for init in INITIALISATIONS:
            for seed in range(args.seeds):
                result = common.train_once(dataset, model, SPARSITY[model], seed, epochs, init=init,
                                           lr=LEARNING_RATE[model])
                rows.append(result)
                print(f"{model} {init:>4} seed {seed}: test error {result['test_error']:.2f}%"
                      f"{' (diverged)' if result['diverged'] else ''}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser, "data_and_init", epochs=None, seeds=3)
    parser.add_argument("--part", choices=("batch", "init", "both"), default="both")
    parser.add_argument("--models", nargs="+", default=["lenet300", "lenet5"], choices=sorted(TITLES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=BATCH_SIZES)
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)
    summary = {"data": dataset.description, "sparsity": SPARSITY}
    if args.part in ("batch", "both"):
        rows = batch_part(dataset, args)
        common.write_csv(os.path.join(args.out, "batch.csv"), rows)
        summary["batch"] = {
            composition: [{"batch_size": size, **dict(zip(("mean", "std"), common.mean_and_spread(
                [r["test_error"] for r in rows if r["composition"] == composition and r["batch_size"] == size])))}
                for size in args.batch_sizes]
            for composition in ("random", "one class")}
        summary["batch_epochs"] = rows[0]["epochs"]
        plot_batch(summary, args.seeds, args.out)
    if args.part in ("init", "both"):
        rows = init_part(dataset, args)
        common.write_csv(os.path.join(args.out, "init.csv"), rows)
        summary["init"] = {model: {init: dict(zip(("mean", "std"), common.mean_and_spread(
            [r["test_error"] for r in rows if r["model"] == model and r["init"] == init])))
            for init in INITIALISATIONS} for model in args.models}
        summary["init_epochs"] = {model: args.epochs or DEFAULT_EPOCHS[model] for model in args.models}
        table = init_table(summary, args.seeds)
        data.write_file_atomically(os.path.join(args.out, "init_table.md"), table.encode())
        print(table)
        plot_init(summary, args.seeds, args.out)
    common.write_json(os.path.join(args.out, "summary.json"), summary)
    return 0


def init_table(summary, seeds):
    """The paper's Table 3 layout: test error (%) mean +- std for each initialisation."""
    models = list(summary["init"])
    lines = ["| initialisation | " + " | ".join(f"{TITLES[m]} ({100 * SPARSITY[m]:g}%)" for m in models) + " |",
             "|---|" + "---|" * len(models)]
    names = {"rn": "RN (normal, std 0.1)", "tn": "TN (truncated normal, std 0.1)",
             "vs-x": "VS-X (Glorot)", "vs-h": "VS-H (He)"}
    for init in INITIALISATIONS:
        cells = [f"{summary['init'][m][init]['mean']:.2f} ± {summary['init'][m][init]['std']:.2f}" for m in models]
        lines.append(f"| {names[init]} | " + " | ".join(cells) + " |")
    epochs = ", ".join(f"{TITLES[m]} {e} epochs" for m, e in summary["init_epochs"].items())
    lines.append(f"\nTest error (%), mean ± std over {seeds} seeds; {summary['data']}; {epochs}.")
    return "\n".join(lines) + "\n"


def plot_batch(summary, seeds, out):
    plt = common.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for composition, style in (("random", "o-"), ("one class", "s--")):
        points = summary["batch"][composition]
        axes.errorbar([p["batch_size"] for p in points], [p["mean"] for p in points],
                      yerr=[p["std"] for p in points], fmt=style, capsize=3,
                      label=f"scoring batch drawn from {'all classes' if composition == 'random' else 'one class'}")
    axes.set_xscale("log")
    axes.set_xlabel("scoring batch size (images)")
    axes.set_ylabel("test error (%)")
    axes.set_title(f"LeNet-300-100 at 98%: the batch SNIP scores on\n{summary['data']}, "
                   f"{summary['batch_epochs']} epochs, mean ± std over {seeds} seeds", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    common.save_figure(figure, os.path.join(out, "scoring_batch.png"))
    plt.close(figure)


def plot_init(summary, seeds, out):
    plt = common.pyplot()
    if plt is None:
        return
    models = list(summary["init"])
    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        means = [summary["init"][model][i]["mean"] for i in INITIALISATIONS]
        stds = [summary["init"][model][i]["std"] for i in INITIALISATIONS]
        ax.bar([i.upper() for i in INITIALISATIONS], means, yerr=stds, capsize=4, color="#4c72b0")
        ax.set_ylabel("test error (%)")
        ax.set_xlabel("initialisation")
        ax.set_title(f"{TITLES[model]} at {100 * SPARSITY[model]:g}%", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"SNIP under four initialisations (the paper's Table 3)\n{summary['data']}, "
                    f"mean ± std over {seeds} seeds", fontsize=10)
    figure.tight_layout()
    common.save_figure(figure, os.path.join(out, "initialisation.png"))
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
