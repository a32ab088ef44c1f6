"""Experiment C: which connections SNIP keeps - LeNet-300-100's first layer, scored with a batch
of a single digit class, drawn as a 28x28 image per class.

The first layer's weight matrix is (784 pixels, 300 units); summing its mask over the units
gives, for every input pixel, how many of its connections survive. The paper shows that for
a batch of one class these maps take the shape of that digit: SNIP keeps the connections
that matter for the data it sees.

    python experiments/kept_connections.py --data-dir DIR

No training is involved, so it takes seconds. Writes kept_connections.png (a 2x5 grid, one
panel per class, and the map for a mixed batch), maps.npz (the eleven 28x28 count maps) and
summary.json, which measures whether the shapes appear: the correlation of each class's map
with each class's mean image.
"""

import io
import os
import sys

import numpy

import common
from common import data, failures, flags, models, sm


def kept_per_pixel(dataset, train, index, sparsity, seed):
    """Score LeNet-300-100 (the same initialisation every time) on the training images at
    `index`; return, for each of the 784 pixels, how many first-layer connections survive."""
    model = models.build("lenet300", dataset.name)
    sm.initialise(model, "vs-h", numpy.random.default_rng(seed))
    images, labels = train.batch(sm.xp.asarray(index))
    params = sm.snip(model, images, labels, sparsity)
    first_layer = params[0]  # fc1.weight, (784, 300)
    return sm.to_host(first_layer.mask).sum(axis=1).reshape(28, 28)


def main(argv=None):
    parser = common.argument_parser(__doc__)
    common.add_data_dir_argument(parser)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument(
        "--sparsity",
        type=flags.sparsity_value,
        default=0.9,
        help="sparsity of the whole network",
    )
    parser.add_argument(
        "--batch-size", type=flags.positive_int, default=100, help="scoring images per class"
    )
    parser.add_argument("--seed", type=flags.seed_value, default=0)
    parser.add_argument(
        "--out", type=flags.folder_name, default=os.path.join("results", "kept_connections")
    )
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)
    train, _, _ = sm.split_dataset(dataset, 0.1, numpy.random.default_rng(args.seed))
    labels = sm.to_host(train.labels)
    rng = numpy.random.default_rng(args.seed)

    maps = {}
    for digit in range(10):
        members = numpy.flatnonzero(labels == digit)
        index = rng.choice(members, size=min(args.batch_size, len(members)), replace=False)
        maps[str(digit)] = kept_per_pixel(dataset, train, index, args.sparsity, args.seed)
    mixed = rng.choice(len(labels), size=args.batch_size, replace=False)
    maps["mixed"] = kept_per_pixel(dataset, train, mixed, args.sparsity, args.seed)

    # Do the digits' shapes appear? Correlate each class's map with each class's mean image.
    pixels = sm.to_host(train.images)[..., 0].astype(numpy.float64)
    mean_images = numpy.stack([pixels[labels == d].mean(axis=0) for d in range(10)])
    correlation = numpy.array(
        [
            [numpy.corrcoef(maps[str(k)].ravel(), mean_images[j].ravel())[0, 1] for j in range(10)]
            for k in range(10)
        ]
    )
    own = numpy.diag(correlation)
    others = (correlation.sum(axis=1) - own) / 9
    summary = {
        "data": dataset.description,
        "sparsity": args.sparsity,
        "images_per_batch": args.batch_size,
        "seed": args.seed,
        "kept_first_layer": {k: int(v.sum()) for k, v in maps.items()},
        "correlation_with_own_class_mean_image": own.round(3).tolist(),
        "mean_correlation_with_other_classes": others.round(3).tolist(),
        "classes_most_similar_to_their_own_digit": int(
            (correlation.argmax(axis=1) == numpy.arange(10)).sum()
        ),
        "maps_differ_between_classes": bool(len({m.tobytes() for m in maps.values()}) == len(maps)),
    }
    os.makedirs(args.out, exist_ok=True)
    buffer = io.BytesIO()
    numpy.savez_compressed(buffer, **maps)
    data.write_file_atomically(os.path.join(args.out, "maps.npz"), buffer.getvalue())
    common.write_json(os.path.join(args.out, "summary.json"), summary)
    print(f"kept first-layer connections per class: {summary['kept_first_layer']}")
    print(
        f"correlation with the class's own mean image: {own.round(2).tolist()} "
        f"(other classes on average: {others.round(2).tolist()})"
    )
    print(
        f"{summary['classes_most_similar_to_their_own_digit']} of 10 maps resemble their own "
        f"digit more than any other"
    )
    plot(maps, summary, args.out)
    return 0


def plot(maps, summary, out):
    plt = common.pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(2, 6, figsize=(12, 4.6))
    top = max(m.max() for m in maps.values())
    for position, name in enumerate([str(d) for d in range(10)]):
        ax = axes[position // 5, position % 5]
        image = ax.imshow(maps[name], cmap="magma", vmin=0, vmax=top)
        ax.set_title(f"digit {name}", fontsize=10)
    axes[0, 5].imshow(maps["mixed"], cmap="magma", vmin=0, vmax=top)
    axes[0, 5].set_title("mixed batch", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 5].axis("off")
    colorbar = figure.colorbar(image, ax=axes[1, 5], fraction=0.9, aspect=8)
    colorbar.set_label("kept connections per pixel\n(of 300)")
    figure.suptitle(
        f"LeNet-300-100, first layer: connections kept by SNIP at "
        f"{100 * summary['sparsity']:g}% sparsity, scored on {summary['images_per_batch']} "
        f"images of one class\n{summary['data']}, seed {summary['seed']}",
        fontsize=11,
    )
    common.save_figure(figure, os.path.join(out, "kept_connections.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
