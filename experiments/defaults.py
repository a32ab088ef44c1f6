"""Experiment I: defaults that train. Which settings let both LeNets train at every sparsity,
from dense to 99%, with nothing but --sparsity given?

The paper's stated protocol (learning rate 0.1, momentum 0.9, variance scaling) trains
LeNet-5-Caffe at its Table 1 sparsities, 98% and 99%, but the dense network and the milder
sparsities blow up within the first 20 iterations. This grid tries the paper's settings and
a few remedies on both LeNets at sparsities 0, 50, 90, 95, 98 and 99%, 3 seeds each, with
snip_min.py's default schedule (22,000 iterations for LeNet-300-100, 12,000 for
LeNet-5-Caffe, the learning rate x0.1 after 50% and 75% of them):

    paper      --lr 0.1, VS-H initialisation (snip_min.py's defaults before this grid)
    lr-0.01    --lr 0.01 (what experiments A, D and F use for LeNet-5-Caffe)
    warmup     --warmup 500: the learning rate climbs linearly to 0.1 over 500 iterations
    lecun      --init lecun: LeCun's truncated scaling, the authors' code's default
    clip-1     --clip-norm 1: the gradients scaled down to a global norm of at most 1

Each run is what `snip_min.py --model M --sparsity S --seed K --clip-norm 0` (the paper's
settings on snip-min's schedule) with the remedy's flag does. The grid chose snip_min.py's
defaults: since it, LeNet-5-Caffe clips at norm 1 unless told otherwise (docs/choices.md).
A run fails when its loss becomes non-finite (diverged) or when it ends no better than
chance (80% test error or more: every unit dead after one violent step).

    python experiments/defaults.py --data-dir DIR --jobs 2

writes runs.csv (one row per run), summary.json, table.md and defaults.png under
results/defaults/. --models, --sparsities, --remedies and --seeds choose a part of the
grid; --iterations N shortens every run (its learning rate still drops at 50% and 75% of N).

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
SPARSITIES = [0.0, 0.5, 0.9, 0.95, 0.98, 0.99]
# each remedy: the flags it changes from the paper's settings (lr 0.1, VS-H, no warm-up or
# clipping), as train_once's arguments
REMEDIES = {
    "paper": {},
    "lr-0.01": {"lr": 0.01},
    "warmup": {"warmup": 500},
    "lecun": {"init": "lecun"},
    "clip-1": {"clip_norm": 1.0},
}
FLAGS = {
    "paper": "",
    "lr-0.01": "--lr 0.01",
    "warmup": "--warmup 500",
    "lecun": "--init lecun",
    "clip-1": "--clip-norm 1",
}
PAPER = {"lr": 0.1, "init": "vs-h", "warmup": 0, "clip_norm": None}  # what a remedy changes
CHANCE = 80.0  # a test error at or above this: the network learnt nothing
NOT_RUN = {"mean": math.nan, "std": math.nan, "failed": 0}  # a cell the grid's part left out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(parser, "defaults", epochs=None, seeds=3)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=sorted(TITLES),
        help="the networks",
    )
    parser.add_argument(
        "--sparsities",
        nargs="+",
        type=flags.sparsity_value,
        default=SPARSITIES,
        help="fractions pruned",
    )
    parser.add_argument(
        "--remedies", nargs="+", default=list(REMEDIES), choices=list(REMEDIES), help="settings"
    )
    common.add_iterations_argument(parser)
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
    """[(name, settings)], one per run: network, seed, sparsity, remedy (so that a grid
    stopped early holds whole seeds)."""
    points = []
    for model in args.models:
        iterations = args.iterations or models.MODELS[model].iterations
        for seed in range(args.seeds):
            for sparsity in args.sparsities:
                for remedy in args.remedies:
                    settings = common.run_settings(
                        args,
                        dataset,
                        "defaults",
                        model=model,
                        sparsity=sparsity,
                        remedy=remedy,
                        seed=seed,
                        iterations=iterations,
                        **{**PAPER, **REMEDIES[remedy]},
                    )
                    name = f"{model}-{100 * sparsity:g}-{remedy}-seed{seed}"
                    points.append((name, settings))
    return points


def perform(dataset, s):
    """Train one run of the grid from its settings; its row of runs.csv, with the iteration
    by which it diverged (the loss is read every 20 iterations) and whether it learnt."""
    seen = [0]

    def count(iteration, loss):
        seen[0] = iteration

    result = common.train_once(
        dataset,
        s["model"],
        s["sparsity"],
        s["seed"],
        None,
        init=s["init"],
        lr=s["lr"],
        batch_size=s["batch_size"],
        iterations=s["iterations"],
        warmup=s["warmup"],
        clip_norm=s["clip_norm"],
        on_step=count,
    )
    failed = result["diverged"] or result["test_error"] >= CHANCE
    return {
        "model": s["model"],
        "sparsity": s["sparsity"],
        "remedy": s["remedy"],
        "seed": s["seed"],
        "iterations": s["iterations"],
        "lr": s["lr"],
        "init": s["init"],
        "warmup": s["warmup"],
        "clip_norm": s["clip_norm"],
        "params_kept": result["params_kept"],
        "diverged": result["diverged"],
        # fit calls on_step after every step it survives and raises Diverged at the read
        # (every 20th iteration) that finds the loss non-finite: iteration seen + 1, the one
        # fit's message names
        "diverged_by": seen[0] + 1 if result["diverged"] else None,
        "failed": failed,
        "test_error": result["test_error"],
        "val_error": result["val_error"],
        "train_loss": result["train_loss"],
    }


def describe(s, result):
    if result["diverged"]:
        outcome = f"diverged by iteration {result['diverged_by']:,}"
    else:
        stuck = " (no better than chance)" if result["failed"] else ""
        outcome = f"test error {result['test_error']:.2f}%{stuck}"
    return f"{s['model']} {100 * s['sparsity']:g}% {s['remedy']:>8} seed {s['seed']}: {outcome}"


def collect(found, description, out):
    """runs.csv, summary.json, table.md and the figure from [(run, result)]."""
    rows = [result for _, result in found]
    common.write_csv(os.path.join(out, "runs.csv"), rows)
    summary = summarise(rows, description)
    common.write_json(os.path.join(out, "summary.json"), summary)
    data.write_file_atomically(os.path.join(out, "table.md"), table(summary).encode())
    plot(summary, out)


def summarise(rows, description):
    """{model: {remedy: {sparsity: {mean, std, runs, failed, diverged, errors}}}}: the mean
    and spread over the runs that trained, and how many of the runs failed."""
    cells = {}
    for row in rows:
        cell = cells.setdefault(row["model"], {}).setdefault(row["remedy"], {})
        cell.setdefault(row["sparsity"], []).append(row)
    summary = {"data": description, "models": {}}
    for model, remedies in cells.items():
        summary["models"][model] = {}
        for remedy, sparsities in remedies.items():
            entries = {}
            for sparsity, runs in sorted(sparsities.items()):
                trained = [r["test_error"] for r in runs if not r["failed"]]
                mean, std = common.mean_and_spread(trained)
                entries[str(sparsity)] = {
                    "mean": mean,
                    "std": std,
                    "runs": len(runs),
                    "failed": sum(r["failed"] for r in runs),
                    "diverged": sum(r["diverged"] for r in runs),
                    "errors": {r["seed"]: r["test_error"] for r in runs},
                }
            summary["models"][model][remedy] = entries
    return summary


def cell_text(entry, seeds):
    """'1.98 ± 0.09' over the runs that trained, with how many of the runs failed, and how
    many seeds it holds when fewer than the grid's most (`seeds`); 'not run' for a cell of a
    part of the grid that was not run."""
    if entry is None:
        return "not run"
    if entry["failed"] == entry["runs"]:
        return f"fails {entry['failed']}/{entry['runs']}"
    trained = entry["runs"] - entry["failed"]
    text = f"{entry['mean']:.2f} ± {entry['std']:.2f}" if trained > 1 else f"{entry['mean']:.2f}"
    if entry["runs"] < seeds:  # a part of the grid: fewer seeds than the others
        text += f" ({entry['runs']} seed{'s' if entry['runs'] > 1 else ''})"
    return text + (f", fails {entry['failed']}/{entry['runs']}" if entry["failed"] else "")


def table(summary):
    """table.md: per network, one row per sparsity and one column per remedy."""
    lines = [
        f"Test error (%), mean ± std over the seeds that trained; 'fails k/n': k of n runs "
        f"diverged or ended at chance. {summary['data']}. Each column adds its flag to "
        f"`snip_min.py --model M --sparsity S --seed K --clip-norm 0`, the paper's settings.",
        "",
    ]
    for model, remedies in summary["models"].items():
        names = [r for r in REMEDIES if r in remedies]
        seeds = max(cell["runs"] for cells in remedies.values() for cell in cells.values())
        lines += [f"### {TITLES[model]}", ""]
        lines.append("| sparsity | " + " | ".join(f"{n} (`{FLAGS[n]}`)" for n in names) + " |")
        lines.append("|---|" + "---|" * len(names))
        sparsities = sorted({float(s) for n in names for s in remedies[n]})
        for sparsity in sparsities:
            texts = [cell_text(remedies[n].get(str(sparsity)), seeds) for n in names]
            lines.append(f"| {100 * sparsity:g}% | " + " | ".join(texts) + " |")
        lines.append("")
    return "\n".join(lines).replace(" (``)", "")


def plot(summary, out):
    """One panel per network: test error against sparsity, a line per remedy; a failed seed
    is a cross at the top of the panel."""
    plt = common.pyplot()
    if plt is None:
        return
    names = list(summary["models"])
    figure, panels = plt.subplots(1, len(names), figsize=(6.0 * len(names), 4.4), squeeze=False)
    for axes, model in zip(panels[0], names):
        remedies = summary["models"][model]
        sparsities = sorted({float(s) for r in remedies.values() for s in r})
        top = 0.0
        for k, (remedy, entries) in enumerate(remedies.items()):
            x = [i + (k - 2) * 0.06 for i in range(len(sparsities))]
            cells = [entries.get(str(s), NOT_RUN) for s in sparsities]
            means, stds = [c["mean"] for c in cells], [c["std"] for c in cells]
            top = max([top] + [m + d for m, d in zip(means, stds) if math.isfinite(m)])
            line = axes.errorbar(x, means, yerr=stds, fmt="o-", capsize=3, label=remedy)
            failed = [xi for xi, c in zip(x, cells) if c["failed"]]
            axes.plot(
                failed,
                [1.0] * len(failed),
                "x",
                color=line[0].get_color(),
                ms=9,
                transform=axes.get_xaxis_transform(),
                clip_on=False,
            )
        axes.set_xticks(range(len(sparsities)), [f"{100 * s:g}" for s in sparsities])
        axes.set_ylim(0, top * 1.1 if top else 1)
        axes.set_xlabel("sparsity (% of parameters pruned)")
        axes.set_ylabel("test error (%)")
        axes.set_title(f"{TITLES[model]}: x at the top = a seed failed", fontsize=10)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Experiment I: defaults that train, {summary['data']}", fontsize=10, y=1.02)
    common.save_figure(figure, os.path.join(out, "defaults.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
