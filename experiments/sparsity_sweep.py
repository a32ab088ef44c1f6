"""Experiment A: test error against sparsity for both LeNets, SNIP against random pruning.

The paper prunes LeNet-300-100 up to 98% and LeNet-5-Caffe up to 99% "with marginal
increases in error"; random pruning at the same sparsity (kappa connections chosen uniformly
over the whole network) is the baseline SNIP has to beat.

    python experiments/sparsity_sweep.py --data-dir DIR

writes results/sparsity_sweep/sweep.csv (one row per run), summary.json (mean and standard
deviation per setting) and one figure per network. The paper's schedule is a flag away:
--epochs 185 (100k iterations of 100 on 54,000 images), more --seeds, --device gpu.

Every run's result is kept in runs/<key>.json as it finishes: the same command continues an
interrupted sweep. --list, --task K/N, --jobs N and --collect spread the grid over processes
or a SLURM job array (experiments/slurm-array.sh).
"""

import os
import sys

import common
from common import data, failures, flags

SPARSITIES = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
DEFAULT_EPOCHS = {"lenet300": 30, "lenet5": 5}  # about 15 s and 45 s a run on two CPU cores


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(parser, "sparsity_sweep", epochs=None, seeds=2)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=sorted(TITLES),
        help="the networks to prune",
    )
    parser.add_argument(
        "--sparsities",
        nargs="+",
        type=flags.sparsity_value,
        default=SPARSITIES,
        help="fractions of the parameters to prune",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["snip", "random"],
        choices=("snip", "random"),
        help="SNIP, and the random-pruning baseline",
    )
    parser.add_argument(
        "--lr",
        type=flags.positive_float,
        default=None,
        help="learning rate (default: 0.1, and 0.01 for LeNet-5-Caffe, whose "
        "dense network diverges from 0.02 up, in PyTorch too)",
    )
    args = common.parse_arguments(parser, argv)
    dataset = data.load_dataset("mnist", args.data_dir)
    runs = common.make_grid(grid_points(args, dataset))
    return common.run_grid(
        args,
        argv,
        os.path.abspath(__file__),
        runs,
        perform=lambda settings: perform(dataset, settings),
        describe=describe,
        collect=lambda found: collect(found, dataset.description, args.out),
    )


def grid_points(args, dataset):
    """[(name, settings)], one per run, in the order of the CSV's rows."""
    points = []
    for model in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS[model]
        lr = args.lr or (0.01 if model == "lenet5" else 0.1)
        for sparsity in args.sparsities:
            for method in args.methods:
                for seed in range(args.seeds):
                    settings = common.run_settings(
                        args,
                        dataset,
                        "sparsity_sweep",
                        model=model,
                        sparsity=sparsity,
                        method=method,
                        seed=seed,
                        epochs=epochs,
                        lr=lr,
                    )
                    points.append((f"{model}-{100 * sparsity:g}-{method}-seed{seed}", settings))
    return points


def perform(dataset, s):
    """Train one run of the grid from its settings; its row of sweep.csv."""
    return common.train_once(
        dataset,
        s["model"],
        s["sparsity"],
        s["seed"],
        s["epochs"],
        method=s["method"],
        init=s["init"],
        lr=s["lr"],
        batch_size=s["batch_size"],
    )


def describe(s, result):
    return (
        f"{s['model']} sparsity {s['sparsity']:g} {s['method']} seed {s['seed']}: test error "
        f"{result['test_error']:.2f}%{' (diverged)' if result['diverged'] else ''}"
    )


def collect(found, description, out):
    """sweep.csv, summary.json and the figures from [(run, result)]."""
    rows = [result for _, result in found]
    common.write_csv(os.path.join(out, "sweep.csv"), rows)
    summary = summarise(rows, description)
    common.write_json(os.path.join(out, "summary.json"), summary)
    plot(summary, out)


def summarise(rows, description):
    """{model: {method: [{sparsity, mean, std, runs}]}} plus what the data was."""
    summary = {"data": description, "models": {}}
    for row in rows:
        model = summary["models"].setdefault(
            row["model"], {"epochs": row["epochs"], "lr": row["lr"], "methods": {}}
        )
        points = model["methods"].setdefault(row["method"], {})
        points.setdefault(row["sparsity"], []).append(row["test_error"])
    for model in summary["models"].values():
        for method, points in model["methods"].items():
            model["methods"][method] = [
                {
                    "sparsity": s,
                    "mean": common.mean_and_spread(errors)[0],
                    "std": common.mean_and_spread(errors)[1],
                    "runs": len(errors),
                    "diverged": sum(e != e for e in errors),
                }
                for s, errors in sorted(points.items())
            ]
    return summary


def plot(summary, out):
    plt = common.pyplot()
    if plt is None:
        return
    for name, model in summary["models"].items():
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for method, style in (("snip", "o-"), ("random", "s--")):
            points = model["methods"].get(method)
            if not points:
                continue
            x = [100 * p["sparsity"] for p in points]
            axes.errorbar(
                range(len(x)),
                [p["mean"] for p in points],
                yerr=[p["std"] for p in points],
                fmt=style,
                capsize=3,
                label="SNIP" if method == "snip" else "random pruning",
            )
            axes.set_xticks(range(len(x)), [f"{v:g}" for v in x])
        runs = max(p["runs"] for points in model["methods"].values() for p in points)
        if any(p["mean"] > 0 for points in model["methods"].values() for p in points):
            axes.set_yscale("log")  # (not when every run diverged)
        axes.set_xlabel("sparsity (% of parameters pruned)")
        axes.set_ylabel("test error (%)")
        axes.set_title(
            f"{TITLES[name]}: test error against sparsity\n{summary['data']}, "
            f"{model['epochs']} epochs, mean ± std over {runs} seeds",
            fontsize=10,
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        common.save_figure(figure, os.path.join(out, f"sweep-{name}.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
