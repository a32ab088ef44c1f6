r"""Experiment H: how much is data? The same runs on the first 24,345 and on all 60,000
training images of Fashion-MNIST.

Our MNIST runs train on 21,911 images (24,345 less a validation split) where the paper's
trained on 54,000 (60,000 less theirs), and their errors lie 0.7 to 1.4 points above the
paper's. MNIST's full training set is not available here, but Fashion-MNIST's is (Xiao,
Rasul & Vollgraf 2017: 60,000 + 10,000 28x28 grey images, the same format). This grid
trains LeNet-300-100 dense and at 98% and LeNet-5-Caffe dense and at 99% on its first
24,345 training images (`--train-images 24345`, the size of our MNIST subset) and on all
60,000, the same iterations each (snip_min.py's per network: 22,000 and 12,000), 3 seeds,
and asks: does the gap between the pruned and the dense network shrink with more data, and
by how much? Each run is

    python snip_min.py --dataset fashion-mnist --model M --sparsity S --seed K \
        [--train-images 24345]

(LeNet-5-Caffe dense with --lr 0.01, as on MNIST: docs/choices.md) and the grid is

    python experiments/data_size.py --data-dir DIR --jobs 2

with the official files in DIR/fashion-mnist/ (Debian's package dataset-fashion-mnist puts
them in /usr/share/datasets/fashion-mnist: `ln -s /usr/share/datasets/fashion-mnist
DIR/fashion-mnist`; without them the first run downloads them). It writes runs.csv,
summary.json, table.md and data_size.png under results/data_size/. --models, --seeds and
--sizes choose a part of the grid; --iterations shortens every run.

Every run's result is kept in runs/<key>.json as it finishes: the same command continues an
interrupted grid. --list, --task K/N, --jobs N and --collect spread the grid over processes
or a SLURM job array (experiments/slurm-array.sh).
"""

import math
import os
import sys

import common
from common import data, failures, flags, models

TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
SPARSITIES = {"lenet300": [0.0, 0.98], "lenet5": [0.0, 0.99]}
SIZES = [24_345, 60_000]


def learning_rate(model, sparsity):
    """0.1, but 0.01 for the dense LeNet-5-Caffe, which diverges at 0.1 (docs/choices.md)."""
    return 0.01 if model == "lenet5" and sparsity == 0 else 0.1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(parser, "data_size", epochs=None, seeds=3)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet5", "lenet300"],
        choices=sorted(TITLES),
        help="the networks (dense and at the paper's sparsity)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=flags.positive_int,
        default=SIZES,
        help="training set sizes: the first N of Fashion-MNIST's training images",
    )
    common.add_iterations_argument(parser)
    args = common.parse_arguments(parser, argv)
    dataset = data.load_dataset("fashion-mnist", args.data_dir)
    if max(args.sizes) > len(dataset.train_labels):
        parser.error(
            f"--sizes {max(args.sizes):,}: {dataset.description} has only "
            f"{len(dataset.train_labels):,}"
        )
    runs = common.make_grid(grid_points(args, dataset))
    return common.run_grid(
        args,
        argv,
        os.path.abspath(__file__),
        runs,
        perform=lambda settings: perform(args, settings),
        describe=describe,
        collect=lambda found: collect(found, dataset.description, args.out),
    )


def grid_points(args, dataset):
    """[(name, settings)], one per run, seed by seed, the long LeNet-5-Caffe runs first."""
    points = []
    for seed in range(args.seeds):
        for model in args.models:
            iterations = args.iterations or models.MODELS[model].iterations
            for sparsity in SPARSITIES[model]:
                for size in args.sizes:
                    settings = common.run_settings(
                        args,
                        dataset,
                        "data_size",
                        model=model,
                        sparsity=sparsity,
                        seed=seed,
                        iterations=iterations,
                        lr=learning_rate(model, sparsity),
                        train_images=size,
                    )
                    points.append((f"{model}-{100 * sparsity:g}-{size}-seed{seed}", settings))
    return points


def command_line(args, s):
    """The snip_min.py flags of one run. At the network's own iterations, none: snip_min.py's
    schedule (x0.1 after 50% and 75%); shortened, --iterations N with a decay every quarter."""
    shortened = s["iterations"] != models.MODELS[s["model"]].iterations
    schedule = [
        "--iterations",
        str(s["iterations"]),
        "--decay-every",
        str(max(1, s["iterations"] // 4)),
    ]
    return [
        "--dataset",
        "fashion-mnist",
        "--model",
        s["model"],
        "--sparsity",
        str(s["sparsity"]),
        "--seed",
        str(s["seed"]),
        "--lr",
        str(s["lr"]),
        "--clip-norm",  # the grid was measured without clipping, before Experiment I made
        "0",  # it LeNet-5-Caffe's default; every run of it stays so
        "--train-images",
        str(s["train_images"]),
        *(schedule if shortened else []),
        "--device",
        args.device,
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]


def perform(args, s):
    """Train one run with cli.run, as the command line does: its row of runs.csv."""
    out, diverged = common.run_command_line(command_line(args, s))
    result = {
        "model": s["model"],
        "sparsity": s["sparsity"],
        "train_images": s["train_images"],
        "seed": s["seed"],
        "lr": s["lr"],
        "iterations": s["iterations"],
        "diverged": diverged,
    }
    if diverged:
        return {**result, "test_error": math.nan, "data": None, "params_kept": None}
    return {
        **result,
        "test_error": out["test_error"],
        "data": out["data"],
        "params_kept": out["params_kept"],
    }


def describe(s, result):
    outcome = (
        f"diverged ({result['diverged']})"
        if result["diverged"]
        else f"test error {result['test_error']:.2f}%"
    )
    return (
        f"{s['model']} {100 * s['sparsity']:g}% on {s['train_images']:,} images, "
        f"seed {s['seed']}: {outcome}"
    )


# --- collecting --------------------------------------------------------------------------------


def collect(found, description, out):
    """runs.csv, summary.json, table.md and the figure from [(run, result)]."""
    rows = [result for _, result in found]
    common.write_csv(os.path.join(out, "runs.csv"), rows)
    summary = summarise(rows, description)
    common.write_json(os.path.join(out, "summary.json"), summary)
    data.write_file_atomically(os.path.join(out, "table.md"), (table(summary) + "\n").encode())
    plot(summary, out)


def summarise(rows, description):
    """Per network: the mean test error of each sparsity and size, and the gap (pruned minus
    dense) per size, with the spread of the per-seed gaps where both runs of a seed are there."""
    summary = {"data": description, "models": {}}
    for model in TITLES:
        mine = [r for r in rows if r["model"] == model]
        if not mine:
            continue
        dense, pruned = SPARSITIES[model]
        entry = {"sparsity": pruned, "iterations": mine[0]["iterations"], "sizes": {}}
        for size in sorted({r["train_images"] for r in mine}):
            by = {
                (r["sparsity"], r["seed"]): r["test_error"]
                for r in mine
                if r["train_images"] == size
            }
            gaps = [
                by[(pruned, k)] - by[(dense, k)]
                for (s, k) in by
                if s == pruned and (dense, k) in by
            ]
            entry["sizes"][str(size)] = {
                "dense": common.mean_and_spread([e for (s, _), e in by.items() if s == dense]),
                "pruned": common.mean_and_spread([e for (s, _), e in by.items() if s == pruned]),
                "gap": common.mean_and_spread(gaps),
                "seeds": len(gaps),
            }
        summary["models"][model] = entry
    return summary


def table(summary):
    def cell(values):
        mean, spread = values
        return (
            "—"
            if mean != mean
            else f"{mean:.2f}" + ("" if spread != spread else f" ± {spread:.2f}")
        )

    lines = [
        "Test error (%) on Fashion-MNIST's 10,000 test images, trained on the first N of its "
        "training images (a tenth of them held out for validation), mean ± standard deviation "
        "over the seeds; the gap is pruned minus dense, seed by seed.",
        "",
        "| network | training images | seeds | dense | pruned | gap (points) |",
        "|---|---|---|---|---|---|",
    ]
    for model, entry in summary["models"].items():
        for size, cells in entry["sizes"].items():
            lines.append(
                f"| {TITLES[model]}, {100 * entry['sparsity']:g}% | {int(size):,} | "
                f"{cells['seeds']} | {cell(cells['dense'])} | {cell(cells['pruned'])} | "
                f"{cell(cells['gap'])} |"
            )
    return "\n".join(lines)


def plot(summary, out):
    plt = common.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(
        1, len(summary["models"]), figsize=(5.2 * len(summary["models"]), 4.2), squeeze=False
    )
    for axis, (model, entry) in zip(axes[0], summary["models"].items()):
        sizes = list(entry["sizes"])
        for key, label, style in (
            ("dense", "dense", "s--"),
            ("pruned", f"{100 * entry['sparsity']:g}% (SNIP)", "o-"),
        ):
            axis.errorbar(
                [int(s) for s in sizes],
                [entry["sizes"][s][key][0] for s in sizes],
                yerr=[
                    0
                    if entry["sizes"][s][key][1] != entry["sizes"][s][key][1]
                    else entry["sizes"][s][key][1]
                    for s in sizes
                ],
                fmt=style,
                capsize=3,
                label=label,
            )
        for s in sizes:
            gap = entry["sizes"][s]["gap"][0]
            axis.annotate(
                f"gap {gap:+.2f}",
                (int(s), entry["sizes"][s]["pruned"][0]),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
            )
        axis.set_xscale("log")
        axis.set_xticks([int(s) for s in sizes], [f"{int(s):,}" for s in sizes])
        axis.set_xticks([], minor=True)
        axis.margins(x=0.15, y=0.15)
        axis.set_xlabel("training images (Fashion-MNIST)")
        axis.set_ylabel("test error (%)")
        axis.set_title(f"{TITLES[model]}, {entry['iterations']:,} iterations", fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(
        "More data, same iterations: the pruned network against the dense one, mean ± std "
        "over seeds",
        fontsize=9,
    )
    figure.tight_layout()
    common.save_figure(figure, os.path.join(out, "data_size.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
