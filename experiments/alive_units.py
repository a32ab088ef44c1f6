"""Which units SNIP leaves alive: for both LeNets, the fraction of each layer's units that keep
an input and an output (compaction.alive_units), and of the input pixels read, against sparsity;
and how much smaller the compacted network is (the multiply-adds of its dense shapes).

SNIP prunes connections, but at high sparsity whole units lose every incoming or every
outgoing connection: the mask chooses layer widths too. The masks are SNIP's own, scored as
snip_min.py scores them (the same seed streams, a random batch of 100 training images).

    python experiments/alive_units.py --data-dir DIR

No training is involved, so it takes seconds. Writes alive.csv (one row per model, sparsity,
seed and layer), summary.json (the means over seeds) and alive-lenet300.png, alive-lenet5.png
under results/alive_units/.
"""

import os
import sys

import common
from common import data, failures, flags, models, sm
from extensions import compaction

SPARSITIES = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
TITLES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}


def alive_counts(dataset, model_name, sparsity, seed):
    """[row]: for the input and every layer, how many of its units are alive after SNIP at
    `sparsity` (seed's initialisation and scoring batch, as snip_min.py draws them), and the
    multiply-adds per image of the full and the compacted network."""
    init_rng, split_rng, score_rng, _ = common.seed_streams(seed)
    train, _, _ = sm.split_dataset(dataset, 0.1, split_rng)
    model = models.build(model_name, dataset.name)
    sm.initialise(model, "vs-h", init_rng)
    index = score_rng.choice(len(train), size=100, replace=False)
    images, labels = train.batch(sm.xp.asarray(index))
    sm.snip(model, images, labels, sparsity)
    shape = models.INPUT_SHAPE[dataset.name]
    full = compaction.multiply_adds(model, shape)
    try:
        compacted = compaction.multiply_adds(compaction.compact(model, shape).network, shape)
    except sm.UsageError:  # disconnected: no alive unit in some layer
        compacted = 0
    return [
        {
            "model": model_name,
            "sparsity": sparsity,
            "seed": seed,
            "layer": layer,
            "alive": alive,
            "total": total,
            "multiply_adds": full,
            "compact_multiply_adds": compacted,
        }
        for layer, (alive, total) in compaction.alive_summary(model, shape).items()
    ]


def main(argv=None):
    parser = common.argument_parser(__doc__)
    common.add_data_dir_argument(parser)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--models", nargs="+", default=list(TITLES), choices=sorted(TITLES))
    parser.add_argument("--sparsities", nargs="+", type=flags.sparsity_value, default=SPARSITIES)
    parser.add_argument(
        "--seeds", type=flags.positive_int, default=3, help="masks per setting (seeds 0, 1, ...)"
    )
    parser.add_argument(
        "--out", type=flags.folder_name, default=os.path.join("results", "alive_units")
    )
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)
    rows = []
    for model_name in args.models:
        for sparsity in args.sparsities:
            for seed in range(args.seeds):
                rows += alive_counts(dataset, model_name, sparsity, seed)
            last = [
                row
                for row in rows
                if row["model"] == model_name and row["sparsity"] == sparsity and row["seed"] == 0
            ]
            print(
                f"{model_name} at {sparsity:g} (seed 0): "
                + ", ".join(f"{row['layer']} {row['alive']}/{row['total']}" for row in last)
                + (
                    f"; multiply-adds {last[0]['multiply_adds']:,} -> "
                    f"{last[0]['compact_multiply_adds']:,}"
                )
            )
    common.write_csv(os.path.join(args.out, "alive.csv"), rows)
    summary = summarise(rows, dataset.description)
    common.write_json(os.path.join(args.out, "summary.json"), summary)
    plot(summary, args.out)
    return 0


def summarise(rows, description):
    """{model: {layer: [{sparsity, alive (mean), total}]}, plus the mean multiply-adds."""
    summary = {"data": description, "models": {}}
    groups = {}
    for row in rows:
        groups.setdefault((row["model"], row["layer"], row["sparsity"]), []).append(row)
    for (model, layer, sparsity), group in groups.items():
        entry = summary["models"].setdefault(model, {"layers": {}, "multiply_adds": {}})
        entry["layers"].setdefault(layer, []).append(
            {
                "sparsity": sparsity,
                "alive": common.mean_and_spread([r["alive"] for r in group])[0],
                "total": group[0]["total"],
                "seeds": len(group),
            }
        )
        entry["multiply_adds"][str(sparsity)] = {
            "full": group[0]["multiply_adds"],
            "compact": common.mean_and_spread([r["compact_multiply_adds"] for r in group])[0],
        }
    return summary


def plot(summary, out):
    plt = common.pyplot()
    if plt is None:
        return
    for name, model in summary["models"].items():
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for layer, points in model["layers"].items():
            x = [100 * p["sparsity"] for p in points]
            y = [100 * p["alive"] / p["total"] for p in points]
            label = (
                "input pixels read" if layer == "input" else f"{layer} ({points[0]['total']} units)"
            )
            axes.plot(range(len(x)), y, "o-" if layer != "input" else "s--", label=label)
            axes.set_xticks(range(len(x)), [f"{v:g}" for v in x])
        seeds = next(iter(model["layers"].values()))[0]["seeds"]
        axes.set_xlabel("sparsity (% of parameters pruned)")
        axes.set_ylabel("alive units (% of the layer)")
        axes.set_ylim(0, 105)
        axes.set_title(
            f"{TITLES[name]}: units SNIP leaves alive (an input and an output)\n"
            f"{summary['data']}, mean over {seeds} seeds",
            fontsize=10,
        )
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        common.save_figure(figure, os.path.join(out, f"alive-{name}.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
