"""Experiment F: what did SNIP learn? The sanity checks of pruning at initialisation, applied
to SNIP and to the criteria that followed it.

Frankle et al. (ICLR 2021) and Su et al. (NeurIPS 2020) found, on CIFAR and ImageNet
networks, that shuffling each layer's mask, or re-initialising the kept weights, costs SNIP
and its successors little: what they decide is mostly how many weights each layer keeps.
This grid asks the same of the LeNets on MNIST, where each run takes minutes: every
criterion of criteria.py (snip, iterative-snip, grasp, synflow, magnitude, and random as
the floor) as it is and under each check of sanity.py (shuffle, reinit, invert, and
corrupt-data for the criteria that read data), for LeNet-300-100 and LeNet-5-Caffe at 90%
and at the paper's sparsities (98%, 99%), 3 seeds, with snip_min.py's default schedule:
22,000 iterations for LeNet-300-100 and 12,000 for LeNet-5-Caffe, x0.1 after 50% and 75% of
them, from the learning rate 0.1 for LeNet-300-100 and 0.01 for LeNet-5-Caffe (at 0.1 GraSP's
and iterative SNIP's LeNet-5-Caffe diverge within 20 iterations; 0.01 as in experiments A
and D). Each run is what `snip_min.py --method M --sanity-check C --lr LR` does.

    python experiments/sanity_checks.py --data-dir DIR --jobs 2

writes runs.csv (one row per run, with each parameter's kept count and the alive units),
summary.json, table.md, sanity_checks.png (test error per criterion and check) and
layer_densities.png (the share of each layer each criterion keeps) under
results/sanity_checks/. --models, --sparsities, --methods, --checks and --seeds choose a
part of the grid; --iterations shortens every run.

Every run's result is kept in runs/<key>.json as it finishes: the same command continues an
interrupted grid. --list, --task K/N, --jobs N and --collect spread the grid over processes
or a SLURM job array (experiments/slurm-array.sh).
"""

import os
import sys

import common
from common import criteria, data, failures, flags, models, sanity, sm

TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe", "lstm-s": "LSTM-s"}
SPARSITIES = {"lenet300": [0.98, 0.9], "lenet5": [0.99, 0.9], "lstm-s": [0.95]}  # the paper's first
METHODS = ["snip", "iterative-snip", "grasp", "synflow", "magnitude", "random"]
CHECKS = ["none", *sanity.CHECKS]
LEARNING_RATE = {"lenet5": 0.01}  # otherwise 0.1, snip_min.py's default
LABELS = {
    "snip": "SNIP",
    "iterative-snip": "iterative SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "magnitude": "magnitude",
    "random": "random",
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(parser, "sanity_checks", epochs=None, seeds=3)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=sorted(TITLES),
        help="the networks (lstm-s: at 95%%, 10,000 iterations)",
    )
    parser.add_argument(
        "--sparsities",
        nargs="+",
        type=flags.sparsity_value,
        default=None,
        help="fractions pruned (default: the paper's for each network, and 90%%)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=METHODS,
        choices=METHODS,
        help="the criteria (random: as it is only, the floor)",
    )
    parser.add_argument(
        "--checks",
        nargs="+",
        default=CHECKS,
        choices=CHECKS,
        help="the sanity checks, and none (corrupt-data only for the criteria that read data)",
    )
    common.add_iterations_argument(parser)
    parser.add_argument(
        "--rounds",
        type=flags.positive_int,
        default=100,
        help="rounds of the iterative criteria (synflow, iterative-snip)",
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


def checks_of(method, checks):
    """The checks that mean something for a criterion: none for random (shuffled, re-drawn or
    inverted, a random mask is a random mask), no corrupt-data for the data-free ones."""
    if method == "random":
        return [c for c in checks if c == "none"]
    return [c for c in checks if not (c == "corrupt-data" and method in criteria.DATA_FREE)]


def grid_points(args, dataset):
    """[(name, settings)], one per run: network, sparsity, seed, criterion, check (so that a
    grid stopped early holds whole seeds of the first settings)."""
    points = []
    for model in args.models:
        iterations = args.iterations or models.MODELS[model].iterations
        for sparsity in args.sparsities or SPARSITIES[model]:
            lr = LEARNING_RATE.get(model, 0.1)
            for seed in range(args.seeds):
                for method in args.methods:
                    for check in checks_of(method, args.checks):
                        extra = {"rounds": args.rounds} if method in criteria.ITERATIVE else {}
                        if check == "invert":
                            extra["ties"] = "random"  # sanity.py breaks inverted ties at random
                        settings = common.run_settings(
                            args,
                            dataset,
                            "sanity_checks",
                            model=model,
                            sparsity=sparsity,
                            method=method,
                            sanity_check=check,
                            **extra,
                            seed=seed,
                            iterations=iterations,
                            lr=lr,
                        )
                        points.append(
                            (f"{model}-{100 * sparsity:g}-{method}-{check}-seed{seed}", settings)
                        )
    return points


def perform(dataset, s):
    """Train one run from its settings: its row of runs.csv."""
    check = None if s["sanity_check"] == "none" else s["sanity_check"]
    result = common.train_once(
        dataset,
        s["model"],
        s["sparsity"],
        s["seed"],
        None,
        method=s["method"],
        lr=s["lr"],
        batch_size=s["batch_size"],
        sanity_check=check,
        rounds=s.get("rounds", 100),
        iterations=s["iterations"],
        details=True,
    )
    result.update(sanity_check=s["sanity_check"], iterations=s["iterations"], epochs=None)
    return result


def describe(s, result):
    error = "diverged" if result["diverged"] else f"test error {result['test_error']:.2f}%"
    return (
        f"{s['model']} {100 * s['sparsity']:g}% {s['method']:>14} {s['sanity_check']:>12} "
        f"seed {s['seed']}: {error}"
    )


# --- collecting --------------------------------------------------------------------------------


def settings_of(found):
    """[(model, sparsity)] in the grid's order, and the criteria and checks present."""
    panels = list(dict.fromkeys((r["model"], r["sparsity"]) for _, r in found))
    methods = [m for m in METHODS if any(r["method"] == m for _, r in found)]
    checks = [c for c in CHECKS if any(r["sanity_check"] == c for _, r in found)]
    return panels, methods, checks


def summarise(found):
    """{model: {sparsity: {method: {check: {mean, std, runs, diverged}}}}} of the test error,
    and each cell's mean kept share per parameter (the layer densities)."""
    summary = {}
    for run, r in found:
        cell = (
            summary.setdefault(r["model"], {})
            .setdefault(str(r["sparsity"]), {})
            .setdefault(r["method"], {})
            .setdefault(
                r["sanity_check"], {"errors": [], "diverged": 0, "disconnected": 0, "kept": []}
            )
        )
        cell["errors"].append(r["test_error"])
        cell["diverged"] += bool(r["diverged"])
        cell["disconnected"] += disconnected(r)
        cell["kept"].append(r["per_layer"])
    for model in summary.values():
        for sparsity in model.values():
            for method in sparsity.values():
                for check, cell in method.items():
                    mean, std = common.mean_and_spread(cell["errors"])
                    names = list(cell["kept"][0])
                    method[check] = {
                        "mean": mean,
                        "std": std,
                        "runs": len(cell["errors"]),
                        "diverged": cell["diverged"],
                        "disconnected": cell["disconnected"],
                        "kept": {
                            n: sum(k[n] for k in cell["kept"]) / len(cell["kept"]) for n in names
                        },
                    }
    return summary


def table(summary, found, description):
    """One Markdown table per network and sparsity: a row per criterion, a column per check."""
    panels, methods, checks = settings_of(found)
    iterations = {r["model"]: r["iterations"] for _, r in found}
    lines = []
    for model, sparsity in panels:
        cells = summary[model][str(sparsity)]
        lr = next(r["lr"] for _, r in found if r["model"] == model and r["sparsity"] == sparsity)
        seeds = run_counts(cells)[-1]
        lines += [
            f"### {TITLES[model]} at {100 * sparsity:g}% ({iterations[model]:,} iterations, "
            f"lr {lr:g}; {seeds} seed{'s' if seeds != 1 else ''})",
            "",
            "| criterion | " + " | ".join(checks) + " |",
            "|---|" + "---|" * len(checks),
        ]
        for method in methods:
            row = []
            for check in checks:
                cell = cells.get(method, {}).get(check)
                row.append("–" if cell is None else format_cell(cell, seeds))
            lines.append(f"| {LABELS[method]} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append(
        f"Test error (%), mean ± std over the seeds in each heading, or over the runs a cell "
        f"names (a single run: ± 0.00); "
        f"{description}. none: the criterion as it is; "
        f"– : not run (random takes no check; the data-free criteria, no corrupt-data); "
        f"disconnected: the mask left some layer without a weight."
    )
    return "\n".join(lines) + "\n"


def run_counts(cells):
    """The numbers of runs the cells of one network and sparsity hold, {method: {check: cell}},
    smallest first (one number when every cell has as many seeds)."""
    return sorted({cell["runs"] for checks in cells.values() for cell in checks.values()})


def disconnected(result):
    """True if the mask left some weight array without a single connection."""
    return any(kept == 0 for name, kept in result["per_layer"].items() if name.endswith(".weight"))


def all_diverged(cell):
    """True if every run of a cell diverged: it has no test error to average or draw."""
    return cell["diverged"] == cell["runs"]


def format_cell(cell, seeds):
    """'mean ± std', and what is unusual: fewer runs than the heading's seeds, runs that
    diverged or were disconnected."""
    every_run_diverged = all_diverged(cell)
    text = "diverged" if every_run_diverged else f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    notes = (
        [f"{cell['runs']} run{'s' if cell['runs'] != 1 else ''}"] if cell["runs"] < seeds else []
    )
    notes += [
        f"{cell[key]} of {cell['runs']} {key}"
        for key in ("diverged", "disconnected")
        if cell[key] and not (key == "diverged" and every_run_diverged)
    ]
    return text + (f" ({', '.join(notes)})" if notes else "")


def csv_rows(found):
    """One row per run: its settings and result, each parameter's kept count and alive units."""
    rows = []
    for run, r in found:
        row = {
            key: r[key]
            for key in (
                "model",
                "sparsity",
                "method",
                "sanity_check",
                "seed",
                "iterations",
                "lr",
                "params_kept",
                "test_error",
                "val_error",
                "train_loss",
                "diverged",
            )
        }
        row.update({f"kept {name}": kept for name, kept in r["per_layer"].items()})
        row.update({f"alive {name}": alive for name, (alive, _) in r["alive_units"].items()})
        rows.append(row)
    return rows


def collect(found, description, out):
    """runs.csv, summary.json, table.md and the two figures from [(run, result)]."""
    summary = summarise(found)
    rows = csv_rows(found)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    common.write_csv(
        os.path.join(out, "runs.csv"), [{key: row.get(key, "") for key in columns} for row in rows]
    )
    common.write_json(os.path.join(out, "summary.json"), {"data": description, "error": summary})
    text = table(summary, found, description)
    data.write_file_atomically(os.path.join(out, "table.md"), text.encode())
    print(text)
    plot_errors(summary, found, description, out)
    plot_densities(summary, found, out)


def plot_errors(summary, found, description, out):
    """One panel per network and sparsity: for each criterion, a bar per check; random as a
    dashed line across (the floor)."""
    plt = common.pyplot()
    if plt is None:
        return
    panels, methods, checks = settings_of(found)
    criteria_shown = [m for m in methods if m != "random"]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    colours = {
        "none": "#222222",
        "shuffle": "#4c72b0",
        "reinit": "#55a868",
        "invert": "#c44e52",
        "corrupt-data": "#dd8452",
    }
    width = 0.8 / len(checks)
    for ax, (model, sparsity) in zip(axes[0], panels):
        cells = summary[model][str(sparsity)]
        for k, check in enumerate(checks):
            xs, means, stds = [], [], []
            for i, method in enumerate(criteria_shown):
                cell = cells.get(method, {}).get(check)
                x = i + (k - (len(checks) - 1) / 2) * width
                if cell is not None and all_diverged(cell):  # no bar: say why
                    ax.text(
                        x,
                        0.02,
                        "diverged",
                        transform=ax.get_xaxis_transform(),
                        rotation=90,
                        fontsize=6,
                        ha="center",
                        va="bottom",
                        color=colours[check],
                    )
                elif cell is not None:
                    xs.append(x)
                    means.append(cell["mean"])
                    stds.append(cell["std"])
            ax.bar(xs, means, width, yerr=stds, capsize=2, color=colours[check], label=check)
        if "random" in cells:
            ax.axhline(
                cells["random"]["none"]["mean"],
                color="#888888",
                linestyle="--",
                label="random (the floor)",
            )
        ax.set_xticks(range(len(criteria_shown)))
        ax.set_xticklabels([LABELS[m] for m in criteria_shown], rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("test error (%), log scale")
        runs = run_counts(cells)
        seeds = f"{runs[0]}–{runs[-1]}" if len(runs) > 1 else f"{runs[0]}"
        ax.set_title(
            f"{TITLES[model]} at {100 * sparsity:g}% ({seeds} seed{'s' if seeds != '1' else ''})",
            fontsize=10,
        )
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(
        f"The sanity checks of pruning at initialisation: {description}, mean ± std over "
        f"the seeds in each title",
        fontsize=10,
    )
    figure.tight_layout()
    common.save_figure(figure, os.path.join(out, "sanity_checks.png"))


def plot_densities(summary, found, out):
    """For each network at its first sparsity: the share of each weight array each criterion
    keeps (as it is, mean over seeds); what the shuffle check keeps fixed."""
    plt = common.pyplot()
    if plt is None:
        return
    panels, methods, _ = settings_of(found)
    first = {}
    for model, sparsity in panels:
        first.setdefault(model, sparsity)
    figure, axes = plt.subplots(1, len(first), figsize=(5.2 * len(first), 4.0), squeeze=False)
    for ax, (model, sparsity) in zip(axes[0], first.items()):
        cells = summary[model][str(sparsity)]
        totals = parameter_sizes(model)
        names = [name for name in totals if ".weight" in name or "_weight" in name]
        for method in methods:
            if "none" not in cells.get(method, {}):
                continue
            kept = cells[method]["none"]["kept"]
            ax.plot(
                range(len(names)),
                [100 * kept[n] / totals[n] for n in names],
                "o-",
                label=LABELS[method],
            )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("weights kept (%), log scale")
        ax.set_title(f"{TITLES[model]} at {100 * sparsity:g}%: each layer's share", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    common.save_figure(figure, os.path.join(out, "layer_densities.png"))


def parameter_sizes(model):
    """{pruning-table row: its number of entries} of a network, as in a run's per_layer (one row
    per gate of a recurrent layer's Params)."""
    network = models.build(model)
    sm.initialise(network)
    return {name: total for name, total, _ in sm.pruning_table(network)}


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
