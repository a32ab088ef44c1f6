"""Experiment D, continued: the masks behind Figure 3. How much does SNIP's mask of
LeNet-300-100 at 90% change as its scoring batch grows from 1 image to the whole training
split, and in what?

Figure 3 of the paper trains networks pruned from scoring batches of 1 to 10,000 images;
experiment D (data_and_init.py --setting paper) found our test error falling from 1 image
to 100 and not after. This script trains nothing: for each seed it scores the same
initialisation that experiment D trained on the same scoring batches (data_and_init's
scoring_index), and on every image of the seed's training split, and compares the masks:

    overlap          the fraction of the kappa connections that the mask from B images keeps
                     and the mask from every training image keeps too (1: the same mask)
    fc1 / fc2 / fc3  each layer's kept weights, as a percentage of the layer
    pixels           the input pixels left with at least one kept connection into fc1

and, as a last row, the mask scored on every training image with labels drawn at random
(training labels play no part here): how much of the mask the labels decide at all.

    python experiments/scoring_batch_masks.py --data-dir DIR

writes masks.json and table.md under results/scoring_batch_masks/ (seconds on a CPU). The
table's last column is experiment D's test error for the same masks, read from
results/data_and_init_paper/summary.json when it is there.
"""

import json
import os
import sys

import numpy

import common
import data_and_init
import models
from common import data, failures, flags, sm

MODEL, SPARSITY = "lenet300", 0.9  # the paper's Figure 3
BATCH_SIZES = [1, 10, 100, 1000, 10000]
LAYERS = ["fc1", "fc2", "fc3"]
ALL, RANDOM_LABELS = "all", "all, random labels"


def main(argv=None):
    parser = common.argument_parser(__doc__)
    common.add_data_dir_argument(parser)
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "gpu"), help="cpu (NumPy) or gpu (CuPy)"
    )
    parser.add_argument("--seeds", type=flags.positive_int, default=3, help="seeds 0, 1, ...")
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=flags.positive_int,
        default=BATCH_SIZES,
        help="scoring batch sizes (images), compared with every training image",
    )
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=os.path.join("results", "scoring_batch_masks"),
        help="folder for masks.json and table.md",
    )
    parser.add_argument(
        "--trained",
        default=os.path.join("results", "data_and_init_paper", "summary.json"),
        help="experiment D's summary.json, for the test error column",
    )
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)
    rows = []
    for seed in range(args.seeds):
        train = sm.split_dataset(dataset, 0.1, common.seed_streams(seed)[1])[0]
        if max(args.batch_sizes) > len(train):
            parser.error(
                f"a scoring batch of {max(args.batch_sizes):,} images: the training split has "
                f"{len(train):,}"
            )
        labels = sm.to_host(train.labels)
        reference = masks_of(train, numpy.arange(len(train)), seed)
        rows.append(compare(ALL, seed, reference, reference))
        for size in args.batch_sizes:
            index = data_and_init.scoring_index(labels, size, "random", seed)
            rows.append(compare(size, seed, masks_of(train, index, seed), reference))
        random_labels = numpy.random.default_rng(20_000 + seed).integers(0, 10, len(train))
        rows.append(
            compare(
                RANDOM_LABELS,
                seed,
                masks_of(train, numpy.arange(len(train)), seed, random_labels),
                reference,
            )
        )
        print(
            f"seed {seed}: "
            + ", ".join(f"{r['batch']} {r['overlap']:.3f}" for r in rows if r["seed"] == seed),
            flush=True,
        )
    summary = summarise(
        rows, list(args.batch_sizes) + [ALL, RANDOM_LABELS], dataset.description, len(train)
    )
    os.makedirs(args.out, exist_ok=True)
    common.write_json(os.path.join(args.out, "masks.json"), {"rows": rows, "summary": summary})
    table = make_table(summary, args.seeds, trained_errors(args.trained))
    data.write_file_atomically(os.path.join(args.out, "table.md"), table.encode())
    print(table)
    return 0


def masks_of(train, index, seed, labels=None):
    """{parameter name: host boolean mask} of SNIP at 90% on the images at `index` of the
    training split (with `labels` in place of the true ones if given), scored on the
    initialisation of `seed` that experiment D trains."""
    model = models.build(MODEL, "mnist")
    sm.initialise(model, "vs-h", common.seed_streams(seed)[0])
    images, true_labels = train.batch(sm.xp.asarray(index))
    scoring_labels = true_labels if labels is None else sm.xp.asarray(labels[index])
    gated = sm.snip(model, images, scoring_labels, SPARSITY)
    return {p.name: sm.to_host(p.mask) != 0 for p in gated}


def compare(batch, seed, masks, reference):
    """One row: how the masks of one scoring batch compare with those of every image."""
    kept = sum(int(m.sum()) for m in reference.values())
    shared = sum(int((masks[name] & reference[name]).sum()) for name in reference)
    row = {
        "batch": batch,
        "seed": seed,
        "overlap": shared / kept,
        "pixels": int(masks["fc1.weight"].any(axis=1).sum()),
    }
    for layer in LAYERS:
        weights = masks[f"{layer}.weight"]
        row[f"{layer}_kept"] = 100 * float(weights.mean())
        row[f"{layer}_overlap"] = float(
            (weights & reference[f"{layer}.weight"]).sum() / max(1, weights.sum())
        )
    return row


def summarise(rows, batches, description, train_images):
    """Mean and std over seeds of every figure, one entry per scoring batch."""
    fields = ["overlap", "pixels"] + [f"{layer}_kept" for layer in LAYERS]
    summary = {
        "data": description,
        "model": MODEL,
        "sparsity": SPARSITY,
        "training_split": train_images,
        "batches": [],
    }
    for batch in batches:
        chosen = [r for r in rows if r["batch"] == batch]
        entry = {"batch": batch}
        for field in fields:
            entry[field] = dict(
                zip(("mean", "std"), common.mean_and_spread([float(r[field]) for r in chosen]))
            )
        summary["batches"].append(entry)
    return summary


def trained_errors(path):
    """{scoring batch size: (mean, std) test error} of experiment D's Figure 3 runs, or {}."""
    try:
        with open(path) as f:
            points = json.load(f)["batch"]["random"]
    except (OSError, KeyError, ValueError):
        return {}
    return {p["batch_size"]: (p["mean"], p["std"]) for p in points}


def make_table(summary, seeds, errors):
    """The table: one row per scoring batch, each figure's mean +- std over seeds."""

    def cell(entry, field, digits):
        return f"{entry[field]['mean']:.{digits}f} ± {entry[field]['std']:.{digits}f}"

    lines = [
        "| scoring batch (images) | overlap with the all-image mask | fc1 kept (%) | fc2 kept (%) "
        "| fc3 kept (%) | pixels with a kept connection | test error after training (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in summary["batches"]:
        batch = entry["batch"]
        if isinstance(batch, int):
            name = f"{batch:,}"
        else:  # every training image, with true or random labels
            name = f"all {summary['training_split']:,}" + batch[len(ALL) :]
        error = f"{errors[batch][0]:.2f} ± {errors[batch][1]:.2f}" if batch in errors else ""
        lines.append(
            f"| {name} | {cell(entry, 'overlap', 3)} | {cell(entry, 'fc1_kept', 2)} | "
            f"{cell(entry, 'fc2_kept', 2)} | {cell(entry, 'fc3_kept', 1)} | "
            f"{cell(entry, 'pixels', 0)} | {error} |"
        )
    lines.append(
        f"\nLeNet-300-100 at {100 * summary['sparsity']:g}% (SNIP, VS-H), mean ± std over "
        f"{seeds} seeds; {summary['data']}; the scoring batches and initialisations are "
        f"experiment D's (its test errors: data_and_init.py --setting paper, 100 epochs); "
        f"overlap: the fraction of the kept connections that the mask from every training image "
        f"keeps too."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
