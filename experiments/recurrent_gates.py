"""Where SNIP's connections go in a recurrent network: the fraction of weights kept in each
gate, input-to-hidden against hidden-to-hidden, and how many hidden units keep any
connection at all, for SNIP's masks and for random pruning's at the same sparsity.

A later study (Zhang & Stadie, ICLR 2020) found SNIP's kept weights concentrated in a few
gates and units of small recurrent networks. This reads the masks of finished runs of
snip_min.py (their masks.npz and results.json) and shows where the kept weights are.

    python experiments/recurrent_gates.py --runs results/recurrent

reads every run folder under --runs whose results.json names a recurrent model, and writes
gates.json (per run: kept fraction per gate and matrix, units with any kept connection,
alive units) and one figure per model and sparsity, gates-MODEL-SPARSITY.png (mean over the
seeds found), into --out (default: the --runs folder).
"""

import json
import os
import sys

import numpy

import common
from common import failures, flags, models, sm

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
MATRICES = ("input_weight", "recurrent_weight")


def gate_fractions(masks, prefix, gates, hidden):
    """{matrix: {gate: fraction kept}} and the number of hidden units with any kept incoming
    connection (input or recurrent, any gate) of one recurrent layer's masks."""
    fractions, incoming = {}, numpy.zeros(hidden, dtype=bool)
    for matrix in MATRICES:
        mask = masks[f"{prefix}.{matrix}"].reshape(-1, len(gates), hidden)  # (rows, gates, H)
        fractions[matrix] = {gate: float(mask[:, k].mean()) for k, gate in enumerate(gates)}
        incoming |= mask.any(axis=(0, 1))
    return fractions, int(incoming.sum())


def read_run(folder):
    """One finished run's figures, or None if the folder holds no recurrent run."""
    path = os.path.join(folder, "results.json")
    if not os.path.exists(path) or not os.path.exists(os.path.join(folder, "masks.npz")):
        return None
    with open(path) as f:
        results = json.load(f)
    family = results["model"].split("-")[0]
    if family not in GATES or results["sparsity"] == 0:
        return None
    model = models.build(results["model"])
    layer = model.children[1]
    prefix = layer.params[0].name.rsplit(".", 1)[0]
    with numpy.load(os.path.join(folder, "masks.npz"), allow_pickle=False) as archive:
        masks = {name: archive[name] for name in archive.files}
    fractions, with_input = gate_fractions(masks, prefix, GATES[family], layer.hidden)
    return {
        "run": os.path.basename(folder),
        "model": results["model"],
        "sparsity": results["sparsity"],
        "method": results.get("method", "snip"),
        "seed": results["seed"],
        "hidden": layer.hidden,
        "kept_fraction": fractions,
        "units_with_input": with_input,
        "alive_units": results.get("alive_units", {}).get(prefix, {}).get("alive"),
        "test_error": results["test_error"],
    }


def main(argv=None):
    parser = common.argument_parser(__doc__)
    parser.add_argument(
        "--runs",
        type=flags.folder_name,
        default=os.path.join("results", "recurrent"),
        help="a folder of snip_min.py run folders (each with results.json and masks.npz)",
    )
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=None,
        help="where gates.json and the figures go (default: --runs)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.runs
    if not os.path.isdir(args.runs):
        raise sm.UsageError(f"--runs {args.runs} is not a folder of snip_min.py runs")
    runs = [
        run
        for name in sorted(os.listdir(args.runs))
        if os.path.isdir(os.path.join(args.runs, name))
        and (run := read_run(os.path.join(args.runs, name)))
    ]
    if not runs:
        raise sm.UsageError(
            f"no pruned recurrent run under {args.runs} (snip_min.py --model lstm-s ... --out "
            f"{os.path.join(args.runs, 'NAME')} makes one)"
        )
    for run in runs:
        kept = ", ".join(
            f"{matrix.split('_')[0]} " + " ".join(f"{g}:{100 * v:.1f}%" for g, v in gates.items())
            for matrix, gates in run["kept_fraction"].items()
        )
        print(
            f"{run['run']}: {kept}; units with an input {run['units_with_input']}/{run['hidden']}, "
            f"alive {run['alive_units']}/{run['hidden']}"
        )
    common.write_json(os.path.join(out, "gates.json"), runs)
    plot(runs, out)
    return 0


def mean_fractions(runs, matrix, gates):
    return [
        float(numpy.mean([run["kept_fraction"][matrix][gate] for run in runs])) for gate in gates
    ]


def plot(runs, out):
    plt = common.pyplot()
    if plt is None:
        return
    for model, sparsity in sorted({(run["model"], run["sparsity"]) for run in runs}):
        gates = GATES[model.split("-")[0]]
        chosen = [run for run in runs if run["model"] == model and run["sparsity"] == sparsity]
        methods = [m for m in ("snip", "random") if any(run["method"] == m for run in chosen)]
        figure, axes = plt.subplots(figsize=(7.2, 4.2))
        width = 0.8 / (2 * len(methods))
        position = numpy.arange(len(gates))
        lines = []
        for m, method in enumerate(methods):
            group = [run for run in chosen if run["method"] == method]
            for k, matrix in enumerate(MATRICES):
                offset = (2 * m + k - (2 * len(methods) - 1) / 2) * width
                colour = (
                    ("tab:blue", "lightskyblue")
                    if method == "snip"
                    else ("tab:orange", "navajowhite")
                )
                axes.bar(
                    position + offset,
                    [100 * v for v in mean_fractions(group, matrix, gates)],
                    width,
                    label=f"{'SNIP' if method == 'snip' else 'random'}, "
                    f"{'input-to-hidden' if k == 0 else 'hidden-to-hidden'}",
                    color=colour[k],
                    hatch="//" if method == "random" else None,
                    edgecolor="grey",
                )
            hidden = group[0]["hidden"]
            lines.append(
                f"{'SNIP' if method == 'snip' else 'random'}: units with an input "
                f"{numpy.mean([r['units_with_input'] for r in group]):.0f}/{hidden}, alive "
                f"{numpy.mean([r['alive_units'] for r in group]):.0f}/{hidden}"
            )
        axes.set_xticks(position, [f"gate {gate}" for gate in gates])
        axes.set_ylabel("weights kept (%)")
        seeds = len({run["seed"] for run in chosen})
        axes.set_title(
            f"{model} at {100 * sparsity:g}% sparsity: where the kept weights are "
            f"(mean of {seeds} seed{'s' if seeds != 1 else ''})\n" + "; ".join(lines),
            fontsize=9,
        )
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(fontsize=8)
        common.save_figure(figure, os.path.join(out, f"gates-{model}-{100 * sparsity:g}.png"))


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
