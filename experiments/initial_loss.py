"""Experiment F, continued: where each criterion's pruned network starts. The loss of its first
training mini-batch, before any update, as it is and under the two checks that keep every
layer's count: shuffle (new positions for the kept weights) and reinit (the same mask, its
weights drawn afresh).

Experiment F (sanity_checks.py) found GraSP's masks doing better with their weights shuffled
or drawn afresh than as GraSP chose them, and GraSP's LeNet-5-Caffe at 90% blowing up in its
first steps at a learning rate at which its shuffled and re-drawn masks train well. This
script trains nothing: for each network and sparsity of experiment F, each criterion and
each of these checks, it prunes exactly as that run does (common.train_once, the same seed
streams) and records the cross-entropy of the run's first mini-batch at initialisation,
which a network that knows nothing puts near ln 10 = 2.303 (uniform output probabilities).

    python experiments/initial_loss.py --data-dir DIR

writes losses.json (every run) and table.md (mean and spread over seeds) under
results/initial_loss/ (minutes on a CPU: the iterative criteria score 100 rounds). A run
with fewer --models or --methods replaces their rows in an existing losses.json and keeps
the others (it refuses one measured on other data or with another number of seeds), so

    python experiments/initial_loss.py --data-dir DIR --methods iterative-snip

measures one criterion again and rebuilds the whole table.
"""

import json
import math
import os
import sys

import common
import sanity_checks
from common import data, failures, flags, sm

CHECKS = ["none", "shuffle", "reinit"]


def main(argv=None):
    parser = common.argument_parser(__doc__)
    common.add_data_dir_argument(parser)
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "gpu"), help="cpu (NumPy) or gpu (CuPy)"
    )
    parser.add_argument("--seeds", type=flags.positive_int, default=3, help="seeds 0, 1, ...")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lenet300", "lenet5"],
        choices=["lenet300", "lenet5"],
        help="the networks, each at experiment F's two sparsities",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=sanity_checks.METHODS,
        choices=sanity_checks.METHODS,
        help="the criteria",
    )
    parser.add_argument(
        "--out",
        type=flags.folder_name,
        default=os.path.join("results", "initial_loss"),
        help="folder for losses.json and table.md",
    )
    args = parser.parse_args(argv)
    sm.use_device(args.device)
    dataset = data.load_dataset("mnist", args.data_dir)
    path = os.path.join(args.out, "losses.json")
    earlier = earlier_rows(path, dataset.description, args.seeds)  # refused before measuring
    rows = []
    for model, sparsity in [(m, s) for m in args.models for s in sanity_checks.SPARSITIES[m]]:
        for method in args.methods:
            for check in sanity_checks.checks_of(method, CHECKS):
                losses = [
                    first_loss(dataset, model, sparsity, method, check, seed)
                    for seed in range(args.seeds)
                ]
                rows.append(
                    {
                        "model": model,
                        "sparsity": sparsity,
                        "method": method,
                        "check": check,
                        "losses": losses,
                    }
                )
                print(
                    f"{model} {100 * sparsity:g}% {method:>14} {check:>7}: "
                    + " ".join(f"{loss:.3f}" for loss in losses),
                    flush=True,
                )
    os.makedirs(args.out, exist_ok=True)
    rows = merged_rows(earlier, rows)
    common.write_json(path, {"data": dataset.description, "rows": rows})
    table = make_table(rows, args.seeds, dataset.description)
    data.write_file_atomically(os.path.join(args.out, "table.md"), table.encode())
    print(table)
    return 0


def first_loss(dataset, model, sparsity, method, check, seed):
    """The loss of the first mini-batch of experiment F's run (model, sparsity, method, check,
    seed), before its first update: the run itself, stopped after one step."""
    losses = []
    common.train_once(
        dataset,
        model,
        sparsity,
        seed,
        None,
        method=method,
        lr=sanity_checks.LEARNING_RATE.get(model, 0.1),
        sanity_check=None if check == "none" else check,
        iterations=1,
        on_step=lambda iteration, loss: losses.append(loss),
    )
    return float(sm.to_host(losses[0]))


def earlier_rows(path, description, seeds):
    """The rows of the losses.json at path, [] if there is none. Refused (sm.UsageError) if it
    was measured on other data or over another number of seeds: its rows and this run's would
    not make one table."""
    try:
        with open(path, encoding="utf-8") as file:
            earlier = json.load(file)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise sm.UsageError(f"{path} cannot be read ({error}); choose another --out") from None
    if earlier.get("data") != description:
        raise sm.UsageError(
            f"{path} was measured on other data ({earlier.get('data')}); choose another --out"
        )
    counts = {len(row["losses"]) for row in earlier.get("rows", [])}
    if counts - {seeds}:
        raise sm.UsageError(
            f"{path} holds {', '.join(map(str, sorted(counts)))} seed(s) per row, this run "
            f"{seeds}; give --seeds {min(counts)} or another --out"
        )
    return earlier.get("rows", [])


def merged_rows(earlier, new):
    """earlier's rows, each replaced by the new row of the same network, sparsity, criterion
    and check where there is one, then the new rows that earlier did not have."""

    def key(row):
        return row["model"], row["sparsity"], row["method"], row["check"]

    fresh = {key(row): row for row in new}
    kept = [fresh.pop(key(row), row) for row in earlier]
    return kept + list(fresh.values())


def make_table(rows, seeds, description):
    """One row per network, sparsity and criterion; a column per check: mean ± std over seeds."""
    lines = [
        "| network | criterion | " + " | ".join(CHECKS) + " |",
        "|---|---|" + "---|" * len(CHECKS),
    ]
    for (model, sparsity), group in group_by_panel(rows):
        for method in dict.fromkeys(r["method"] for r in group):
            cells = {
                r["check"]: "{:.2f} ± {:.2f}".format(*common.mean_and_spread(r["losses"]))
                for r in group
                if r["method"] == method
            }
            lines.append(
                f"| {sanity_checks.TITLES[model]} at {100 * sparsity:g}% | "
                f"{sanity_checks.LABELS[method]} | "
                + " | ".join(cells.get(check, "") for check in CHECKS)
                + " |"
            )
    lines.append(
        f"\nThe cross-entropy of the first training mini-batch (100 images) at initialisation, "
        f"before any update, mean ± std over {seeds} seeds; ln 10 = {math.log(10):.3f} is that of "
        f"uniform outputs. {description}; each run pruned as experiment F's (VS-H, 100 rounds for "
        f"the iterative criteria)."
    )
    return "\n".join(lines) + "\n"


def group_by_panel(rows):
    """[((model, sparsity), rows of it)] in the order of the rows."""
    panels = dict.fromkeys((r["model"], r["sparsity"]) for r in rows)
    return [(panel, [r for r in rows if (r["model"], r["sparsity"]) == panel]) for panel in panels]


if __name__ == "__main__":
    sys.exit(failures.run_script(main, __file__))
