"""Experiment E: can a SNIP-pruned network memorise random labels?

The paper's claim: the dense network fits shuffled labels (it memorises), while the network
SNIP pruned does not, yet both learn the true labels. Four runs per network: dense and
pruned, each on the true and on randomly permuted training labels, the same data otherwise;
we record the training loss at every iteration.

    python experiments/random_labels.py --data-dir DIR

Memorising takes many passes over the data, so by default each run trains on a subset of the
training split (--train-images) for many epochs. Writes losses.csv (the loss averaged over
windows of iterations), summary.json (final training loss and error per run) and one figure
per network under results/random_labels/.

Every run's result (its loss curve too) is kept in runs/<key>.json as it finishes: the same
command continues an interrupted grid. --list, --task K/N, --jobs N and --collect spread the
grid over processes or a SLURM job array (experiments/slurm-array.sh).
"""

import os
import sys

import numpy

import common
from common import data, failures, flags, sm

TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
SPARSITY = {"lenet300": 0.98, "lenet5": 0.99}
DEFAULT_EPOCHS = {"lenet300": 200, "lenet5": 100}
# The dense LeNet-5-Caffe diverges at a learning rate of 0.02 and above (in PyTorch too):
# its convolutions have no ReLU, and He initialisation starts it with large logits.
LEARNING_RATE = {"lenet300": 0.1, "lenet5": 0.01}


def one_run(dataset, s):
    """Train on the first train_images images of the training split with true or shuffled
    labels; returns the run's figures with its loss curve: losses, [(iteration, mean training
    loss of the window)]."""
    train, validation, test = sm.split_dataset(dataset, 0.1, common.seed_streams(s["seed"])[1])
    count = min(s["train_images"], len(train))
    images, labels = sm.to_host(train.images)[:count], sm.to_host(train.labels)[:count].copy()
    if s["labels"] == "random":
        numpy.random.default_rng(99 + s["seed"]).shuffle(labels)  # the same images, labels permuted
    subset = sm.DeviceSplit(images, labels, dataset.mean, dataset.std)
    losses, window = [], []

    def on_step(iteration, loss):
        window.append((iteration, loss))  # a device scalar: read once per window
        if len(window) == s["window"]:
            flush()

    def flush():
        (mean,) = sm.host_values(sum(loss for _, loss in window) / len(window))
        losses.append((window[-1][0], mean))
        window.clear()

    result = common.train_once(
        dataset,
        s["model"],
        s["sparsity"],
        s["seed"],
        s["epochs"],
        lr=s["lr"],
        init=s["init"],
        batch_size=s["batch_size"],
        splits=(subset, validation, test),
        on_step=on_step,
    )
    if window:  # the last, shorter window
        flush()
    return {**result, "run": run_name(s), "losses": losses}


def run_name(s):
    return f"{'pruned' if s['sparsity'] else 'dense'}, {s['labels']} labels"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = common.argument_parser(__doc__)
    common.add_common_arguments(parser, "random_labels", epochs=None, seeds=1)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=sorted(TITLES),
        help="the networks, each dense and pruned",
    )
    parser.add_argument(
        "--train-images", type=flags.positive_int, default=2000, help="training images per run"
    )
    parser.add_argument(
        "--window",
        type=flags.positive_int,
        default=20,
        help="iterations averaged per recorded loss",
    )
    parser.add_argument("--seed", type=flags.seed_value, default=0, help="the seed of every run")
    args = common.parse_arguments(parser, argv)
    dataset = data.load_dataset("mnist", args.data_dir)
    runs = common.make_grid(grid_points(args, dataset))
    return common.run_grid(
        args,
        argv,
        os.path.abspath(__file__),
        runs,
        perform=lambda settings: one_run(dataset, settings),
        describe=describe,
        collect=lambda found: collect(found, dataset.description, args),
    )


def grid_points(args, dataset):
    """[(name, settings)]: for each network, dense and pruned, each on true and random labels."""
    points = []
    for model in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS[model]
        for pruned in (False, True):
            sparsity = SPARSITY[model] if pruned else 0.0
            for labels_kind in ("true", "random"):
                settings = common.run_settings(
                    args,
                    dataset,
                    "random_labels",
                    model=model,
                    sparsity=sparsity,
                    seed=args.seed,
                    epochs=epochs,
                    lr=LEARNING_RATE[model],
                    labels=labels_kind,
                    train_images=args.train_images,
                    window=args.window,
                )
                points.append(
                    (
                        f"{model}-{'pruned' if pruned else 'dense'}-{labels_kind}-labels-"
                        f"seed{args.seed}",
                        settings,
                    )
                )
    return points


def describe(s, result):
    losses = result["losses"]
    return (
        f"{s['model']} {result['run']}: training loss {losses[0][1]:.3f} -> {losses[-1][1]:.3f} "
        f"over {losses[-1][0]:,} iterations{' (diverged)' if result['diverged'] else ''}"
    )


def collect(found, description, args):
    """losses.csv, summary.json and the figures from [(run, result)]."""
    rows, summary = [], {"data": description, "train_images": args.train_images, "runs": []}
    for run, result in found:
        s, losses = run.settings, result["losses"]
        rows += [
            {"model": s["model"], "run": result["run"], "iteration": i, "loss": loss}
            for i, loss in losses
        ]
        summary["runs"].append(
            {
                "model": s["model"],
                "run": result["run"],
                "sparsity": s["sparsity"],
                "epochs": s["epochs"],
                "lr": s["lr"],
                "final_loss": losses[-1][1] if losses else None,
                "params_kept": result["params_kept"],
                "diverged": result["diverged"],
            }
        )
    if rows:
        common.write_csv(os.path.join(args.out, "losses.csv"), rows)
    common.write_json(os.path.join(args.out, "summary.json"), summary)
    plot(rows, summary, args.out)


def plot(rows, summary, out):
    plt = common.pyplot()
    if plt is None:
        return
    styles = {
        "dense, true labels": ("C0", "-"),
        "dense, random labels": ("C0", "--"),
        "pruned, true labels": ("C3", "-"),
        "pruned, random labels": ("C3", "--"),
    }
    for model in dict.fromkeys(r["model"] for r in rows):
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for run, (colour, line) in styles.items():
            points = [
                (r["iteration"], r["loss"]) for r in rows if r["model"] == model and r["run"] == run
            ]
            if points:
                info = next(s for s in summary["runs"] if s["model"] == model and s["run"] == run)
                label = (
                    run if info["sparsity"] == 0 else f"{run} (SNIP {100 * info['sparsity']:g}%)"
                )
                axes.plot(*zip(*points), color=colour, linestyle=line, label=label)
        axes.set_yscale("log")
        axes.set_xlabel("iteration (mini-batches of 100)")
        axes.set_ylabel("training loss (cross-entropy, nats)")
        epochs = next(s["epochs"] for s in summary["runs"] if s["model"] == model)
        axes.set_title(
            f"{TITLES[model]}: fitting true and random labels\n{summary['data']}, "
            f"{summary['train_images']:,} of them used, {epochs} epochs",
            fontsize=10,
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
        common.save_figure(figure, os.path.join(out, f"random_labels-{model}.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
