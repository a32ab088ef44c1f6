"""Experiment A: test error against sparsity for both LeNets, SNIP against random pruning.

The paper prunes LeNet-300-100 up to 98% and LeNet-5-Caffe up to 99% "with marginal
increases in error"; random pruning at the same sparsity (kappa connections chosen uniformly
over the whole network) is the baseline SNIP has to beat.

    python experiments/sparsity_sweep.py --data-dir ../shared/data

writes results/sparsity_sweep/sweep.csv (one row per run), summary.json (mean and standard
deviation per setting) and one figure per network. The paper's schedule is a flag away:
--epochs 185 (100k iterations of 100 on 54,000 images), more --seeds, --device gpu.
"""

import argparse
import os
import sys

import common
from common import data, sm

SPARSITIES = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
DEFAULT_EPOCHS = {"lenet300": 30, "lenet5": 5}     # about 15 s and 45 s a run on two CPU cores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser, "sparsity_sweep", epochs=None, seeds=2)
    parser.add_argument("--models", nargs="+", default=["lenet300", "lenet5"], choices=sorted(TITLES))
    parser.add_argument("--sparsities", nargs="+", type=float, default=SPARSITIES)
    parser.add_argument("--methods", nargs="+", default=["snip", "random"], choices=("snip", "random"))
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: 0.1, and 0.01 for LeNet-5-Caffe, whose "
                             "dense network diverges from 0.02 up, in PyTorch too)")
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)

    rows = []
    for model in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS[model]
        lr = args.lr or (0.01 if model == "lenet5" else 0.1)
        for sparsity in args.sparsities:
            for method in args.methods:
                for seed in range(args.seeds):
                    result = common.train_once(dataset, model, sparsity, seed, epochs, method=method, lr=lr)
                    rows.append(result)
                    print(f"{model} sparsity {sparsity:g} {method} seed {seed}: test error "
                          f"{result['test_error']:.2f}%{' (diverged)' if result['diverged'] else ''}")
    common.write_csv(os.path.join(args.out, "sweep.csv"), rows)
    summary = summarise(rows, dataset.description)
    common.write_json(os.path.join(args.out, "summary.json"), summary)
    plot(summary, args.out)
    return 0


def summarise(rows, description):
    """{model: {method: [{sparsity, mean, std, runs}]}} plus what the data was."""
    summary = {"data": description, "models": {}}
    for row in rows:
        model = summary["models"].setdefault(row["model"], {"epochs": row["epochs"], "lr": row["lr"],
                                                            "methods": {}})
        points = model["methods"].setdefault(row["method"], {})
        points.setdefault(row["sparsity"], []).append(row["test_error"])
    for model in summary["models"].values():
        for method, points in model["methods"].items():
            model["methods"][method] = [
                {"sparsity": s, "mean": common.mean_and_spread(errors)[0],
                 "std": common.mean_and_spread(errors)[1], "runs": len(errors),
                 "diverged": sum(e != e for e in errors)}
                for s, errors in sorted(points.items())]
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
            axes.errorbar(range(len(x)), [p["mean"] for p in points], yerr=[p["std"] for p in points],
                          fmt=style, capsize=3, label="SNIP" if method == "snip" else "random pruning")
            axes.set_xticks(range(len(x)), [f"{v:g}" for v in x])
        runs = max(p["runs"] for points in model["methods"].values() for p in points)
        axes.set_yscale("log")
        axes.set_xlabel("sparsity (% of parameters pruned)")
        axes.set_ylabel("test error (%)")
        axes.set_title(f"{TITLES[name]}: test error against sparsity\n{summary['data']}, "
                       f"{model['epochs']} epochs, mean ± std over {runs} seeds", fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        common.save_figure(figure, os.path.join(out, f"sweep-{name}.png"))
        plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
