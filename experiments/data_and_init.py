"""Experiment D: how the data SNIP scores on and the initialisation it scores change the result.

(i) The scoring batch: its size (1, 10, 100, 1000 images) and its composition (drawn at
    random from all classes, or from a single class) against the final test error of
    LeNet-300-100.
(ii) The initialisation: random normal (RN), truncated normal (TN), variance scaling Glorot
    (VS-X) and He (VS-H), for both LeNets, mean +- std over seeds: the paper's Table 3.

    python experiments/data_and_init.py --data-dir DIR

writes batch.csv, init.csv, summary.json, batch_table.md, init_table.md and two figures under
results/data_and_init/. --part batch or --part init runs one half.

Two settings. --setting ours (the default) prunes LeNet-300-100 to 98% and LeNet-5-Caffe to
99%, the paper's Table 1 levels, and scores on 1 to 1,000 images of all classes or of one.
--setting paper is the paper's: 90% sparsity for both parts, as in its Table 3 and Figure 3,
scoring batches of 1 to 10,000 images drawn from all classes (Figure 3; the one-class batches
are off, since one class has too few images for the large batches, and --compositions brings
them back), longer training, and the paper's figures next to ours in the tables; its default
folder is results/data_and_init_paper/.

--protocol authors runs either setting under the authors' code's protocol (protocol.py):
lecun initialisation for the batch half, two draws, plain gradient descent and a constant
learning rate (each run's final test error; the authors' best-of-five figure is not taken);
its default folder adds _authors to the setting's (results/data_and_init_paper_authors/).

Every run's result is kept in runs/<key>.json as it finishes: the same command continues an
interrupted grid. --list, --task K/N, --jobs N and --collect spread the grid over processes
or a SLURM job array (experiments/slurm-array.sh).
"""

import os
import sys

import numpy

import common
from common import data, failures, flags, sm

INITIALISATIONS = ["rn", "tn", "vs-x", "vs-h"]
TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
COMPOSITIONS = ("random", "one class")

# What each --setting means. The paper's epochs are sized so that its whole grid (39 runs, 3
# seeds) takes about an hour with --jobs 2 on two CPU cores: on one thread and 21,911 training
# images, an epoch of LeNet-300-100 takes about 0.62 s and one of LeNet-5-Caffe about 10.7 s,
# so each worker's 13 or 14 LeNet-300-100 runs of 100 epochs and 6 LeNet-5-Caffe runs of 36
# take about 53 minutes (100 epochs is also snip_min.py's 22,000 iterations for LeNet-300-100).
SETTINGS = {
    "ours": {
        "sparsity": {"lenet300": 0.98, "lenet5": 0.99},  # the paper's Table 1 levels
        "batch_sizes": [1, 10, 100, 1000],
        "compositions": ["random", "one class"],
        "epochs": {"lenet300": 30, "lenet5": 5},
        "seeds": 3,
        "lr": {"lenet300": 0.1, "lenet5": 0.1},
        "out": "data_and_init",
    },
    "paper": {
        "sparsity": {"lenet300": 0.9, "lenet5": 0.9},  # Table 3 and Figure 3
        "batch_sizes": [1, 10, 100, 1000, 10000],
        "compositions": ["random"],
        "epochs": {"lenet300": 100, "lenet5": 36},
        "seeds": 3,
        # the paper's 0.1 for LeNet-300-100; LeNet-5-Caffe at 90% diverges within its
        # first epoch from 0.03 up (its convolutions have no ReLU), so 0.01 as in
        # experiment A
        "lr": {"lenet300": 0.1, "lenet5": 0.01},
        "out": "data_and_init_paper",
    },
}

# The paper's figures (test error %, 90% sparsity, the full MNIST): Table 3 gives VS-H and
# says RN, TN and VS-X are within about 0.1 of it; Figure 3 is LeNet-300-100, random batches.
PAPER_TABLE_3 = {"lenet300": {"vs-h": "1.88 ± 0.10"}, "lenet5": {"vs-h": "0.85 ± 0.05"}}
PAPER_FIGURE_3 = {1: 1.94, 10: 1.72, 100: 1.64, 1000: 1.56, 10000: 1.40}


def scoring_index(labels, size, composition, seed):
    """Positions of a scoring batch in the training split: `size` images drawn at random from
    all classes, or all from one class (class seed % 10)."""
    rng = numpy.random.default_rng(10_000 + seed)
    pool = (
        numpy.arange(len(labels))
        if composition == "random"
        else numpy.flatnonzero(labels == seed % 10)
    )
    return rng.choice(pool, size=size, replace=False)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(
        parser,
        None,
        epochs=None,
        seeds=None,
        out_help="folder for CSV/JSON/PNG, and runs/ for the result file of each run (default: "
        "results/data_and_init, results/data_and_init_paper with --setting paper)",
    )
    parser.add_argument(
        "--setting",
        choices=sorted(SETTINGS),
        default="ours",
        help="ours: 98%% / 99%% sparsity, scoring batches of 1 to 1,000 images of "
        "all classes or one, 30 / 5 epochs; paper: the paper's 90%% for both "
        "parts, random scoring batches of 1 to 10,000 images, 100 / 36 epochs",
    )
    parser.add_argument(
        "--protocol",
        choices=sorted(common.protocol.PROTOCOLS),
        default="ours",
        help="ours (VS-H, momentum 0.9, step decay) or the authors' code's (lecun for "
        "the batch half, two draws, momentum 0, a constant learning rate)",
    )
    parser.add_argument(
        "--part",
        choices=("batch", "init", "both"),
        default="both",
        help="the scoring-batch half, the initialisation half, or both",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=sorted(TITLES),
        help="the networks of the initialisation half (the batch half is LeNet-300-100's)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=flags.positive_int,
        default=None,
        help="scoring batch sizes (default: the setting's)",
    )
    parser.add_argument(
        "--compositions",
        nargs="+",
        choices=COMPOSITIONS,
        default=None,
        help="scoring batches drawn from all classes (random) or from one class "
        "(default: the setting's; 'one class' needs each batch size to be at "
        "most the images of one class)",
    )
    args = common.parse_arguments(parser, argv)
    setting = SETTINGS[args.setting]
    suffix = "" if args.protocol == "ours" else f"_{args.protocol}"
    args.out = args.out or os.path.join("results", setting["out"] + suffix)
    args.seeds = args.seeds or setting["seeds"]
    args.batch_sizes = args.batch_sizes or setting["batch_sizes"]
    args.compositions = args.compositions or setting["compositions"]
    dataset = data.load_dataset("mnist", args.data_dir)
    if "one class" in args.compositions and args.part != "init":
        check_one_class_batches(parser, dataset, args)
    runs = common.make_grid(grid_points(args, dataset))
    return common.run_grid(
        args,
        argv,
        os.path.abspath(__file__),
        runs,
        perform=lambda settings: perform(dataset, settings),
        describe=describe,
        collect=lambda found: collect(found, dataset.description, args),
    )


def epochs_of(args, model):
    return args.epochs or SETTINGS[args.setting]["epochs"][model]


def grid_points(args, dataset):
    """[(name, settings)], one per run: the batch half (seed, composition, size), then the
    initialisation half (model, initialisation, seed), the order of batch.csv and init.csv."""
    setting, points = SETTINGS[args.setting], []
    if args.part in ("batch", "both"):
        model = "lenet300"
        for seed in range(args.seeds):
            for composition in args.compositions:
                for size in args.batch_sizes:
                    settings = common.run_settings(
                        args,
                        dataset,
                        "data_and_init",
                        part="batch",
                        model=model,
                        sparsity=setting["sparsity"][model],
                        seed=seed,
                        epochs=epochs_of(args, model),
                        lr=setting["lr"][model],
                        scoring_batch_size=size,
                        scoring_composition=composition,
                        # scoring_index, not snip_min.py's draw
                        scoring_drawn_by="data_and_init.py",
                        **protocol_settings(args.protocol),
                    )
                    points.append((f"batch-{size}-{composition}-seed{seed}", settings))
    if args.part in ("init", "both"):
        for model in args.models:
            for init in INITIALISATIONS:
                for seed in range(args.seeds):
                    settings = common.run_settings(
                        args,
                        dataset,
                        "data_and_init",
                        part="init",
                        model=model,
                        sparsity=setting["sparsity"][model],
                        seed=seed,
                        epochs=epochs_of(args, model),
                        lr=setting["lr"][model],
                        **{**protocol_settings(args.protocol), "init": init},
                    )
                    points.append((f"init-{model}-{init}-seed{seed}", settings))
    return points


def protocol_settings(name):
    """What --protocol adds to a run's settings: nothing for ours (so that the committed runs
    keep their keys), the protocol and its initialisation for the authors'."""
    return (
        {}
        if name == "ours"
        else {"protocol": name, "init": common.protocol.PROTOCOLS[name]["init"]}
    )


def check_one_class_batches(parser, dataset, args):
    """Refuse, before training anything, a one-class batch larger than its class."""
    largest = max(args.batch_sizes)
    for seed in range(args.seeds):
        train, _, _ = sm.split_dataset(dataset, 0.1, common.seed_streams(seed)[1])
        available = int((sm.to_host(train.labels) == seed % 10).sum())
        if largest > available:
            parser.error(
                f"a one-class scoring batch of {largest:,} images: seed {seed}'s class "
                f"{seed % 10} has {available:,} in the training split (use smaller "
                f"--batch-sizes or --compositions random)"
            )


def perform(dataset, s):
    """Train one run of the grid from its settings: its row of batch.csv or init.csv."""
    if s["part"] == "init":
        return common.train_once(
            dataset,
            s["model"],
            s["sparsity"],
            s["seed"],
            s["epochs"],
            init=s["init"],
            lr=s["lr"],
            batch_size=s["batch_size"],
            protocol_name=s.get("protocol", "ours"),
        )
    # the training split is the seed's, as in every run; the scoring batch comes from it
    splits = sm.split_dataset(dataset, 0.1, common.seed_streams(s["seed"])[1])
    labels = sm.to_host(splits[0].labels)
    index = scoring_index(labels, s["scoring_batch_size"], s["scoring_composition"], s["seed"])
    result = common.train_once(
        dataset,
        s["model"],
        s["sparsity"],
        s["seed"],
        s["epochs"],
        init=s["init"],
        lr=s["lr"],
        batch_size=s["batch_size"],
        score_index=index,
        splits=splits,
        protocol_name=s.get("protocol", "ours"),
    )
    result.update(batch_size=s["scoring_batch_size"], composition=s["scoring_composition"])
    return result


def describe(s, result):
    diverged = " (diverged)" if result["diverged"] else ""
    if s["part"] == "batch":
        return (
            f"scoring batch {s['scoring_batch_size']:>5} {s['scoring_composition']:>9}, "
            f"seed {s['seed']}: test error {result['test_error']:.2f}%{diverged}"
        )
    return (
        f"{s['model']} {s['init']:>4} seed {s['seed']}: "
        f"test error {result['test_error']:.2f}%{diverged}"
    )


def collect(found, description, args):
    """batch.csv, init.csv, summary.json, the tables and the figures from [(run, result)]."""
    setting = SETTINGS[args.setting]
    summary = {"data": description, "setting": args.setting, "sparsity": setting["sparsity"]}
    if args.protocol != "ours":
        summary["protocol"] = args.protocol
    batch_rows = [result for run, result in found if run.settings["part"] == "batch"]
    init_rows = [result for run, result in found if run.settings["part"] == "init"]
    if batch_rows:
        common.write_csv(os.path.join(args.out, "batch.csv"), batch_rows)
        summary["batch"] = {
            composition: [
                {
                    "batch_size": size,
                    **dict(
                        zip(
                            ("mean", "std"),
                            common.mean_and_spread(
                                [
                                    r["test_error"]
                                    for r in batch_rows
                                    if r["composition"] == composition and r["batch_size"] == size
                                ]
                            ),
                        )
                    ),
                }
                for size in args.batch_sizes
            ]
            for composition in args.compositions
        }
        summary["batch_epochs"] = batch_rows[0]["epochs"]
        table = batch_table(summary, args.seeds)
        data.write_file_atomically(os.path.join(args.out, "batch_table.md"), table.encode())
        print(table)
        plot_batch(summary, args.seeds, args.out)
    if init_rows:
        common.write_csv(os.path.join(args.out, "init.csv"), init_rows)
        models = list(dict.fromkeys(r["model"] for r in init_rows))
        summary["init"] = {
            model: {
                init: dict(
                    zip(
                        ("mean", "std"),
                        common.mean_and_spread(
                            [
                                r["test_error"]
                                for r in init_rows
                                if r["model"] == model and r["init"] == init
                            ]
                        ),
                    )
                )
                for init in INITIALISATIONS
            }
            for model in models
        }
        summary["init_epochs"] = {model: epochs_of(args, model) for model in models}
        table = init_table(summary, args.seeds)
        data.write_file_atomically(os.path.join(args.out, "init_table.md"), table.encode())
        print(table)
        plot_init(summary, args.seeds, args.out)
    common.write_json(os.path.join(args.out, "summary.json"), summary)


def paper_cell(model, init):
    """The paper's Table 3 figure for a cell: VS-H as published, the others as described."""
    if init in PAPER_TABLE_3[model]:
        return PAPER_TABLE_3[model][init]
    return f"within about 0.1 of {PAPER_TABLE_3[model]['vs-h'].split(' ')[0]}"


def init_table(summary, seeds):
    """The paper's Table 3 layout: test error (%) mean +- std for each initialisation; with
    --setting paper, each network's column is followed by the paper's."""
    models, paper = list(summary["init"]), summary["setting"] == "paper"
    sparsity = summary["sparsity"]
    header = []
    for m in models:
        header.append(f"{TITLES[m]} ({100 * sparsity[m]:g}%)")
        header += ["paper"] if paper else []
    lines = ["| initialisation | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    names = {
        "rn": "RN (normal, std 0.1)",
        "tn": "TN (truncated normal, std 0.1)",
        "vs-x": "VS-X (Glorot)",
        "vs-h": "VS-H (He)",
    }
    for init in INITIALISATIONS:
        cells = []
        for m in models:
            cells.append(
                f"{summary['init'][m][init]['mean']:.2f} ± {summary['init'][m][init]['std']:.2f}"
            )
            cells += [paper_cell(m, init)] if paper else []
        lines.append(f"| {names[init]} | " + " | ".join(cells) + " |")
    epochs = ", ".join(f"{TITLES[m]} {e} epochs" for m, e in summary["init_epochs"].items())
    note = "; the paper's: its Table 3, on the full MNIST" if paper else ""
    lines.append(
        f"\nTest error (%), mean ± std over {seeds} seeds; {summary['data']}; {epochs}"
        f"{protocol_note(summary)}{note}."
    )
    return "\n".join(lines) + "\n"


def batch_table(summary, seeds):
    """Test error (%) mean +- std for each scoring batch size and composition; with --setting
    paper, the paper's Figure 3 in the next column."""
    compositions, paper = list(summary["batch"]), summary["setting"] == "paper"
    header = [
        f"scoring batch drawn from {'all classes' if c == 'random' else 'one class'}"
        for c in compositions
    ]
    header += ["paper (Figure 3, all classes)"] if paper else []
    lines = [
        "| scoring batch (images) | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for position, point in enumerate(summary["batch"][compositions[0]]):
        size = point["batch_size"]
        cells = [
            f"{summary['batch'][c][position]['mean']:.2f} ± "
            f"{summary['batch'][c][position]['std']:.2f}"
            for c in compositions
        ]
        if paper:
            cells.append(f"{PAPER_FIGURE_3[size]:.2f}" if size in PAPER_FIGURE_3 else "")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    note = "; the paper's: read off its Figure 3, on the full MNIST" if paper else ""
    lines.append(
        f"\nLeNet-300-100 at {100 * summary['sparsity']['lenet300']:g}%: test error (%), "
        f"mean ± std over {seeds} seeds; {summary['data']}; {summary['batch_epochs']} epochs"
        f"{protocol_note(summary)}{note}."
    )
    return "\n".join(lines) + "\n"


def protocol_note(summary):
    """'' under our protocol; what the authors' code does differently under theirs."""
    if summary.get("protocol") != "authors":
        return ""
    return "; the authors' protocol: lecun, two draws, momentum 0, a constant learning rate"


def plot_batch(summary, seeds, out):
    plt = common.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for composition, style in (("random", "o-"), ("one class", "s--")):
        points = summary["batch"].get(composition)
        if not points:
            continue
        axes.errorbar(
            [p["batch_size"] for p in points],
            [p["mean"] for p in points],
            yerr=[p["std"] for p in points],
            fmt=style,
            capsize=3,
            label=(
                "scoring batch drawn from "
                f"{'all classes' if composition == 'random' else 'one class'}"
            ),
        )
    if summary["setting"] == "paper":
        sizes = [
            p["batch_size"]
            for p in next(iter(summary["batch"].values()))
            if p["batch_size"] in PAPER_FIGURE_3
        ]
        axes.plot(
            sizes,
            [PAPER_FIGURE_3[s] for s in sizes],
            "kx:",
            label="the paper's Figure 3 (full MNIST)",
        )
    axes.set_xscale("log")
    axes.set_xlabel("scoring batch size (images)")
    axes.set_ylabel("test error (%)")
    protocol_name = " (the authors' protocol)" if summary.get("protocol") == "authors" else ""
    axes.set_title(
        f"LeNet-300-100 at {100 * summary['sparsity']['lenet300']:g}%: the batch SNIP scores on"
        f"{protocol_name}\n{summary['data']}, {summary['batch_epochs']} epochs, mean ± std over "
        f"{seeds} seeds",
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    common.save_figure(figure, os.path.join(out, "scoring_batch.png"))


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
        ax.set_title(f"{TITLES[model]} at {100 * summary['sparsity'][model]:g}%", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(
        f"SNIP under four initialisations (the paper's Table 3)\n{summary['data']}, "
        f"mean ± std over {seeds} seeds",
        fontsize=10,
    )
    figure.tight_layout()
    common.save_figure(figure, os.path.join(out, "initialisation.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
